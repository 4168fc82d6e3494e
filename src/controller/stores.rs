//! Resolving a ManagedSecret's store: tenancy checks (a namespaced store serves its namespace only;
//! a cluster store serves the namespaces and secret names it allows) and credentials read from the
//! cluster. The result is a [`ResolvedStore`] the source factory turns into a KMS client.

use std::collections::BTreeMap;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use kube::Client;
use kube::api::{Api, PostParams};

use crate::controller::error::Error;
use crate::controller::source::{ResolvedStore, StoreCredentials};
use crate::crd::conditions::{find, types};
use crate::crd::managed_secret::StoreKind;
use crate::crd::store::{CredentialsSecretRef, KmsConnection, StoreStatus};
use crate::crd::{ClusterSecretStore, ManagedSecret, SecretStore};

const DEFAULT_AUDIENCE: &str = "sts.aliyuncs.com";

fn store_error(reason: &'static str, message: String) -> Error {
    Error::Store { reason, message }
}

/// A store found and admitted: its connection and the namespace its credentials live in.
#[derive(Debug, Clone)]
pub struct StoreRefResolved {
    pub key: String,
    pub kind: StoreKind,
    pub connection: KmsConnection,
    pub credentials_namespace: String,
}

/// Finds the store of `ms` and checks that `ms` may use it for its secret.
pub async fn lookup(client: &Client, ms: &ManagedSecret) -> Result<StoreRefResolved, Error> {
    let namespace = ms.metadata.namespace.clone().unwrap_or_default();
    let name = &ms.spec.store_ref.name;
    match ms.spec.store_ref.kind {
        StoreKind::SecretStore => {
            let store = Api::<SecretStore>::namespaced(client.clone(), &namespace)
                .get_opt(name)
                .await?
                .ok_or_else(|| {
                    store_error(
                        "StoreNotFound",
                        format!("SecretStore {name} does not exist in namespace {namespace}"),
                    )
                })?;
            ensure_not_failed(store.status.as_ref(), "SecretStore", name)?;
            Ok(StoreRefResolved {
                key: format!("SecretStore/{namespace}/{name}"),
                kind: StoreKind::SecretStore,
                connection: store.spec.kms,
                credentials_namespace: namespace,
            })
        }
        StoreKind::ClusterSecretStore => {
            let store = Api::<ClusterSecretStore>::all(client.clone())
                .get_opt(name)
                .await?
                .ok_or_else(|| {
                    store_error(
                        "StoreNotFound",
                        format!("ClusterSecretStore {name} does not exist"),
                    )
                })?;
            let labels = namespace_labels(client, &namespace).await?;
            if !store.spec.admits_namespace(&namespace, &labels) {
                return Err(store_error(
                    "StoreNotAllowed",
                    format!(
                        "ClusterSecretStore {name} does not admit namespace {namespace} (see its spec.conditions)"
                    ),
                ));
            }
            if !store.spec.admits_secret(&ms.spec.secret_name) {
                return Err(store_error(
                    "SecretNotAllowed",
                    format!(
                        "ClusterSecretStore {name} does not allow the KMS secret {} (see its spec.allowedSecrets)",
                        ms.spec.secret_name
                    ),
                ));
            }
            ensure_not_failed(store.status.as_ref(), "ClusterSecretStore", name)?;
            let credentials_namespace = cluster_credentials_namespace(&store.spec.kms);
            Ok(StoreRefResolved {
                key: format!("ClusterSecretStore//{name}"),
                kind: StoreKind::ClusterSecretStore,
                connection: store.spec.kms,
                credentials_namespace,
            })
        }
    }
}

/// Where a ClusterSecretStore's credentials live: the namespace its AccessKey Secret or its
/// RRSA ServiceAccount names (none for the operator's own identity).
pub fn cluster_credentials_namespace(connection: &KmsConnection) -> String {
    let auth = &connection.auth;
    auth.access_key
        .as_ref()
        .and_then(|a| a.secret_ref.namespace.clone())
        .or_else(|| {
            auth.rrsa
                .as_ref()
                .and_then(|r| r.service_account_ref.as_ref()?.namespace.clone())
        })
        .unwrap_or_default()
}

/// A store whose own check failed makes its readers wait with `StoreNotReady`.
fn ensure_not_failed(status: Option<&StoreStatus>, kind: &str, name: &str) -> Result<(), Error> {
    let ready = status.and_then(|s| find(&s.conditions, types::READY));
    match ready {
        Some(c) if c.status == "False" => Err(store_error(
            "StoreNotReady",
            format!("{kind} {name} is not ready ({}): {}", c.reason, c.message),
        )),
        _ => Ok(()),
    }
}

async fn namespace_labels(
    client: &Client,
    namespace: &str,
) -> Result<BTreeMap<String, String>, Error> {
    let ns = Api::<Namespace>::all(client.clone()).get(namespace).await?;
    Ok(ns.metadata.labels.unwrap_or_default())
}

/// Reads the credentials the store names. Missing Secrets or keys are `InvalidCredentials`.
pub async fn resolve(client: &Client, store: StoreRefResolved) -> Result<ResolvedStore, Error> {
    let auth = &store.connection.auth;
    let credentials = if let Some(access_key) = &auth.access_key {
        read_access_key(client, &store.credentials_namespace, &access_key.secret_ref).await?
    } else if let Some(rrsa) = &auth.rrsa {
        let token = match &rrsa.service_account_ref {
            Some(sa) => {
                let audiences = if sa.audiences.is_empty() {
                    vec![DEFAULT_AUDIENCE.to_string()]
                } else {
                    sa.audiences.clone()
                };
                service_account_token(client, &store.credentials_namespace, &sa.name, audiences)
                    .await?
            }
            None => String::new(),
        };
        StoreCredentials::Rrsa {
            role_arn: rrsa.role_arn.clone(),
            oidc_provider_arn: rrsa.oidc_provider_arn.clone(),
            token,
            session_name: rrsa.session_name.clone(),
        }
    } else if let Some(ecs) = &auth.ecs_ram_role {
        StoreCredentials::EcsRamRole {
            role_name: ecs.role_name.clone(),
        }
    } else {
        StoreCredentials::DefaultChain
    };
    Ok(ResolvedStore {
        key: store.key,
        kind: store.kind,
        connection: store.connection,
        credentials,
    })
}

async fn read_access_key(
    client: &Client,
    namespace: &str,
    reference: &CredentialsSecretRef,
) -> Result<StoreCredentials, Error> {
    let secret = Api::<Secret>::namespaced(client.clone(), namespace)
        .get_opt(&reference.name)
        .await?
        .ok_or_else(|| {
            store_error(
                "InvalidCredentials",
                format!(
                    "credentials Secret {namespace}/{} does not exist",
                    reference.name
                ),
            )
        })?;
    let data = secret.data.unwrap_or_default();
    let text = |key: &str| -> Option<String> {
        data.get(key)
            .and_then(|v| String::from_utf8(v.0.clone()).ok())
            .map(|s| s.trim().to_string())
    };
    let required = |key: &str| {
        text(key).filter(|v| !v.is_empty()).ok_or_else(|| {
            store_error(
                "InvalidCredentials",
                format!(
                    "credentials Secret {namespace}/{} has no key {key}",
                    reference.name
                ),
            )
        })
    };
    let id_key = reference
        .access_key_id_key
        .as_deref()
        .unwrap_or("AccessKeyId");
    let secret_key = reference
        .access_key_secret_key
        .as_deref()
        .unwrap_or("AccessKeySecret");
    let token_key = reference
        .security_token_key
        .as_deref()
        .unwrap_or("SecurityToken");
    Ok(StoreCredentials::AccessKey {
        id: required(id_key)?,
        secret: required(secret_key)?,
        security_token: text(token_key).filter(|t| !t.is_empty()),
    })
}

/// A short-lived token for a tenant's ServiceAccount (TokenRequest API), for per-tenant RRSA.
async fn service_account_token(
    client: &Client,
    namespace: &str,
    name: &str,
    audiences: Vec<String>,
) -> Result<String, Error> {
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences,
            expiration_seconds: Some(3600),
            bound_object_ref: None,
        },
        ..Default::default()
    };
    let api = Api::<ServiceAccount>::namespaced(client.clone(), namespace);
    let response = api
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .map_err(|e| match e {
            kube::Error::Api(status) if status.code == 404 => store_error(
                "InvalidCredentials",
                format!("ServiceAccount {namespace}/{name} for RRSA does not exist"),
            ),
            other => Error::Kube(other),
        })?;
    Ok(response.status.map(|s| s.token).unwrap_or_default())
}
