//! Consumer restarts: workloads named in `rolloutRestart` get a pod-template annotation whose value
//! is the data revision (the KMS version ids the Secret was rendered from, never values). The
//! revision they were last rolled for is kept in status, so a restart of the operator or a no-op
//! refresh changes nothing, the first sync restarts nobody, and re-patching after a crash writes
//! the same value again, which Kubernetes does not treat as a new rollout.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::crd::managed_secret::{RolloutKind, RolloutTarget};
use crate::render::{FetchedVersion, VersionSelector};

/// The data revision: every selector with the version id it resolved to, in a stable order.
pub fn revision(fetched: &BTreeMap<VersionSelector, Arc<FetchedVersion>>) -> String {
    fetched
        .iter()
        .map(|(selector, version)| match selector {
            VersionSelector::Stage(stage) => format!("{stage}={}", version.version_id),
            VersionSelector::Id(id) => format!("{id}={}", version.version_id),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// What to do with consumers after a successful sync.
#[derive(Debug, PartialEq, Eq)]
pub enum RolloutPlan {
    /// Nothing to do (no targets, or already rolled for this revision).
    Nothing,
    /// First sync: remember the revision, restart nobody.
    Record,
    /// The data changed since the last rollout: restart and remember.
    Restart,
}

pub fn plan(targets: &[RolloutTarget], recorded: Option<&str>, current: &str) -> RolloutPlan {
    match recorded {
        _ if targets.is_empty() => RolloutPlan::Nothing,
        None => RolloutPlan::Record,
        Some(recorded) if recorded == current => RolloutPlan::Nothing,
        Some(_) => RolloutPlan::Restart,
    }
}

/// Pod-template annotation written for the ManagedSecret `name` (kept within the 63-character
/// limit of an annotation name).
pub fn annotation_key(name: &str) -> String {
    if name.len() <= 50 {
        return format!("kmsync.io/rollout-{name}");
    }
    let digest = hex::encode(Sha256::digest(name.as_bytes()));
    format!("kmsync.io/rollout-{}-{}", &name[..37], &digest[..12])
}

/// Patches one workload's pod template. `Ok(false)` when the workload does not exist.
pub async fn restart(
    client: &Client,
    namespace: &str,
    target: &RolloutTarget,
    key: &str,
    revision: &str,
) -> Result<bool, kube::Error> {
    let patch = json!({"spec": {"template": {"metadata": {"annotations": {key: revision}}}}});
    let params = PatchParams::default();
    let result = match target.kind {
        RolloutKind::Deployment => Api::<Deployment>::namespaced(client.clone(), namespace)
            .patch(&target.name, &params, &Patch::Merge(&patch))
            .await
            .map(|_| ()),
        RolloutKind::StatefulSet => Api::<StatefulSet>::namespaced(client.clone(), namespace)
            .patch(&target.name, &params, &Patch::Merge(&patch))
            .await
            .map(|_| ()),
        RolloutKind::DaemonSet => Api::<DaemonSet>::namespaced(client.clone(), namespace)
            .patch(&target.name, &params, &Patch::Merge(&patch))
            .await
            .map(|_| ()),
    };
    match result {
        Ok(()) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> RolloutTarget {
        RolloutTarget {
            kind: RolloutKind::Deployment,
            name: "api".into(),
        }
    }

    fn version(id: &str) -> Arc<FetchedVersion> {
        Arc::new(FetchedVersion {
            version_id: id.into(),
            stages: vec![],
            data: b"secret".to_vec(),
            create_time: None,
        })
    }

    #[test]
    fn revision_names_versions_not_values() {
        let fetched = BTreeMap::from([
            (VersionSelector::Stage("ACSCurrent".into()), version("v2")),
            (VersionSelector::Stage("ACSPrevious".into()), version("v1")),
        ]);
        assert_eq!(revision(&fetched), "ACSCurrent=v2,ACSPrevious=v1");
    }

    #[test]
    fn first_sync_records_then_only_changes_restart() {
        assert_eq!(
            plan(&[target()], None, "ACSCurrent=v1"),
            RolloutPlan::Record
        );
        assert_eq!(
            plan(&[target()], Some("ACSCurrent=v1"), "ACSCurrent=v1"),
            RolloutPlan::Nothing
        );
        assert_eq!(
            plan(&[target()], Some("ACSCurrent=v1"), "ACSCurrent=v2"),
            RolloutPlan::Restart
        );
        assert_eq!(
            plan(&[], Some("ACSCurrent=v1"), "ACSCurrent=v2"),
            RolloutPlan::Nothing
        );
    }

    #[test]
    fn annotation_keys_fit_the_name_limit() {
        assert_eq!(annotation_key("db-cred"), "kmsync.io/rollout-db-cred");
        let long = "a".repeat(200);
        let key = annotation_key(&long);
        assert!(key.len() - "kmsync.io/".len() <= 63, "{key}");
        assert_ne!(annotation_key(&"a".repeat(201)), key);
    }
}
