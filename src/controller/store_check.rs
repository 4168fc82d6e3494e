//! Store readiness: a cheap authenticated KMS call per SecretStore / ClusterSecretStore, reported
//! as the `Ready` condition (reasons `Valid`, `InvalidCredentials`, `AccessDenied`,
//! `KmsUnavailable`, …) and re-checked periodically.

use std::sync::Arc;
use std::time::Duration;

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::controller::error::Error;
use crate::controller::reconcile::Context;
use crate::controller::stores::{self, StoreRefResolved};
use crate::controller::target::FIELD_MANAGER;
use crate::crd::conditions::{self, types};
use crate::crd::managed_secret::StoreKind;
use crate::crd::store::StoreStatus;
use crate::crd::{ClusterSecretStore, SecretStore};

/// Re-check interval of a healthy store.
const RECHECK: Duration = Duration::from_secs(600);

async fn check(ctx: &Context, store: StoreRefResolved) -> Result<Checked, Error> {
    let resolved = stores::resolve(&ctx.client, store).await?;
    let source = ctx.sources.source(&resolved)?;
    match source.check().await {
        // Authenticated but not allowed to list: the credentials are good, and a least-privilege
        // policy (GetSecretValue on named secrets only) must not keep the store from being ready.
        Err(error) if error.reason == "AccessDenied" => Ok(Checked::NoListPermission),
        Err(error) => Err(error.into()),
        Ok(()) => Ok(Checked::Full),
    }
}

/// How far the store check got.
#[derive(Debug, PartialEq, Eq)]
enum Checked {
    Full,
    NoListPermission,
}

fn status_after(
    old: Option<&StoreStatus>,
    generation: Option<i64>,
    outcome: &Result<Checked, Error>,
) -> StoreStatus {
    let mut status = old.cloned().unwrap_or_default();
    status.observed_generation = generation;
    let condition = match outcome {
        Ok(Checked::Full) => conditions::condition(
            types::READY,
            true,
            "Valid",
            "KMS accepted the store's credentials",
            generation,
        ),
        Ok(Checked::NoListPermission) => conditions::condition(
            types::READY,
            true,
            "Valid",
            "KMS accepted the store's credentials (ListSecrets is not permitted; access to each \
             secret is checked when it is read)",
            generation,
        ),
        Err(error) => conditions::condition(
            types::READY,
            false,
            error.reason(),
            error.to_string(),
            generation,
        ),
    };
    conditions::upsert(&mut status.conditions, condition, jiff::Timestamp::now());
    status
}

/// First re-check after a transient failure (doubling per failure up to [`RECHECK_FAILED`]).
const RECHECK_TRANSIENT: Duration = Duration::from_secs(5);
/// Re-check of a store that failed for a reason that needs a fix (credentials, permissions).
const RECHECK_FAILED: Duration = Duration::from_secs(60);

/// When to check again. A transient failure (KMS or STS unavailable, throttled, a timeout) is
/// re-checked within seconds: until then every reader of the store waits with `StoreNotReady`,
/// so a flat minute turned a blip during the check into a minute of outage for all of them.
fn next(outcome: &Result<Checked, Error>, uid: &str, failures: u32) -> Duration {
    match outcome {
        Ok(_) => RECHECK,
        Err(Error::Kube(_)) => Duration::from_secs(30),
        Err(Error::Source(error)) if error.transient => {
            crate::controller::schedule::backoff(uid, failures, RECHECK_TRANSIENT, RECHECK_FAILED)
        }
        Err(_) => RECHECK_FAILED,
    }
}

/// Counts consecutive failed checks of a store (for [`next`]'s backoff).
fn count(ctx: &Context, uid: &str, outcome: &Result<Checked, Error>) -> u32 {
    match outcome {
        Ok(_) => {
            ctx.clear_failures(uid);
            0
        }
        Err(_) => ctx.record_failure(uid),
    }
}

async fn write<K>(
    api: &Api<K>,
    object: &K,
    status: StoreStatus,
    old: Option<&StoreStatus>,
) -> Result<(), Error>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    if old == Some(&status) {
        return Ok(());
    }
    let patch = json!({"apiVersion": K::api_version(&()), "kind": K::kind(&()), "status": status});
    api.patch_status(
        &object.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

pub async fn reconcile_secret_store(
    store: Arc<SecretStore>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let namespace = store.namespace().unwrap_or_default();
    let found = StoreRefResolved {
        key: format!("SecretStore/{namespace}/{}", store.name_any()),
        kind: StoreKind::SecretStore,
        connection: store.spec.kms.clone(),
        credentials_namespace: namespace.clone(),
    };
    let outcome = check(&ctx, found).await;
    let status = status_after(store.status.as_ref(), store.metadata.generation, &outcome);
    write(
        &Api::<SecretStore>::namespaced(ctx.client.clone(), &namespace),
        &*store,
        status,
        store.status.as_ref(),
    )
    .await?;
    let uid = store.uid().unwrap_or_default();
    Ok(Action::requeue(next(
        &outcome,
        &uid,
        count(&ctx, &uid, &outcome),
    )))
}

pub async fn reconcile_cluster_store(
    store: Arc<ClusterSecretStore>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let found = StoreRefResolved {
        key: format!("ClusterSecretStore//{}", store.name_any()),
        kind: StoreKind::ClusterSecretStore,
        connection: store.spec.kms.clone(),
        credentials_namespace: stores::cluster_credentials_namespace(&store.spec.kms),
    };
    let outcome = check(&ctx, found).await;
    let status = status_after(store.status.as_ref(), store.metadata.generation, &outcome);
    write(
        &Api::<ClusterSecretStore>::all(ctx.client.clone()),
        &*store,
        status,
        store.status.as_ref(),
    )
    .await?;
    let uid = store.uid().unwrap_or_default();
    Ok(Action::requeue(next(
        &outcome,
        &uid,
        count(&ctx, &uid, &outcome),
    )))
}

pub fn error_policy<K>(_store: Arc<K>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(reason = error.reason(), %error, "store check failed");
    Action::requeue(Duration::from_secs(30))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::error::SourceError;

    fn failed(reason: &'static str, transient: bool) -> Result<Checked, Error> {
        Err(Error::Source(SourceError {
            reason,
            message: "m".into(),
            transient,
            retry_after: None,
        }))
    }

    /// Found by the fault episodes: a KMS or STS blip during a store check kept every reader of
    /// the store at `StoreNotReady` for a minute after it was over.
    #[test]
    fn transient_failures_are_rechecked_within_seconds_then_less_often() {
        let secs = Duration::from_secs;
        let unavailable = failed("KmsUnavailable", true);
        assert!(next(&unavailable, "uid", 1) <= secs(6));
        assert!(next(&unavailable, "uid", 3) > next(&unavailable, "uid", 1));
        assert_eq!(next(&unavailable, "uid", 30), RECHECK_FAILED);
        assert!(next(&failed("CredentialsUnavailable", true), "uid", 1) <= secs(6));
        // A refusal needs a fix: once a minute is enough.
        assert_eq!(
            next(&failed("InvalidCredentials", false), "uid", 1),
            RECHECK_FAILED
        );
        assert_eq!(next(&Ok(Checked::Full), "uid", 0), RECHECK);
    }
}
