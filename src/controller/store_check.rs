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
use crate::crd::store::{KmsConnection, StoreStatus};
use crate::crd::{ClusterSecretStore, SecretStore};

/// Re-check interval of a healthy store.
const RECHECK: Duration = Duration::from_secs(600);

async fn check(
    ctx: &Context,
    key: String,
    connection: KmsConnection,
    credentials_namespace: String,
) -> Result<Checked, Error> {
    let resolved = stores::resolve(
        &ctx.client,
        StoreRefResolved {
            key,
            connection,
            credentials_namespace,
        },
    )
    .await?;
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

fn next(outcome: &Result<Checked, Error>) -> Action {
    match outcome {
        Ok(_) => Action::requeue(RECHECK),
        Err(Error::Kube(_)) => Action::requeue(Duration::from_secs(30)),
        Err(_) => Action::requeue(Duration::from_secs(60)),
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
    let key = format!("SecretStore/{namespace}/{}", store.name_any());
    let outcome = check(&ctx, key, store.spec.kms.clone(), namespace.clone()).await;
    let status = status_after(store.status.as_ref(), store.metadata.generation, &outcome);
    write(
        &Api::<SecretStore>::namespaced(ctx.client.clone(), &namespace),
        &*store,
        status,
        store.status.as_ref(),
    )
    .await?;
    Ok(next(&outcome))
}

pub async fn reconcile_cluster_store(
    store: Arc<ClusterSecretStore>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let key = format!("ClusterSecretStore//{}", store.name_any());
    let auth = &store.spec.kms.auth;
    let credentials_namespace = auth
        .access_key
        .as_ref()
        .and_then(|a| a.secret_ref.namespace.clone())
        .or_else(|| {
            auth.rrsa
                .as_ref()
                .and_then(|r| r.service_account_ref.as_ref()?.namespace.clone())
        })
        .unwrap_or_default();
    let outcome = check(&ctx, key, store.spec.kms.clone(), credentials_namespace).await;
    let status = status_after(store.status.as_ref(), store.metadata.generation, &outcome);
    write(
        &Api::<ClusterSecretStore>::all(ctx.client.clone()),
        &*store,
        status,
        store.status.as_ref(),
    )
    .await?;
    Ok(next(&outcome))
}

pub fn error_policy<K>(_store: Arc<K>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(reason = error.reason(), %error, "store check failed");
    Action::requeue(Duration::from_secs(30))
}
