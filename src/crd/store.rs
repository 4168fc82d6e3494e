//! `SecretStore` (namespaced) and `ClusterSecretStore` (cluster-scoped): where and how to reach KMS.
//! Both share [`KmsConnection`]; the cluster store adds who may use it and which secrets.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::managed_secret::{
    NAMESPACE_PATTERN, OBJECT_NAME_PATTERN, PRINTABLE_PATTERN, SECRET_KEY_PATTERN,
};

/// `acs:ram::<account>:role/<name>`.
const ROLE_ARN_PATTERN: &str = r"^acs:ram::[0-9]+:role/[!-~]+$";
/// RAM session names and role names as Alibaba Cloud accepts them.
const RAM_NAME_PATTERN: &str = r"^[A-Za-z0-9_.@-]+$";
/// An `allowedSecrets` entry: a KMS secret name or ARN, optionally ending in `*` (a prefix).
const ALLOWED_SECRET_PATTERN: &str =
    r"^(acs:kms:[a-z0-9-]+:[0-9]+:secret/)?[A-Za-z0-9_/+=.@-]*\*?$";
const NETWORK_RULE: &str = "!has(self.spec.endpoint) || !has(self.spec.network)";
const NETWORK_MESSAGE: &str =
    "network only picks the default endpoint: set endpoint or network, not both";

/// How to reach KMS: region, endpoint and credentials. Shared by both store kinds.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct KmsConnection {
    /// Alibaba Cloud region id, e.g. `cn-hangzhou`.
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[a-z0-9-]+$"))]
    pub region_id: String,
    /// Custom endpoint URL. Default `https://kms.<region>.aliyuncs.com` (or `kms-vpc` with
    /// `network: Vpc`). Plain `http://` is accepted only for loopback hosts (the emulator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    #[x_kube(validation = Rule::new(r"self.startsWith('https://') || self.matches('^http://(127\\.[0-9]+\\.[0-9]+\\.[0-9]+|localhost|\\[::1\\])(:[0-9]+)?/?$')").message("endpoint must be an https:// URL; plain http:// is allowed only for loopback addresses such as the local emulator"))]
    #[x_kube(validation = Rule::new("isURL(self) && url(self).getHostname() != ''").message("endpoint must be an absolute URL with a host (no spaces or control characters)"))]
    pub endpoint: Option<String>,
    /// `Public` (default) or `Vpc` endpoint family when no explicit endpoint is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<Network>,
    /// PEM CA bundle to trust for the endpoint (for private gateways or a TLS emulator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<String>,
    /// How kmsync authenticates to KMS.
    pub auth: StoreAuth,
    /// Client-side rate limit toward KMS for this store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum Network {
    Public,
    Vpc,
}

/// Exactly one credential source, optionally chained with `assumeRole`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.accessKey), has(self.rrsa), has(self.ecsRamRole), has(self.default)].filter(x, x).size() == 1").message("auth must set exactly one of accessKey, rrsa, ecsRamRole or default"))]
pub struct StoreAuth {
    /// AccessKey (and optional STS token) read from a Kubernetes Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key: Option<AccessKeyAuth>,
    /// RRSA: an OIDC token exchanged through `AssumeRoleWithOIDC`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rrsa: Option<RrsaAuth>,
    /// The ECS instance RAM role from the metadata service: the operator's own identity, so
    /// only a ClusterSecretStore may use it (unless the operator runs with
    /// --allow-namespaced-operator-identity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ecs_ram_role: Option<EcsRamRoleAuth>,
    /// The standard Alibaba credential chain of the operator's own environment: the operator's
    /// own identity, so only a ClusterSecretStore may use it (unless the operator runs with
    /// --allow-namespaced-operator-identity).
    #[serde(default, rename = "default", skip_serializing_if = "Option::is_none")]
    pub default_chain: Option<DefaultChainAuth>,
    /// Assume a RAM role on top of the credentials above (cross-account).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assume_role: Option<AssumeRole>,
}

/// A Secret holding an AccessKey pair.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessKeyAuth {
    pub secret_ref: CredentialsSecretRef,
}

/// Reference to a Secret with credentials. `namespace` only for ClusterSecretStore (required there).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsSecretRef {
    #[schemars(length(min = 1, max = 253), regex(pattern = OBJECT_NAME_PATTERN))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), regex(pattern = NAMESPACE_PATTERN))]
    pub namespace: Option<String>,
    /// Key of the AccessKey id. Default `AccessKeyId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = SECRET_KEY_PATTERN))]
    pub access_key_id_key: Option<String>,
    /// Key of the AccessKey secret. Default `AccessKeySecret`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = SECRET_KEY_PATTERN))]
    pub access_key_secret_key: Option<String>,
    /// Key of an optional STS security token. Default `SecurityToken` (used when present).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = SECRET_KEY_PATTERN))]
    pub security_token_key: Option<String>,
}

/// RRSA on ACK: exchange an OIDC token for STS credentials of a RAM role.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RrsaAuth {
    /// `acs:ram::<account>:role/<name>`
    #[schemars(length(max = 1024), regex(pattern = ROLE_ARN_PATTERN))]
    pub role_arn: String,
    /// `acs:ram::<account>:oidc-provider/<name>`
    #[schemars(
        length(max = 1024),
        regex(pattern = r"^acs:ram::[0-9]+:oidc-provider/[!-~]+$")
    )]
    pub oidc_provider_arn: String,
    /// Per-tenant identity: the operator requests a token for this ServiceAccount (TokenRequest
    /// API). Without it the operator's own projected token is used, which only a
    /// ClusterSecretStore may do (unless the operator runs with
    /// --allow-namespaced-operator-identity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_ref: Option<ServiceAccountRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 64), regex(pattern = RAM_NAME_PATTERN))]
    pub session_name: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccountRef {
    #[schemars(length(min = 1, max = 253), regex(pattern = OBJECT_NAME_PATTERN))]
    pub name: String,
    /// Only for ClusterSecretStore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), regex(pattern = NAMESPACE_PATTERN))]
    pub namespace: Option<String>,
    /// Token audiences (at most 10). Default `["sts.aliyuncs.com"]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10), inner(length(min = 1, max = 253), regex(pattern = PRINTABLE_PATTERN)))]
    pub audiences: Vec<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EcsRamRoleAuth {
    /// Role name; discovered from the metadata service when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = RAM_NAME_PATTERN))]
    pub role_name: Option<String>,
}

/// The operator's environment credential chain; no fields.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
pub struct DefaultChainAuth {}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AssumeRole {
    #[schemars(length(max = 1024), regex(pattern = ROLE_ARN_PATTERN))]
    pub role_arn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 1224), regex(pattern = PRINTABLE_PATTERN))]
    pub external_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 64), regex(pattern = RAM_NAME_PATTERN))]
    pub session_name: Option<String>,
    /// STS credential lifetime, 900–43200 seconds. Default 3600.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 900, max = 43200))]
    pub duration_seconds: Option<i64>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.burst) || self.burst >= self.qps").message("rateLimit.burst must be at least rateLimit.qps"))]
pub struct RateLimit {
    /// Sustained requests per second toward KMS.
    #[schemars(range(min = 1, max = 10000))]
    pub qps: i32,
    /// Short bursts above `qps`. Default: equal to `qps`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 20000))]
    pub burst: Option<i32>,
}

/// Status of either store kind.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct StoreStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}

const SECRET_STORE_NO_NAMESPACE: &str =
    "!has(self.spec.auth.accessKey) || !has(self.spec.auth.accessKey.secretRef.namespace)";
const SECRET_STORE_NO_SA_NAMESPACE: &str = "!has(self.spec.auth.rrsa) || !has(self.spec.auth.rrsa.serviceAccountRef) || !has(self.spec.auth.rrsa.serviceAccountRef.namespace)";

/// Where and how a namespace reaches KMS. Usable only by ManagedSecrets of its own namespace.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "kmsync.io",
    version = "v1alpha1",
    kind = "SecretStore",
    namespaced,
    status = "StoreStatus",
    shortname = "kss",
    category = "kmsync",
    printcolumn = r#"{"name": "Region", "type": "string", "jsonPath": ".spec.regionId"}"#,
    printcolumn = r#"{"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name": "Reason", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#,
    validation = Rule::new(SECRET_STORE_NO_NAMESPACE).message("a SecretStore reads its credentials Secret from its own namespace: remove auth.accessKey.secretRef.namespace (use a ClusterSecretStore to share credentials)"),
    validation = Rule::new(SECRET_STORE_NO_SA_NAMESPACE).message("a SecretStore uses a ServiceAccount of its own namespace: remove auth.rrsa.serviceAccountRef.namespace"),
    validation = Rule::new(NETWORK_RULE).message(NETWORK_MESSAGE)
)]
#[serde(rename_all = "camelCase")]
pub struct SecretStoreSpec {
    #[serde(flatten)]
    pub kms: KmsConnection,
}

/// A KMS store shared across namespaces, limited by `conditions` and `allowedSecrets`.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "kmsync.io",
    version = "v1alpha1",
    kind = "ClusterSecretStore",
    status = "StoreStatus",
    shortname = "kcss",
    category = "kmsync",
    printcolumn = r#"{"name": "Region", "type": "string", "jsonPath": ".spec.regionId"}"#,
    printcolumn = r#"{"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name": "Reason", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#,
    validation = Rule::new("!has(self.spec.auth.accessKey) || has(self.spec.auth.accessKey.secretRef.namespace)").message("a ClusterSecretStore must name the namespace of its credentials Secret in auth.accessKey.secretRef.namespace"),
    validation = Rule::new("!has(self.spec.auth.rrsa) || !has(self.spec.auth.rrsa.serviceAccountRef) || has(self.spec.auth.rrsa.serviceAccountRef.namespace)").message("a ClusterSecretStore must name the namespace of auth.rrsa.serviceAccountRef"),
    validation = Rule::new(NETWORK_RULE).message(NETWORK_MESSAGE)
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSecretStoreSpec {
    #[serde(flatten)]
    pub kms: KmsConnection,
    /// Namespaces allowed to use this store; any entry matching admits a namespace. Empty: all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub conditions: Vec<ClusterStoreCondition>,
    /// KMS secret names (or prefixes ending in `*`) that may be read through this store. Empty: all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(length(min = 1, max = 513), regex(pattern = ALLOWED_SECRET_PATTERN)))]
    pub allowed_secrets: Vec<String>,
}

/// One admission rule of a ClusterSecretStore: namespace names and/or a namespace label selector.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.namespaces) && size(self.namespaces) > 0) || has(self.namespaceSelector)").message("each condition needs namespaces or a namespaceSelector"))]
pub struct ClusterStoreCondition {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(length(min = 1, max = 63), regex(pattern = NAMESPACE_PATTERN)))]
    pub namespaces: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "namespace_selector_schema")]
    pub namespace_selector: Option<LabelSelector>,
}

/// The standard label selector, bounded and with its operators as an enum: an unknown operator
/// would otherwise match nothing and silently shut every namespace out.
fn namespace_selector_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "description": "Namespaces whose labels match (matchLabels AND every matchExpressions requirement).",
        "type": "object",
        "nullable": true,
        "properties": {
            "matchLabels": {
                "type": "object",
                "maxProperties": 64,
                "additionalProperties": {"type": "string", "maxLength": 63}
            },
            "matchExpressions": {
                "type": "array",
                "maxItems": 16,
                "items": {
                    "type": "object",
                    "required": ["key", "operator"],
                    "properties": {
                        "key": {"type": "string", "minLength": 1, "maxLength": 317},
                        "operator": {"type": "string", "enum": ["In", "NotIn", "Exists", "DoesNotExist"]},
                        "values": {
                            "type": "array",
                            "maxItems": 64,
                            "items": {"type": "string", "maxLength": 63}
                        }
                    },
                    "x-kubernetes-validations": [{
                        "rule": "self.operator in ['In', 'NotIn'] ? has(self.values) && size(self.values) > 0 : !has(self.values) || size(self.values) == 0",
                        "message": "matchExpressions: In and NotIn need values, Exists and DoesNotExist take none"
                    }]
                }
            }
        }
    })
}

impl ClusterStoreCondition {
    /// Labels are needed only for selector conditions; names match exactly.
    pub fn admits(&self, namespace: &str, labels: &BTreeMap<String, String>) -> bool {
        self.namespaces.iter().any(|n| n == namespace)
            || self
                .namespace_selector
                .as_ref()
                .is_some_and(|s| selector_matches(s, labels))
    }
}

/// Label selector semantics of Kubernetes (matchLabels AND every matchExpressions requirement).
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_ok = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let expressions_ok = selector.match_expressions.iter().flatten().all(|req| {
        let values = req.values.as_deref().unwrap_or_default();
        let value = labels.get(&req.key);
        match req.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    labels_ok && expressions_ok
}

impl ClusterSecretStoreSpec {
    /// Whether ManagedSecrets of `namespace` (with its labels) may use this store.
    pub fn admits_namespace(&self, namespace: &str, labels: &BTreeMap<String, String>) -> bool {
        self.conditions.is_empty() || self.conditions.iter().any(|c| c.admits(namespace, labels))
    }

    /// Whether `secret_name` is on the allow-list (exact names, or prefixes ending in `*`).
    pub fn admits_secret(&self, secret_name: &str) -> bool {
        self.allowed_secrets.is_empty()
            || self
                .allowed_secrets
                .iter()
                .any(|allowed| match allowed.strip_suffix('*') {
                    Some(prefix) => secret_name.starts_with(prefix),
                    None => allowed == secret_name,
                })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn spec(conditions: Vec<ClusterStoreCondition>, allowed: &[&str]) -> ClusterSecretStoreSpec {
        ClusterSecretStoreSpec {
            kms: KmsConnection::default(),
            conditions,
            allowed_secrets: allowed.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn empty_conditions_admit_every_namespace() {
        assert!(spec(vec![], &[]).admits_namespace("anything", &labels(&[])));
    }

    #[test]
    fn conditions_admit_by_name_or_selector() {
        let by_name = ClusterStoreCondition {
            namespaces: vec!["team-a".into()],
            ..Default::default()
        };
        let by_label = ClusterStoreCondition {
            namespace_selector: Some(LabelSelector {
                match_labels: Some(labels(&[("kmsync.io/tenant", "yes")])),
                match_expressions: Some(vec![LabelSelectorRequirement {
                    key: "env".into(),
                    operator: "NotIn".into(),
                    values: Some(vec!["prod".into()]),
                }]),
            }),
            ..Default::default()
        };
        let store = spec(vec![by_name, by_label], &[]);
        assert!(store.admits_namespace("team-a", &labels(&[])));
        assert!(!store.admits_namespace("team-b", &labels(&[])));
        assert!(store.admits_namespace("team-c", &labels(&[("kmsync.io/tenant", "yes")])));
        assert!(!store.admits_namespace(
            "team-d",
            &labels(&[("kmsync.io/tenant", "yes"), ("env", "prod")])
        ));
    }

    #[test]
    fn allow_list_takes_names_and_prefixes() {
        let store = spec(vec![], &["db_cred", "team-a/*"]);
        assert!(store.admits_secret("db_cred"));
        assert!(store.admits_secret("team-a/api"));
        assert!(!store.admits_secret("db_cred2"));
        assert!(!store.admits_secret("team-b/api"));
        assert!(spec(vec![], &[]).admits_secret("anything"));
    }
}
