//! Pure decisions about the target Secret: whether we may write it (no silent takeover), the
//! object we server-side apply, and whether applying it would change anything, removals included
//! (an unchanged sync writes nothing).

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;

use crate::controller::managed_fields::OwnedFields;
use crate::crd::ManagedSecret;
use crate::crd::managed_secret::{CreationPolicy, DeletionPolicy};
use crate::render::SecretData;

/// The one field manager of every write kmsync makes.
pub const FIELD_MANAGER: &str = "kmsync";
/// Label on every Secret we write; the controller watches Secrets by this label only.
pub const LABEL_MANAGED: &str = "kmsync.io/managed";
/// Name of the ManagedSecret (same namespace) that writes this Secret.
pub const ANNOTATION_OWNER: &str = "kmsync.io/managed-secret";
pub const ANNOTATION_KMS_SECRET: &str = "kmsync.io/kms-secret-name";
pub const ANNOTATION_VERSION_ID: &str = "kmsync.io/kms-version-id";
pub const ANNOTATION_VERSION_STAGES: &str = "kmsync.io/kms-version-stages";
/// Time of the last data write (not of the last check, so an unchanged refresh writes nothing).
pub const ANNOTATION_SYNCED_AT: &str = "kmsync.io/synced-at";

const SERVICE_ACCOUNT_TOKEN: &str = "kubernetes.io/service-account-token";
const HELM_RELEASE: &str = "helm.sh/release.v1";

/// Why the target Secret may not be written. Messages hold names only.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TargetConflict {
    #[error(
        "Secret {0} already exists and is not managed by kmsync; set target.creationPolicy to Adopt or Merge to take it over"
    )]
    Foreign(String),
    #[error(
        "Secret {secret} is managed by ManagedSecret {owner}; two ManagedSecrets cannot write one Secret"
    )]
    OtherOwner { secret: String, owner: String },
    #[error("Secret {secret} has type {actual}, not {desired}; the type of a Secret cannot change")]
    TypeMismatch {
        secret: String,
        actual: String,
        desired: String,
    },
    #[error("Secret {0} is a service account token; kmsync never writes those")]
    ServiceAccountToken(String),
    #[error(
        "Secret {0} holds credentials kmsync uses (a SecretStore's, a rotation's admin login or webhook signing key); kmsync will not overwrite it"
    )]
    Protected(String),
    #[error("Secret {0} is Helm's release state; kmsync never writes those")]
    HelmRelease(String),
}

/// What the apply will carry about the KMS version written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Provenance {
    pub kms_secret_name: String,
    pub version_id: String,
    pub version_stages: Vec<String>,
    pub synced_at: jiff::Timestamp,
}

fn creation_policy(ms: &ManagedSecret) -> CreationPolicy {
    ms.spec
        .target
        .as_ref()
        .map(|t| t.creation_policy)
        .unwrap_or_default()
}

fn deletion_policy(ms: &ManagedSecret) -> DeletionPolicy {
    ms.spec
        .target
        .as_ref()
        .map(|t| t.deletion_policy)
        .unwrap_or_default()
}

/// The Secret type we want (`None` for Merge, which never sets the type of someone's Secret).
pub fn desired_type(ms: &ManagedSecret) -> Option<String> {
    if creation_policy(ms) == CreationPolicy::Merge {
        return None;
    }
    Some(
        ms.spec
            .target
            .as_ref()
            .and_then(|t| t.type_.clone())
            .unwrap_or_else(|| "Opaque".into()),
    )
}

/// Whether `existing` is already written by `ms` (our owner annotation names it).
pub fn is_ours(ms: &ManagedSecret, existing: Option<&Secret>) -> bool {
    let owner = existing
        .and_then(|e| e.metadata.annotations.as_ref())
        .and_then(|a| a.get(ANNOTATION_OWNER));
    owner.is_some() && owner == ms.metadata.name.as_ref()
}

/// Whether `ms` may write the Secret whose current state is `existing`.
pub fn check_target(
    ms: &ManagedSecret,
    existing: Option<&Secret>,
    protected: bool,
) -> Result<(), TargetConflict> {
    let name = ms.target_name();
    if protected {
        return Err(TargetConflict::Protected(name));
    }
    let Some(existing) = existing else {
        return Ok(());
    };
    let actual_type = existing.type_.clone().unwrap_or_else(|| "Opaque".into());
    if actual_type == SERVICE_ACCOUNT_TOKEN {
        return Err(TargetConflict::ServiceAccountToken(name));
    }
    if actual_type == HELM_RELEASE {
        return Err(TargetConflict::HelmRelease(name));
    }
    let owner = existing
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_OWNER));
    let ms_name = ms.metadata.name.clone().unwrap_or_default();
    match owner {
        Some(owner) if *owner != ms_name => {
            return Err(TargetConflict::OtherOwner {
                secret: name,
                owner: owner.clone(),
            });
        }
        None if creation_policy(ms) == CreationPolicy::Owner => {
            return Err(TargetConflict::Foreign(name));
        }
        _ => {}
    }
    match desired_type(ms) {
        Some(desired) if desired != actual_type => Err(TargetConflict::TypeMismatch {
            secret: name,
            actual: actual_type,
            desired,
        }),
        _ => Ok(()),
    }
}

/// The Secret to server-side apply with [`FIELD_MANAGER`]: our keys, our labels and annotations,
/// and (only for `deletionPolicy: Delete` on a Secret we own) an owner reference.
pub fn desired_secret(ms: &ManagedSecret, data: &SecretData, provenance: &Provenance) -> Secret {
    let target = ms.spec.target.clone().unwrap_or_default();
    let mut labels = target.labels.clone();
    labels.insert(LABEL_MANAGED.into(), "true".into());
    let mut annotations = target.annotations.clone();
    annotations.insert(
        ANNOTATION_OWNER.into(),
        ms.metadata.name.clone().unwrap_or_default(),
    );
    annotations.insert(
        ANNOTATION_KMS_SECRET.into(),
        provenance.kms_secret_name.clone(),
    );
    annotations.insert(ANNOTATION_VERSION_ID.into(), provenance.version_id.clone());
    annotations.insert(
        ANNOTATION_VERSION_STAGES.into(),
        provenance.version_stages.join(","),
    );
    annotations.insert(
        ANNOTATION_SYNCED_AT.into(),
        provenance.synced_at.to_string(),
    );
    let owner_references = (deletion_policy(ms) == DeletionPolicy::Delete
        && creation_policy(ms) != CreationPolicy::Merge)
        .then(|| ms.controller_owner_ref(&()))
        .flatten()
        .map(|owner: OwnerReference| vec![owner]);
    Secret {
        metadata: ObjectMeta {
            name: Some(ms.target_name()),
            namespace: ms.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references,
            ..Default::default()
        },
        type_: desired_type(ms),
        data: Some(
            data.0
                .iter()
                .map(|(k, v)| (k.clone(), ByteString(v.clone())))
                .collect(),
        ),
        ..Default::default()
    }
}

/// Whether server-side applying `desired` as [`FIELD_MANAGER`] would change `existing`: the
/// Secret is missing, a value we apply differs from it (the sync timestamp excepted), or we own a
/// field `desired` no longer carries (a data key, label or annotation dropped from the spec, the
/// owner reference after `deletionPolicy: Delete` became `Retain`), which the apply removes.
///
/// Fields owned by other managers never count: they are not in our managedFields entry, and
/// server-side apply removes a field dropped from our apply only when no other manager owns it,
/// so under Adopt and Merge the keys we do not manage stay.
pub fn needs_write(existing: Option<&Secret>, desired: &Secret) -> bool {
    let Some(existing) = existing else {
        return true;
    };
    if !values_applied(existing, desired) {
        return true;
    }
    // Without an Apply entry of ours (a foreign Secret about to be adopted, or one written before
    // managedFields existed) there is nothing of ours the apply could remove.
    OwnedFields::applied_by(existing, FIELD_MANAGER)
        .is_some_and(|owned| owned != OwnedFields::of_applied(desired))
}

/// Whether every value `desired` sets is already on `existing`; its other fields do not matter.
fn values_applied(existing: &Secret, desired: &Secret) -> bool {
    let data_same = {
        let have = existing.data.clone().unwrap_or_default();
        desired
            .data
            .iter()
            .flatten()
            .all(|(k, v)| have.get(k) == Some(v))
    };
    let owners_same = desired
        .metadata
        .owner_references
        .iter()
        .flatten()
        .all(|want| {
            existing
                .metadata
                .owner_references
                .iter()
                .flatten()
                .any(|have| have == want)
        });
    data_same
        && owners_same
        && map_applied(
            desired.metadata.labels.as_ref(),
            existing.metadata.labels.as_ref(),
        )
        && map_applied(
            desired.metadata.annotations.as_ref(),
            existing.metadata.annotations.as_ref(),
        )
}

/// Whether `have` holds every entry of `want`, the sync timestamp excepted (it records the last
/// write, so a newer one alone is no reason to write).
fn map_applied(
    want: Option<&BTreeMap<String, String>>,
    have: Option<&BTreeMap<String, String>>,
) -> bool {
    want.into_iter()
        .flatten()
        .filter(|(k, _)| k.as_str() != ANNOTATION_SYNCED_AT)
        .all(|(k, v)| have.and_then(|h| h.get(k)) == Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(target: serde_json::Value) -> ManagedSecret {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "kmsync.io/v1alpha1", "kind": "ManagedSecret",
            "metadata": {"name": "db", "namespace": "team", "uid": "uid-1"},
            "spec": {"storeRef": {"name": "kms"}, "secretName": "db_cred", "target": target}
        }))
        .unwrap()
    }

    fn secret(annotations: &[(&str, &str)], type_: Option<&str>) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some("db".into()),
                annotations: Some(
                    annotations
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            type_: type_.map(String::from),
            ..Default::default()
        }
    }

    fn provenance() -> Provenance {
        Provenance {
            kms_secret_name: "db_cred".into(),
            version_id: "v2".into(),
            version_stages: vec!["ACSCurrent".into()],
            synced_at: jiff::Timestamp::from_second(1_700_000_000).unwrap(),
        }
    }

    fn data(pairs: &[(&str, &str)]) -> SecretData {
        SecretData(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect(),
        )
    }

    #[test]
    fn missing_secret_may_be_created_under_every_policy() {
        for policy in ["Owner", "Adopt", "Merge"] {
            assert_eq!(
                check_target(
                    &ms(serde_json::json!({"creationPolicy": policy})),
                    None,
                    false
                ),
                Ok(())
            );
        }
    }

    #[test]
    fn foreign_secret_is_a_conflict_for_owner_only() {
        let foreign = secret(&[], None);
        assert!(matches!(
            check_target(&ms(serde_json::json!({})), Some(&foreign), false),
            Err(TargetConflict::Foreign(_))
        ));
        assert_eq!(
            check_target(
                &ms(serde_json::json!({"creationPolicy": "Adopt"})),
                Some(&foreign),
                false
            ),
            Ok(())
        );
        assert_eq!(
            check_target(
                &ms(serde_json::json!({"creationPolicy": "Merge"})),
                Some(&foreign),
                false
            ),
            Ok(())
        );
    }

    #[test]
    fn our_own_secret_is_writable_and_another_owner_is_not() {
        let ours = secret(&[(ANNOTATION_OWNER, "db")], Some("Opaque"));
        assert_eq!(
            check_target(&ms(serde_json::json!({})), Some(&ours), false),
            Ok(())
        );
        let theirs = secret(&[(ANNOTATION_OWNER, "other")], Some("Opaque"));
        for policy in ["Owner", "Adopt", "Merge"] {
            assert!(matches!(
                check_target(
                    &ms(serde_json::json!({"creationPolicy": policy})),
                    Some(&theirs),
                    false
                ),
                Err(TargetConflict::OtherOwner { .. })
            ));
        }
    }

    #[test]
    fn type_cannot_change_but_merge_ignores_type() {
        let tls = secret(&[(ANNOTATION_OWNER, "db")], Some("kubernetes.io/tls"));
        assert!(matches!(
            check_target(&ms(serde_json::json!({})), Some(&tls), false),
            Err(TargetConflict::TypeMismatch { .. })
        ));
        let foreign_tls = secret(&[], Some("kubernetes.io/tls"));
        assert_eq!(
            check_target(
                &ms(serde_json::json!({"creationPolicy": "Merge"})),
                Some(&foreign_tls),
                false
            ),
            Ok(())
        );
    }

    #[test]
    fn service_account_tokens_and_protected_secrets_are_never_written() {
        let token = secret(&[], Some(SERVICE_ACCOUNT_TOKEN));
        assert!(matches!(
            check_target(
                &ms(serde_json::json!({"creationPolicy": "Merge"})),
                Some(&token),
                false
            ),
            Err(TargetConflict::ServiceAccountToken(_))
        ));
        assert!(matches!(
            check_target(
                &ms(serde_json::json!({"creationPolicy": "Adopt"})),
                None,
                true
            ),
            Err(TargetConflict::Protected(_))
        ));
        let release = secret(&[], Some(HELM_RELEASE));
        assert!(matches!(
            check_target(
                &ms(serde_json::json!({"creationPolicy": "Adopt"})),
                Some(&release),
                false
            ),
            Err(TargetConflict::HelmRelease(_))
        ));
    }

    #[test]
    fn only_a_secret_annotated_with_our_name_is_ours() {
        let owner = ms(serde_json::json!({}));
        let name = owner.metadata.name.clone().unwrap();
        assert!(is_ours(
            &owner,
            Some(&secret(&[(ANNOTATION_OWNER, &name)], None))
        ));
        assert!(!is_ours(
            &owner,
            Some(&secret(&[(ANNOTATION_OWNER, "other")], None))
        ));
        assert!(!is_ours(&owner, Some(&secret(&[], None))));
        assert!(!is_ours(&owner, None));
    }

    #[test]
    fn desired_secret_carries_provenance_and_owner_reference_only_for_delete() {
        let retained = desired_secret(
            &ms(serde_json::json!({})),
            &data(&[("k", "v")]),
            &provenance(),
        );
        let annotations = retained.metadata.annotations.clone().unwrap();
        assert_eq!(annotations[ANNOTATION_VERSION_ID], "v2");
        assert_eq!(annotations[ANNOTATION_KMS_SECRET], "db_cred");
        assert_eq!(retained.metadata.labels.unwrap()[LABEL_MANAGED], "true");
        assert!(
            retained.metadata.owner_references.is_none(),
            "Retain must survive CRD deletion"
        );
        assert_eq!(retained.type_.as_deref(), Some("Opaque"));

        let deleted = desired_secret(
            &ms(serde_json::json!({"deletionPolicy": "Delete"})),
            &data(&[]),
            &provenance(),
        );
        let owner = &deleted.metadata.owner_references.unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("ManagedSecret", "uid-1")
        );

        let merged = desired_secret(
            &ms(serde_json::json!({"creationPolicy": "Merge", "deletionPolicy": "Delete"})),
            &data(&[]),
            &provenance(),
        );
        assert!(merged.metadata.owner_references.is_none() && merged.type_.is_none());
    }

    #[test]
    fn unchanged_secret_needs_no_write_even_with_a_newer_timestamp() {
        let m = ms(serde_json::json!({}));
        let existing = desired_secret(&m, &data(&[("k", "v")]), &provenance());
        let mut later = provenance();
        later.synced_at = jiff::Timestamp::from_second(1_800_000_000).unwrap();
        assert!(!needs_write(
            Some(&existing),
            &desired_secret(&m, &data(&[("k", "v")]), &later)
        ));
        assert!(needs_write(
            Some(&existing),
            &desired_secret(&m, &data(&[("k", "w")]), &later)
        ));
        let mut new_version = later.clone();
        new_version.version_id = "v3".into();
        assert!(needs_write(
            Some(&existing),
            &desired_secret(&m, &data(&[("k", "v")]), &new_version)
        ));
        assert!(needs_write(None, &existing));
    }

    #[test]
    fn drift_in_a_managed_key_needs_a_write_but_foreign_keys_do_not() {
        let m = ms(serde_json::json!({"creationPolicy": "Merge"}));
        let desired = desired_secret(&m, &data(&[("k", "v")]), &provenance());
        let mut existing = desired.clone();
        existing
            .data
            .as_mut()
            .unwrap()
            .insert("theirs".into(), ByteString(b"x".to_vec()));
        assert!(!needs_write(Some(&existing), &desired));
        existing
            .data
            .as_mut()
            .unwrap()
            .insert("k".into(), ByteString(b"edited".to_vec()));
        assert!(needs_write(Some(&existing), &desired));
    }

    /// `secret` as the apiserver returns it after kmsync applied it: with our Apply entry.
    fn as_applied(secret: Secret) -> Secret {
        let owned = OwnedFields::of_applied(&secret);
        let fields = |prefix: &str, keys: &std::collections::BTreeSet<String>| {
            serde_json::Value::Object(
                keys.iter()
                    .map(|k| (format!("{prefix}{k}"), serde_json::json!({})))
                    .collect(),
            )
        };
        let uids: std::collections::BTreeSet<String> = owned
            .owner_uids
            .iter()
            .map(|uid| serde_json::json!({ "uid": uid }).to_string())
            .collect();
        let trie = serde_json::json!({
            "f:data": fields("f:", &owned.data),
            "f:metadata": {
                "f:labels": fields("f:", &owned.labels),
                "f:annotations": fields("f:", &owned.annotations),
                "f:ownerReferences": fields("k:", &uids),
            },
            "f:type": {}
        });
        with_entry(secret, FIELD_MANAGER, "Apply", trie)
    }

    fn with_entry(
        mut secret: Secret,
        manager: &str,
        operation: &str,
        fields: serde_json::Value,
    ) -> Secret {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};
        secret
            .metadata
            .managed_fields
            .get_or_insert_with(Vec::new)
            .push(ManagedFieldsEntry {
                manager: Some(manager.into()),
                operation: Some(operation.into()),
                fields_type: Some("FieldsV1".into()),
                fields_v1: Some(FieldsV1(fields)),
                ..Default::default()
            });
        secret
    }

    fn later() -> Provenance {
        Provenance {
            synced_at: jiff::Timestamp::from_second(1_800_000_000).unwrap(),
            ..provenance()
        }
    }

    #[test]
    fn an_applied_secret_unchanged_but_for_the_timestamp_needs_no_write() {
        for target in [
            serde_json::json!({}),
            serde_json::json!({"deletionPolicy": "Delete", "labels": {"team": "a"},
                               "annotations": {"note": "x"}}),
            serde_json::json!({"creationPolicy": "Merge"}),
        ] {
            let m = ms(target);
            let existing = as_applied(desired_secret(&m, &data(&[("k", "v")]), &provenance()));
            let desired = desired_secret(&m, &data(&[("k", "v")]), &later());
            assert!(
                !needs_write(Some(&existing), &desired),
                "{:?}",
                m.spec.target
            );
        }
    }

    #[test]
    fn delete_then_retain_needs_a_write_to_drop_the_owner_reference() {
        let delete = ms(serde_json::json!({"deletionPolicy": "Delete"}));
        let existing = as_applied(desired_secret(&delete, &data(&[("k", "v")]), &provenance()));
        let retain = ms(serde_json::json!({"deletionPolicy": "Retain"}));
        let desired = desired_secret(&retain, &data(&[("k", "v")]), &later());
        assert!(desired.metadata.owner_references.is_none());
        assert!(needs_write(Some(&existing), &desired));
    }

    #[test]
    fn a_data_key_removed_from_the_spec_needs_a_write() {
        let m = ms(serde_json::json!({}));
        let existing = as_applied(desired_secret(
            &m,
            &data(&[("password", "p2"), ("password-previous", "p1")]),
            &provenance(),
        ));
        let desired = desired_secret(&m, &data(&[("password", "p2")]), &later());
        assert!(needs_write(Some(&existing), &desired));
    }

    #[test]
    fn a_label_or_annotation_removed_from_the_spec_needs_a_write() {
        let before = ms(serde_json::json!({"labels": {"team": "a", "tier": "db"},
                                           "annotations": {"note": "x", "owner": "y"}}));
        let existing = as_applied(desired_secret(&before, &data(&[("k", "v")]), &provenance()));
        for target in [
            serde_json::json!({"labels": {"team": "a"}, "annotations": {"note": "x", "owner": "y"}}),
            serde_json::json!({"labels": {"team": "a", "tier": "db"}, "annotations": {"owner": "y"}}),
        ] {
            let desired = desired_secret(&ms(target.clone()), &data(&[("k", "v")]), &later());
            assert!(needs_write(Some(&existing), &desired), "{target}");
        }
    }

    #[test]
    fn fields_other_managers_own_are_not_counted() {
        let m = ms(serde_json::json!({"creationPolicy": "Adopt"}));
        let desired = desired_secret(&m, &data(&[("k", "v")]), &provenance());
        let mut existing = as_applied(desired.clone());
        existing
            .data
            .as_mut()
            .unwrap()
            .insert("theirs".into(), ByteString(b"x".to_vec()));
        existing
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .insert("app".into(), "web".into());
        existing
            .metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert("their-note".into(), "y".into());
        existing.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            name: "web".into(),
            uid: "uid-other".into(),
            ..Default::default()
        }]);
        let existing = with_entry(
            existing,
            "kubectl-edit",
            "Update",
            serde_json::json!({"f:data": {".": {}, "f:theirs": {}},
                "f:metadata": {"f:labels": {"f:app": {}}, "f:annotations": {"f:their-note": {}},
                               "f:ownerReferences": {"k:{\"uid\":\"uid-other\"}": {}}}}),
        );
        assert!(!needs_write(
            Some(&existing),
            &desired_secret(&m, &data(&[("k", "v")]), &later())
        ));
    }
}
