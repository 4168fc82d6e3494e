//! Fault injection and throttling: per-action latency, random errors (rate + code) and
//! token-bucket throttling per QPS group (kms-api.md §7), answering `429 Rejected.Throttling`.
//! Response mutations make a successful answer wrong on the wire (connection reset, malformed or
//! truncated JSON, empty `SecretData`, wrong `SecretDataType`, a missing key, an older version),
//! for reliability tests of clients. All of it is OFF by default and can be replaced at run time
//! (`PUT /admin/faults`).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::error::KmsError;

/// One error rule: calls of `action` (`*` = any) fail with probability `rate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorRule {
    #[serde(default = "any_action")]
    pub action: String,
    pub rate: f64,
    pub code: String,
    #[serde(default = "default_status")]
    pub status: u16,
    #[serde(default)]
    pub message: Option<String>,
}

fn any_action() -> String {
    "*".to_string()
}

fn default_status() -> u16 {
    500
}

/// How a successful answer is spoiled by a [`MutationRule`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Mutation {
    /// The status line and headers are sent, then the connection is dropped mid-body.
    ConnectionReset,
    /// A 200 whose body is not JSON.
    MalformedJson,
    /// A 200 whose body is the first half of the real JSON (complete at the HTTP level).
    TruncatedJson,
    /// `SecretData` is `""`.
    EmptySecretData,
    /// `SecretDataType` flipped between `text` and `binary`.
    WrongDataType,
    /// The top-level key `key` (default `SecretData`) is left out.
    MissingKey,
    /// The `ACSPrevious` version is answered instead (with its own id, data and stages), as a
    /// lagging replica would; unchanged when there is none.
    OlderVersion,
}

impl Mutation {
    /// Every kind, so sweeps over "each spoiled answer" cannot miss a new one.
    pub const ALL: [Mutation; 7] = [
        Mutation::ConnectionReset,
        Mutation::MalformedJson,
        Mutation::TruncatedJson,
        Mutation::EmptySecretData,
        Mutation::WrongDataType,
        Mutation::MissingKey,
        Mutation::OlderVersion,
    ];
}

/// Successful calls of `action` (default `GetSecretValue`; `*` = any) are spoiled with
/// probability `rate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MutationRule {
    #[serde(default = "get_secret_value")]
    pub action: String,
    pub rate: f64,
    pub kind: Mutation,
    /// For `missingKey`: the key left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

fn get_secret_value() -> String {
    "GetSecretValue".to_string()
}

impl MutationRule {
    /// Spoils a successful JSON answer in place; the wire-level kinds are done by the caller.
    pub fn apply(&self, body: &mut serde_json::Value) {
        let Some(map) = body.as_object_mut() else {
            return;
        };
        match self.kind {
            Mutation::EmptySecretData => {
                map.insert("SecretData".into(), "".into());
            }
            Mutation::WrongDataType => {
                let binary = map
                    .get("SecretDataType")
                    .and_then(serde_json::Value::as_str)
                    .is_some_and(|t| t.eq_ignore_ascii_case("binary"));
                map.insert(
                    "SecretDataType".into(),
                    if binary { "text" } else { "binary" }.into(),
                );
            }
            Mutation::MissingKey => {
                map.remove(self.key.as_deref().unwrap_or("SecretData"));
            }
            Mutation::ConnectionReset
            | Mutation::MalformedJson
            | Mutation::TruncatedJson
            | Mutation::OlderVersion => {}
        }
    }
}

/// A token bucket: `qps` refill per second, up to `burst` tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GroupLimit {
    pub qps: f64,
    pub burst: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ThrottleConfig {
    pub enabled: bool,
    /// Group name → limit. Defaults from §7.
    pub groups: BTreeMap<String, GroupLimit>,
    /// Action → group overrides of the built-in assignment.
    pub actions: BTreeMap<String, String>,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        let limit = |qps: f64| GroupLimit { qps, burst: qps };
        let groups = [
            ("createDelete", limit(10.0)),
            ("getValue", limit(450.0)),
            ("lowFrequency", limit(40.0)),
            (
                "rotate",
                GroupLimit {
                    qps: 50.0 / 3600.0,
                    burst: 50.0,
                },
            ),
            ("accountStatus", limit(1.0)),
            ("keyRead", limit(50.0)),
            ("sts", limit(100.0)),
        ];
        Self {
            enabled: false,
            groups: groups
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            actions: BTreeMap::new(),
        }
    }
}

/// The run-time fault settings (`GET`/`PUT /admin/faults`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct FaultConfig {
    /// Action (or `*`) → added latency in milliseconds.
    pub latency_ms: BTreeMap<String, u64>,
    pub errors: Vec<ErrorRule>,
    pub throttling: ThrottleConfig,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mutations: Vec<MutationRule>,
}

/// The built-in QPS group of an action ([INF] for the writes, §7).
pub fn qps_group(action: &str) -> &'static str {
    match action {
        "CreateSecret" | "DeleteSecret" | "RestoreSecret" => "createDelete",
        "GetSecretValue" | "BatchGetSecretValue" | "DescribeSecret" => "getValue",
        "RotateSecret" => "rotate",
        "DescribeAccountKmsStatus" | "OpenKmsService" => "accountStatus",
        "ListTagResources" | "DescribeRegions" => "keyRead",
        "AssumeRole" | "AssumeRoleWithOIDC" | "GetCallerIdentity" => "sts",
        _ => "lowFrequency",
    }
}

/// Fault settings plus the live token buckets.
#[derive(Debug, Default)]
pub struct Faults {
    pub config: FaultConfig,
    buckets: HashMap<String, (f64, Instant)>,
}

impl Faults {
    pub fn new(config: FaultConfig) -> Self {
        Self {
            config,
            buckets: HashMap::new(),
        }
    }

    /// Replaces the settings and refills every bucket.
    pub fn replace(&mut self, config: FaultConfig) {
        self.config = config;
        self.buckets.clear();
    }

    pub fn latency(&self, action: &str) -> Duration {
        let ms = self
            .config
            .latency_ms
            .get(action)
            .or_else(|| self.config.latency_ms.get("*"));
        Duration::from_millis(ms.copied().unwrap_or(0))
    }

    /// Takes one token from the action's group; `Rejected.Throttling` when empty.
    pub fn throttle(&mut self, action: &str, now: Instant) -> Result<(), KmsError> {
        let t = &self.config.throttling;
        if !t.enabled {
            return Ok(());
        }
        let group = t
            .actions
            .get(action)
            .map_or(qps_group(action), String::as_str);
        let Some(limit) = t.groups.get(group).copied() else {
            return Ok(());
        };
        let (tokens, last) = self
            .buckets
            .entry(group.to_string())
            .or_insert((limit.burst, now));
        let refill = now.saturating_duration_since(*last).as_secs_f64() * limit.qps;
        *tokens = (*tokens + refill).min(limit.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(KmsError::throttling())
        }
    }

    /// The first matching error rule that fires.
    pub fn injected_error(&self, action: &str, rng: &mut impl Rng) -> Option<KmsError> {
        self.config
            .errors
            .iter()
            .filter(|r| r.action == "*" || r.action == action)
            .find(|r| rng.random::<f64>() < r.rate)
            .map(|r| {
                let message = r
                    .message
                    .clone()
                    .unwrap_or_else(|| "Injected fault.".into());
                KmsError::new(&r.code, r.status, message)
            })
    }
}

impl Faults {
    /// The first matching mutation rule that fires.
    pub fn mutation(&self, action: &str, rng: &mut impl Rng) -> Option<MutationRule> {
        self.config
            .mutations
            .iter()
            .filter(|r| r.action == "*" || r.action == action)
            .find(|r| rng.random::<f64>() < r.rate)
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_is_off_by_default_and_per_group() {
        let mut f = Faults::default();
        let now = Instant::now();
        assert!((0..1000).all(|_| f.throttle("CreateSecret", now).is_ok()));
        let mut cfg = FaultConfig::default();
        cfg.throttling.enabled = true;
        f.replace(cfg);
        assert!((0..10).all(|_| f.throttle("CreateSecret", now).is_ok()));
        let err = f.throttle("DeleteSecret", now).unwrap_err();
        assert_eq!(
            (err.code.as_str(), err.status),
            ("Rejected.Throttling", 429)
        );
        assert!(f.throttle("GetSecretValue", now).is_ok());
        assert!(
            f.throttle("CreateSecret", now + Duration::from_millis(150))
                .is_ok()
        );
    }

    #[test]
    fn error_rules_and_latency() {
        let cfg: FaultConfig = serde_json::from_str(
            r#"{"latencyMs":{"*":5,"GetSecretValue":20},
                "errors":[{"action":"PutSecretValue","rate":1.0,"code":"InternalFailure"}]}"#,
        )
        .unwrap();
        let f = Faults::new(cfg);
        let mut rng = rand::rng();
        assert_eq!(f.latency("GetSecretValue"), Duration::from_millis(20));
        assert_eq!(f.latency("ListSecrets"), Duration::from_millis(5));
        assert_eq!(
            f.injected_error("PutSecretValue", &mut rng).unwrap().status,
            500
        );
        assert!(f.injected_error("GetSecretValue", &mut rng).is_none());
    }

    #[test]
    fn mutations_parse_match_and_spoil_bodies() {
        let cfg: FaultConfig = serde_json::from_str(
            r#"{"mutations":[{"rate":1.0,"kind":"emptySecretData"},
                             {"action":"*","rate":1.0,"kind":"missingKey","key":"VersionId"}]}"#,
        )
        .unwrap();
        let f = Faults::new(cfg.clone());
        let mut rng = rand::rng();
        let first = f.mutation("GetSecretValue", &mut rng).unwrap();
        assert_eq!(
            (first.action.as_str(), first.kind),
            ("GetSecretValue", Mutation::EmptySecretData)
        );
        assert_eq!(
            f.mutation("ListSecrets", &mut rng).unwrap().kind,
            Mutation::MissingKey
        );
        let value = || {
            serde_json::json!({"SecretName": "s", "VersionId": "v1", "SecretData": "x",
                               "SecretDataType": "text"})
        };
        let mut body = value();
        first.apply(&mut body);
        assert_eq!(body["SecretData"], "");
        let mut body = value();
        cfg.mutations[1].apply(&mut body);
        assert!(body.get("VersionId").is_none() && body["SecretData"] == "x");
        let flip = MutationRule {
            action: "GetSecretValue".into(),
            rate: 1.0,
            kind: Mutation::WrongDataType,
            key: None,
        };
        let mut body = value();
        flip.apply(&mut body);
        assert_eq!(body["SecretDataType"], "binary");
        flip.apply(&mut body);
        assert_eq!(body["SecretDataType"], "text");
        let missing_data = MutationRule {
            kind: Mutation::MissingKey,
            ..flip
        };
        let mut body = value();
        missing_data.apply(&mut body);
        assert!(body.get("SecretData").is_none());
        // Off by default, and the default config serializes as before.
        let none = Faults::default();
        assert!(none.mutation("GetSecretValue", &mut rng).is_none());
        let shown = serde_json::to_value(FaultConfig::default()).unwrap();
        assert!(shown.get("mutations").is_none());
    }
}
