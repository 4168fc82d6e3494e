//! `ManagedSecret`: one KMS secret (or a version of it) → one Kubernetes Secret, plus an optional
//! rotation policy. Static rules live here as schema constraints and CEL; the rest is checked by
//! the controller and reported as a condition.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::rotation::{RotationSpec, RotationStatus};

/// A KMS stage label: `ACSCurrent`, `ACSPrevious` or a custom label.
pub const STAGE_PATTERN: &str = r"^[A-Za-z0-9_-]{1,64}$";
/// A KMS version id (up to 64 characters).
pub const VERSION_ID_PATTERN: &str = r"^[A-Za-z0-9_.-]{1,64}$";
/// A Kubernetes Secret data key.
pub const SECRET_KEY_PATTERN: &str = r"^[-._a-zA-Z0-9]+$";
/// A Go duration such as `1h`, `90s` or `1h30m`; `0` disables.
pub const DURATION_PATTERN: &str = r"^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$";
/// Longest duration text we accept: the pattern alone admits numbers that overflow a duration.
pub const DURATION_MAX_LENGTH: u32 = 32;
/// A Kubernetes object name (DNS-1123 subdomain): Secrets, stores, ServiceAccounts, workloads.
pub const OBJECT_NAME_PATTERN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// A namespace name (DNS-1123 label, at most 63 characters).
pub const NAMESPACE_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
/// Free-form names (JSON properties, databases): anything but control characters, which are
/// never intended and would otherwise surface only as a confusing runtime failure.
pub const NO_CONTROL_PATTERN: &str = r"^[^\x00-\x1F\x7F]+$";
/// Printable ASCII without spaces (ARNs, Secret types, external ids).
pub const PRINTABLE_PATTERN: &str = r"^[!-~]+$";
/// Label keys and annotation keys: the apiserver's qualified-name check, applied at admission
/// so a bad key is refused here instead of failing every write of the target Secret.
const QUALIFIED_KEYS_RULE: &str = "self.all(k, !format.qualifiedName().validate(k).hasValue())";

const SECRET_KEY_RULE: &str = "self != '.' && self != '..' && !self.startsWith('..')";
const SECRET_KEY_MESSAGE: &str = "a Secret key may not be '.', '..' or start with '..'";

/// Which store to read through.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StoreRef {
    #[schemars(length(min = 1, max = 253), regex(pattern = OBJECT_NAME_PATTERN))]
    pub name: String,
    #[serde(default)]
    pub kind: StoreKind,
}

#[derive(
    Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, schemars::JsonSchema,
)]
pub enum StoreKind {
    #[default]
    SecretStore,
    ClusterSecretStore,
}

/// What ownership kmsync takes of the target Secret.
#[derive(
    Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
pub enum CreationPolicy {
    /// Create the Secret and own it; a pre-existing foreign Secret is a `TargetConflict`.
    #[default]
    Owner,
    /// Take over an existing Secret (it becomes ours, all keys managed).
    Adopt,
    /// Write only our keys into an existing (or new) Secret, leaving other keys alone.
    Merge,
}

/// What happens to the Secret when the ManagedSecret is deleted.
#[derive(
    Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
pub enum DeletionPolicy {
    /// Leave the Secret in place (default).
    #[default]
    Retain,
    /// Delete the Secret (only one we created or adopted; merged keys are removed instead).
    Delete,
}

/// The Kubernetes Secret to write.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetSpec {
    /// Secret name. Default: the ManagedSecret's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = OBJECT_NAME_PATTERN))]
    pub name: Option<String>,
    /// Secret type. Default `Opaque`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = PRINTABLE_PATTERN))]
    #[x_kube(validation = Rule::new("self != 'kubernetes.io/service-account-token'").message("target.type kubernetes.io/service-account-token is not allowed: kmsync never writes service account tokens"))]
    pub type_: Option<String>,
    /// Extra labels of the Secret (at most 64; keys and values as Kubernetes requires).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64, "additionalProperties" = {
        "type": "string", "maxLength": 63,
        "pattern": "^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
    }))]
    #[x_kube(validation = Rule::new(QUALIFIED_KEYS_RULE).message("target.labels keys must be valid label keys: an optional DNS subdomain prefix and '/', then at most 63 characters of [-._a-zA-Z0-9] starting and ending alphanumeric"))]
    pub labels: BTreeMap<String, String>,
    /// Extra annotations of the Secret (at most 64).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    #[x_kube(validation = Rule::new(QUALIFIED_KEYS_RULE).message("target.annotations keys must be valid annotation keys: an optional DNS subdomain prefix and '/', then at most 63 characters of [-._a-zA-Z0-9] starting and ending alphanumeric"))]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub creation_policy: CreationPolicy,
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// One Secret key filled from the KMS value (optionally a JSON property of it, optionally from
/// another version stage or version id than the resource's default).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.versionStage) && has(self.versionId))").message("a data entry may set versionStage or versionId, not both"))]
pub struct DataMapping {
    #[schemars(length(min = 1, max = 253), regex(pattern = SECRET_KEY_PATTERN))]
    #[x_kube(validation = Rule::new(SECRET_KEY_RULE).message(SECRET_KEY_MESSAGE))]
    pub key: String,
    /// Top-level JSON property of the value; absent means the whole value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024), regex(pattern = NO_CONTROL_PATTERN))]
    pub property: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = STAGE_PATTERN))]
    pub version_stage: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = VERSION_ID_PATTERN))]
    pub version_id: Option<String>,
    /// Leave this key out (instead of failing the whole sync) when its version or property does
    /// not exist, e.g. `ACSPrevious` before the first rotation.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

/// Bulk mapping of a JSON value's top-level keys.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataFrom {
    /// Every top-level JSON key becomes a Secret key (explicit `data` entries win on clashes).
    #[serde(default)]
    pub extract: bool,
}

/// A workload whose pods are restarted when the data they consume changes.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutTarget {
    pub kind: RolloutKind,
    #[schemars(length(min = 1, max = 253), regex(pattern = OBJECT_NAME_PATTERN))]
    pub name: String,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum RolloutKind {
    Deployment,
    StatefulSet,
    DaemonSet,
}

impl RolloutKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deployment => "Deployment",
            Self::StatefulSet => "StatefulSet",
            Self::DaemonSet => "DaemonSet",
        }
    }
}

/// Desired state of a ManagedSecret.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "kmsync.io",
    version = "v1alpha1",
    kind = "ManagedSecret",
    namespaced,
    status = "ManagedSecretStatus",
    shortname = "msec",
    category = "kmsync",
    printcolumn = r#"{"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name": "Reason", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name": "Version", "type": "string", "jsonPath": ".status.source.versionId"}"#,
    printcolumn = r#"{"name": "Stage", "type": "string", "jsonPath": ".status.source.versionStages"}"#,
    printcolumn = r#"{"name": "Last Sync", "type": "date", "jsonPath": ".status.lastSyncTime"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.versionStage) && has(self.versionId))").message("set versionStage or versionId, not both"))]
#[x_kube(validation = Rule::new("!(has(self.rotation) && has(self.versionId))").message("rotation cannot be combined with a pinned versionId: the Secret would never receive the rotated versions"))]
pub struct ManagedSecretSpec {
    pub store_ref: StoreRef,
    /// KMS secret name (or ARN `acs:kms:<region>:<account>:secret/<name>`).
    #[schemars(
        length(min = 1, max = 512),
        regex(pattern = r"^(acs:kms:[a-z0-9-]+:[0-9]+:secret/)?[A-Za-z0-9_/+=.@-]{1,192}$")
    )]
    pub secret_name: String,
    /// Stage to read (default `ACSCurrent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = STAGE_PATTERN))]
    pub version_stage: Option<String>,
    /// Pin one version instead of a stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = VERSION_ID_PATTERN))]
    pub version_id: Option<String>,
    /// How often to re-read KMS (Go duration, `0` = never; 10s–720h). Default `1h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = DURATION_MAX_LENGTH), regex(pattern = DURATION_PATTERN))]
    #[x_kube(validation = Rule::new("duration(self) == duration('0s') || (duration(self) >= duration('10s') && duration(self) <= duration('720h'))").message("refreshInterval must be 0 (no periodic refresh) or between 10s and 720h"))]
    pub refresh_interval: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<TargetSpec>,
    /// Explicit key mapping. Without `data`/`dataFrom` the whole value lands under key `value`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    #[x_kube(validation = Rule::new("self.all(x, self.exists_one(y, y.key == x.key))").message("data keys must be unique"))]
    pub data: Vec<DataMapping>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_from: Option<DataFrom>,
    /// Makes kmsync the producer of this secret: it generates and promotes new versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<RotationSpec>,
    /// Workloads restarted (pod-template annotation) when the synced data changes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub rollout_restart: Vec<RolloutTarget>,
}

/// The KMS version last written to the Secret.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub version_stages: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_time: Option<String>,
}

/// Observed state of a ManagedSecret.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManagedSecretStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<String>,
    /// KMS versions (`selector=versionId,…`) that `rolloutRestart` workloads were last rolled for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumers_revision: Option<String>,
    /// Last value of `kmsync.io/force-sync` acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_force_sync: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<RotationStatus>,
}

impl ManagedSecret {
    /// Target Secret name: `spec.target.name`, else the resource's own name.
    pub fn target_name(&self) -> String {
        self.spec
            .target
            .as_ref()
            .and_then(|t| t.name.clone())
            .unwrap_or_else(|| self.metadata.name.clone().unwrap_or_default())
    }
}
