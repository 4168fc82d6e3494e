//! How the controller sees KMS: a small trait, so tests and the emulator can stand in and the
//! controller never touches HTTP or signing. The KMS client implements it in `kms_source`.

use std::sync::Arc;

use futures::future::BoxFuture;

use crate::controller::error::SourceError;
use crate::crd::managed_secret::StoreKind;
use crate::crd::rotation::{CreateIfMissing, PasswordSpec};
use crate::crd::store::KmsConnection;
use crate::kms::SecretString;
use crate::render::{FetchedVersion, VersionSelector};
use crate::rotation::plan::KmsView;

/// Reads of one store's KMS.
pub trait SecretSource: Send + Sync {
    /// One version of a secret, Base64-decoded when its data type is binary.
    fn get_secret_value(
        &self,
        secret_name: &str,
        selector: &VersionSelector,
    ) -> BoxFuture<'static, Result<FetchedVersion, SourceError>>;

    /// A cheap authenticated call proving endpoint and credentials work (store `Ready`).
    fn check(&self) -> BoxFuture<'static, Result<(), SourceError>>;

    // What rotation needs besides reading.

    /// Every version (deprecated ones included) with its stages; `exists: false` when the secret
    /// does not exist.
    fn list_versions(&self, secret_name: &str) -> BoxFuture<'static, Result<KmsView, SourceError>>;

    /// `GetRandomPassword` with the spec's options.
    fn random_password(
        &self,
        options: &PasswordSpec,
    ) -> BoxFuture<'static, Result<SecretString, SourceError>>;

    /// `PutSecretValue`; `stages: None` promotes to `ACSCurrent` (single-call rotation).
    fn put_value(
        &self,
        secret_name: &str,
        version_id: &str,
        value: SecretString,
        stages: Option<Vec<String>>,
    ) -> BoxFuture<'static, Result<(), SourceError>>;

    /// `UpdateSecretVersionStage`: move `stage` to a version and/or remove it from one.
    fn update_stage(
        &self,
        secret_name: &str,
        stage: &str,
        move_to: Option<&str>,
        remove_from: Option<&str>,
    ) -> BoxFuture<'static, Result<(), SourceError>>;

    /// `CreateSecret` with an initial version (bootstrap of a missing secret).
    fn create_secret(
        &self,
        secret_name: &str,
        version_id: &str,
        value: SecretString,
        bootstrap: &CreateIfMissing,
    ) -> BoxFuture<'static, Result<(), SourceError>>;
}

/// Credentials a store resolved from the cluster. Secrets print `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreCredentials {
    AccessKey {
        id: String,
        secret: String,
        security_token: Option<String>,
    },
    Rrsa {
        role_arn: String,
        oidc_provider_arn: String,
        token: String,
        session_name: Option<String>,
    },
    EcsRamRole {
        role_name: Option<String>,
    },
    DefaultChain,
}

impl std::fmt::Debug for StoreCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::AccessKey { id, .. } => {
                write!(f, "AccessKey {{ id: {id:?}, secret: <redacted> }}")
            }
            Self::Rrsa { role_arn, .. } => {
                write!(f, "Rrsa {{ role_arn: {role_arn:?}, token: <redacted> }}")
            }
            Self::EcsRamRole { role_name } => {
                write!(f, "EcsRamRole {{ role_name: {role_name:?} }}")
            }
            Self::DefaultChain => write!(f, "DefaultChain"),
        }
    }
}

/// Everything needed to build a client for one store.
#[derive(Clone, Debug, PartialEq)]
pub struct ResolvedStore {
    /// `<Kind>/<namespace>/<name>`; also the coalescing key of its reads.
    pub key: String,
    /// A namespaced store may not act as the operator (see `controller::identity`).
    pub kind: StoreKind,
    pub connection: KmsConnection,
    pub credentials: StoreCredentials,
}

/// Builds (and caches) a [`SecretSource`] per resolved store.
pub trait SourceFactory: Send + Sync {
    fn source(&self, store: &ResolvedStore) -> Result<Arc<dyn SecretSource>, SourceError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_debug_is_redacted() {
        let canary = "canary-credential-5b1e";
        let creds = [
            StoreCredentials::AccessKey {
                id: "ak".into(),
                secret: canary.into(),
                security_token: Some(canary.into()),
            },
            StoreCredentials::Rrsa {
                role_arn: "acs:ram::1:role/r".into(),
                oidc_provider_arn: "p".into(),
                token: canary.into(),
                session_name: None,
            },
        ];
        for c in creds {
            assert!(!format!("{c:?}").contains(canary));
        }
    }
}
