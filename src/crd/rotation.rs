//! Rotation policy (`spec.rotation`) and its progress (`status.rotation`). The planner that acts on
//! them lives in the controller; here are only the shapes and their static rules.

use std::collections::BTreeMap;

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::managed_secret::{
    DURATION_MAX_LENGTH, NO_CONTROL_PATTERN, OBJECT_NAME_PATTERN, SECRET_KEY_PATTERN,
};

/// A positive Go duration (`90s`, `1h30m`).
const POSITIVE_DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$";
/// Five space-separated cron fields of the characters cron syntax uses (numbers, names, `*`,
/// `?`, `/`, `,`, `-`, `L`, `W`, `#`). Ranges and names are checked by the controller.
const CRON_PATTERN: &str = r"^[0-9A-Za-z*?/,#-]+( +[0-9A-Za-z*?/,#-]+){4}$";
/// A host name or IP address (no scheme, path, spaces or control characters).
const HOST_PATTERN: &str = r"^[A-Za-z0-9.:\[\]-]+$";
/// The loopback hosts `sslMode: disable` may talk to, as `is_loopback_host` decides at runtime.
const PLAIN_POSTGRES_RULE: &str = r"!has(self.sslMode) || self.sslMode != 'disable' || self.host.lowerAscii() == 'localhost' || self.host.lowerAscii().endsWith('.localhost') || self.host.matches('^127\\.[0-9]+\\.[0-9]+\\.[0-9]+$') || self.host == '::1' || self.host == '[::1]'";

/// How a rotation reaches `ACSCurrent`.
#[derive(
    Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
pub enum RotationStrategy {
    /// Single call: `PutSecretValue` makes the new version current at once.
    #[default]
    Immediate,
    /// Multi call: put under a pending stage, register and verify, then promote.
    Staged,
}

/// When and how kmsync produces new versions of the secret.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.interval) != has(self.schedule)").message("rotation needs exactly one of interval or schedule"))]
#[x_kube(validation = Rule::new("self.strategy != 'Staged' || has(self.register)").message("the Staged strategy needs register (postgres, webhook or manualApproval) to hand the new credential to the target system"))]
#[x_kube(validation = Rule::new("self.strategy == 'Staged' || !has(self.register)").message("register applies only to the Staged strategy"))]
#[x_kube(validation = Rule::new("!has(self.interval) || !has(self.minInterval) || duration(self.minInterval) <= duration(self.interval)").message("rotation.minInterval must not be longer than rotation.interval"))]
pub struct RotationSpec {
    /// Rotate this long after the last rotation (Go duration, at least 10m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = DURATION_MAX_LENGTH), regex(pattern = POSITIVE_DURATION_PATTERN))]
    #[x_kube(validation = Rule::new("duration(self) >= duration('10m')").message("rotation.interval must be at least 10m"))]
    pub interval: Option<String>,
    /// Cron schedule (5 fields, UTC), e.g. `0 3 * * 0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 9, max = 128), regex(pattern = CRON_PATTERN))]
    pub schedule: Option<String>,
    /// Minimum time between two rotations, whatever triggers them. Default `10m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = DURATION_MAX_LENGTH), regex(pattern = POSITIVE_DURATION_PATTERN))]
    pub min_interval: Option<String>,
    #[serde(default)]
    pub strategy: RotationStrategy,
    /// Stage label of a version in flight (Staged). Default `KmsyncPending`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9_-]{1,64}$"))]
    #[x_kube(validation = Rule::new("self != 'ACSCurrent' && self != 'ACSPrevious'").message("pendingStage must be a custom label, not ACSCurrent or ACSPrevious"))]
    pub pending_stage: Option<String>,
    #[serde(default)]
    pub generate: GenerateSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub register: Option<RegisterSpec>,
    /// Create the KMS secret with a generated value when it does not exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_if_missing: Option<CreateIfMissing>,
}

/// How the new value is produced.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GenerateSpec {
    #[serde(default)]
    pub password: PasswordSpec,
    /// JSON template; `{{ password }}` is the generated password and `{{ current.<key> }}` keeps a
    /// field of the current value. Without a template the value is the password itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 30720))]
    pub template: Option<String>,
}

/// Options of KMS `GetRandomPassword`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(self.excludeLowercase && self.excludeUppercase && self.excludeNumbers && self.excludePunctuation)").message("generate.password cannot exclude every character class"))]
pub struct PasswordSpec {
    /// 8–128, default 32.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 8, max = 128))]
    pub length: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub exclude_characters: Option<String>,
    #[serde(default)]
    pub exclude_lowercase: bool,
    #[serde(default)]
    pub exclude_uppercase: bool,
    #[serde(default)]
    pub exclude_numbers: bool,
    #[serde(default)]
    pub exclude_punctuation: bool,
    /// Require at least one character of each included class. Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_each_included_type: Option<bool>,
}

/// Where a Staged rotation registers (and verifies) the new credential before promotion.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.postgres), has(self.webhook), has(self.manualApproval)].filter(x, x).size() == 1").message("register must set exactly one of postgres, webhook or manualApproval"))]
pub struct RegisterSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PostgresRegister>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookRegister>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manual_approval: Option<ManualApproval>,
}

/// `ALTER ROLE … PASSWORD` through an admin connection, then a login as verification.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(PLAIN_POSTGRES_RULE).message("sslMode disable is allowed only for loopback hosts (localhost, 127.x.x.x, ::1): use require or verify-full"))]
pub struct PostgresRegister {
    #[schemars(length(min = 1, max = 253), regex(pattern = HOST_PATTERN))]
    pub host: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), regex(pattern = NO_CONTROL_PATTERN))]
    pub database: Option<String>,
    /// Secret (same namespace) with the admin `username` and `password`.
    pub admin_secret_ref: AdminSecretRef,
    /// JSON property of the value holding the role name (default `uname`) and password (`pwd`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024), regex(pattern = NO_CONTROL_PATTERN))]
    pub username_property: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024), regex(pattern = NO_CONTROL_PATTERN))]
    pub password_property: Option<String>,
    /// `disable` (loopback only), `require` or `verify-full`. Default `require`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(disable|require|verify-full)$"))]
    pub ssl_mode: Option<String>,
    /// PEM CA bundle for `verify-full` against a private CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdminSecretRef {
    #[schemars(length(min = 1, max = 253), regex(pattern = OBJECT_NAME_PATTERN))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = SECRET_KEY_PATTERN))]
    pub username_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = SECRET_KEY_PATTERN))]
    pub password_key: Option<String>,
}

/// The Secret (same namespace as the ManagedSecret) whose value signs every webhook call.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SigningSecretRef {
    #[schemars(length(min = 1, max = 253), regex(pattern = OBJECT_NAME_PATTERN))]
    pub name: String,
    /// Key of the Secret holding the signing key (default `key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = SECRET_KEY_PATTERN))]
    pub key: Option<String>,
}

/// A `kubernetes.io/tls` Secret (same namespace) with `tls.crt` and `tls.key`: the client
/// certificate kmsync presents to a webhook that asks for one (mutual TLS).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientCertificateRef {
    #[schemars(length(min = 1, max = 253), regex(pattern = OBJECT_NAME_PATTERN))]
    pub name: String,
}

/// POST the pending credential to an HTTPS endpoint that registers and verifies it.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookRegister {
    #[schemars(length(min = 8, max = 2048))]
    #[x_kube(validation = Rule::new(r"self.startsWith('https://') || self.matches('^http://(127\\.[0-9]+\\.[0-9]+\\.[0-9]+|localhost|\\[::1\\])(:[0-9]+)?(/.*)?$')").message("webhook url must be https:// (plain http:// only for loopback)"))]
    #[x_kube(validation = Rule::new("isURL(self) && url(self).getHostname() != ''").message("webhook url must be an absolute URL with a host (no spaces or control characters)"))]
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<String>,
    /// Go duration, 1s–5m, default `10s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = DURATION_MAX_LENGTH), regex(pattern = POSITIVE_DURATION_PATTERN))]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1s') && duration(self) <= duration('5m')").message("webhook timeout must be between 1s and 5m"))]
    pub timeout: Option<String>,
    /// Every call is signed with this key, so the receiver knows it comes from kmsync:
    /// `Kmsync-Timestamp: <unix seconds>` and
    /// `Kmsync-Signature: v1=<hex HMAC-SHA256(key, "<timestamp>.<body>")>` over the exact body.
    pub signing_secret_ref: SigningSecretRef,
    /// Optional client certificate for mutual TLS (`https://` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate_secret_ref: Option<ClientCertificateRef>,
}

/// Promotion waits until the annotation `kmsync.io/approve` equals the pending version id.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
pub struct ManualApproval {}

/// Bootstrap of a missing KMS secret.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateIfMissing {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_key_id: Option<String>,
    /// At most 20 tags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 20))]
    pub tags: BTreeMap<String, String>,
}

/// Progress of the current or last rotation.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RotationStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_version_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotation_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_rotation_time: Option<String>,
    /// Failed attempts of the current rotation (reset when one succeeds).
    #[serde(default)]
    pub attempts: i32,
    /// Rotations started so far; the next version id is derived from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<i64>,
    /// The step that failed last, for humans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_step: Option<String>,
    /// Last value of `kmsync.io/rotate` acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_trigger: Option<String>,
}
