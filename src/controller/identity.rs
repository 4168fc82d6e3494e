//! Which stores may act as the operator itself (step: before a store's KMS client is built).
//!
//! The operator's own identity is whatever its environment grants: the default credential chain,
//! the node's ECS RAM role, its own RRSA token, or an AssumeRole chained on any of these. It can
//! read every KMS secret the operator's RAM role can, so only a cluster admin hands it out:
//! through a ClusterSecretStore (whose `conditions` and `allowedSecrets` bound who uses it), or,
//! on a single-tenant cluster, to namespaced stores with `--allow-namespaced-operator-identity`.
//! A namespaced store otherwise brings credentials of its own namespace: an AccessKey Secret, or
//! RRSA through one of its ServiceAccounts. The CRD schema cannot say this, since the operator's
//! flag decides it.

use crate::controller::error::SourceError;
use crate::controller::source::{ResolvedStore, StoreCredentials};
use crate::crd::managed_secret::StoreKind;

/// The stable reason of a namespaced store refused for using the operator's identity.
pub const REASON: &str = "OperatorIdentityNotAllowed";

/// The spec field through which `credentials` would use the operator's own identity, if they do.
pub fn operator_identity(credentials: &StoreCredentials) -> Option<&'static str> {
    match credentials {
        StoreCredentials::AccessKey { .. } => None,
        // A token requested for the store's ServiceAccount is the tenant's; none is the operator's.
        StoreCredentials::Rrsa { token, .. } if token.is_empty() => {
            Some("auth.rrsa without serviceAccountRef")
        }
        StoreCredentials::Rrsa { .. } => None,
        StoreCredentials::EcsRamRole { .. } => Some("auth.ecsRamRole"),
        StoreCredentials::DefaultChain => Some("auth.default (the operator's credential chain)"),
    }
}

/// Refuses a namespaced store that would act as the operator, unless the operator allows it.
/// AssumeRole on top changes nothing: the role is assumed with the operator's identity.
pub fn check(store: &ResolvedStore, allow_namespaced: bool) -> Result<(), SourceError> {
    let Some(field) = operator_identity(&store.credentials) else {
        return Ok(());
    };
    if store.kind == StoreKind::ClusterSecretStore || allow_namespaced {
        return Ok(());
    }
    let chained = if store.connection.auth.assume_role.is_some() {
        " (with assumeRole on top)"
    } else {
        ""
    };
    Err(SourceError {
        reason: REASON,
        message: format!(
            "{} uses the operator's own identity through {field}{chained}; a SecretStore must bring \
             credentials of its namespace (auth.accessKey, or auth.rrsa with serviceAccountRef). \
             Use a ClusterSecretStore, or run the operator with --allow-namespaced-operator-identity \
             (chart value operator.allowNamespacedOperatorIdentity) on a single-tenant cluster; \
             nothing was sent",
            store.key
        ),
        transient: false,
        retry_after: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::store::KmsConnection;

    fn store(kind: StoreKind, credentials: StoreCredentials, assume_role: bool) -> ResolvedStore {
        let mut connection: KmsConnection = serde_json::from_value(serde_json::json!({
            "regionId": "cn-hangzhou", "auth": {}
        }))
        .unwrap();
        if assume_role {
            connection.auth.assume_role =
                serde_json::from_value(serde_json::json!({"roleArn": "acs:ram::1:role/other"}))
                    .unwrap();
        }
        ResolvedStore {
            key: "SecretStore/team/kms".into(),
            kind,
            connection,
            credentials,
        }
    }

    fn operator_identities() -> Vec<StoreCredentials> {
        vec![
            StoreCredentials::DefaultChain,
            StoreCredentials::EcsRamRole { role_name: None },
            StoreCredentials::Rrsa {
                role_arn: "acs:ram::1:role/r".into(),
                oidc_provider_arn: "acs:ram::1:oidc-provider/p".into(),
                token: String::new(),
                session_name: None,
            },
        ]
    }

    #[test]
    fn a_namespaced_store_may_not_act_as_the_operator_even_through_assume_role() {
        for credentials in operator_identities() {
            for assume_role in [false, true] {
                let refused = check(
                    &store(StoreKind::SecretStore, credentials.clone(), assume_role),
                    false,
                )
                .expect_err("refused");
                assert_eq!(refused.reason, REASON);
                assert!(!refused.transient);
                assert!(
                    refused.message.contains("ClusterSecretStore"),
                    "{}",
                    refused.message
                );
                assert!(
                    refused
                        .message
                        .contains("--allow-namespaced-operator-identity")
                );
            }
        }
    }

    #[test]
    fn a_cluster_store_or_the_operator_flag_allows_the_operator_identity() {
        for credentials in operator_identities() {
            assert!(
                check(
                    &store(StoreKind::ClusterSecretStore, credentials.clone(), true),
                    false
                )
                .is_ok()
            );
            assert!(check(&store(StoreKind::SecretStore, credentials, true), true).is_ok());
        }
    }

    #[test]
    fn credentials_of_the_namespace_are_always_allowed() {
        let own = [
            StoreCredentials::AccessKey {
                id: "id".into(),
                secret: "secret".into(),
                security_token: None,
            },
            StoreCredentials::Rrsa {
                role_arn: "acs:ram::1:role/r".into(),
                oidc_provider_arn: "acs:ram::1:oidc-provider/p".into(),
                token: "a-token-of-the-tenant-service-account".into(),
                session_name: None,
            },
        ];
        for credentials in own {
            assert_eq!(operator_identity(&credentials), None);
            assert!(check(&store(StoreKind::SecretStore, credentials, true), false).is_ok());
        }
    }
}
