//! What the episodes expect of each ManagedSecret: its store and shape, every KMS version it ever
//! had (read fault-free from the emulator), how a version renders into the Secret, the condition
//! reasons that count as "saying why", and the rotation bookkeeping the invariants need.

use std::collections::{BTreeMap, BTreeSet};

use kmsync::emulator::RunningEmulator;
use serde_json::{Value, json};

/// The reasons README "Conditions" documents, plus `InvalidResponse` (a 2xx answer that cannot be
/// the version asked for; see `controller::kms_source::check_answer`).
pub const KNOWN_REASONS: &[&str] = &[
    "StoreNotFound",
    "StoreNotAllowed",
    "SecretNotAllowed",
    "StoreNotReady",
    "InvalidCredentials",
    "AccessDenied",
    "SecretNotFound",
    "VersionNotFound",
    "SecretPendingDeletion",
    "PropertyNotFound",
    "InvalidSecretValue",
    "InvalidSecretKey",
    "Throttled",
    "KmsUnavailable",
    "TargetConflict",
    "CredentialsUnavailable",
    "InvalidSpec",
    "InvalidResponse",
];

/// Reasons of the `Rotation` condition (rotation::driver), by status.
pub const ROTATION_TRUE: &[&str] = &[
    "Rotating",
    "RotationScheduled",
    "RotationSucceeded",
    "AwaitingApproval",
    "SecretCreated",
];
pub const ROTATION_FALSE: &[&str] = &["RotationFailed", "SecretNotFound"];

/// What another field manager writes into a managed key (a conflicting write).
pub const INTRUDER_VALUE: &str = "written-by-someone-else";

/// The rotation template: keeps the user name, takes the generated password.
pub const TEMPLATE: &str = r#"{"uname":"{{ current.uname }}","pwd":"{{ password }}"}"#;

/// Which SecretStore a ManagedSecret reads through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Store {
    /// `kms`: static AccessKey credentials.
    Static,
    /// `kms-sts`: the same AccessKey, exchanged through STS AssumeRole for temporary credentials.
    Sts,
}

impl Store {
    pub fn name(self) -> &'static str {
        match self {
            Store::Static => "kms",
            Store::Sts => "kms-sts",
        }
    }
}

/// How a ManagedSecret renders a KMS value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// The whole value under `value`.
    Whole,
    /// `password` ← property `pwd`.
    Property,
    /// Every top-level key.
    Extract,
    /// `username` ← `uname`, `password` ← `pwd` (the rotating ones).
    Pair,
}

/// Progress of a rotating ManagedSecret as the harness last saw it.
#[derive(Debug, Default)]
pub struct RotationModel {
    /// The ManagedSecret's uid: version ids are `plan::version_id(uid, sequence)`.
    pub uid: String,
    /// Last `kmsync.io/rotate` value the harness set, and how many it set.
    pub issued: Option<String>,
    pub triggers: u64,
    /// A trigger was set during the current step.
    pub fresh_trigger: bool,
    /// `status.rotation` as last observed.
    pub sequence: i64,
    pub pending: Option<String>,
    pub attempts: i32,
    /// Failed attempts seen while the current version stayed pending.
    pub failures_while_pending: u32,
    /// Attempts (sequence numbers) written to KMS, and those that ended `RotationFailed`.
    pub written: BTreeSet<i64>,
    pub failed: BTreeSet<i64>,
    /// Attempts that began or ended while the monitor's watch was starting over (see
    /// `Seen::Relisted`): their course is unknown, only their end state is checked.
    pub unobserved: BTreeSet<i64>,
    /// The next observed state follows a relist.
    pub gap: bool,
    pub succeeded: u64,
}

pub struct Managed {
    pub name: &'static str,
    pub kms: &'static str,
    pub shape: Shape,
    pub store: Store,
    /// Every version the KMS secret ever had, oldest first: (id, raw value).
    pub known: Vec<(String, String)>,
    /// Index in `known` of the newest version the Secret was found holding after a step, and of
    /// the newest one the monitor saw written (two orders: a watch event may arrive late).
    pub seen: usize,
    pub seen_watch: usize,
    /// The Secret's uid once it exists: a new uid means it was deleted and recreated.
    pub secret_uid: Option<String>,
    pub rotation: Option<RotationModel>,
}

impl Managed {
    pub fn new(name: &'static str, kms: &'static str, shape: Shape, store: Store) -> Self {
        Self {
            name,
            kms,
            shape,
            store,
            known: vec![],
            seen: 0,
            seen_watch: 0,
            secret_uid: None,
            rotation: (shape == Shape::Pair).then(RotationModel::default),
        }
    }

    pub fn rotating(&self) -> bool {
        self.rotation.is_some()
    }

    /// The spec fields beyond store and secret name.
    pub fn spec(&self) -> Value {
        let mut spec = match self.shape {
            Shape::Whole => json!({}),
            Shape::Property => json!({"data": [{"key": "password", "property": "pwd"}]}),
            Shape::Extract => json!({"dataFrom": {"extract": true}}),
            Shape::Pair => json!({"data": [{"key": "username", "property": "uname"},
                                           {"key": "password", "property": "pwd"}]}),
        };
        if self.rotating() {
            spec["rotation"] = json!({"interval": "720h", "minInterval": "1s", "strategy": "Immediate",
                "generate": {"password": {"length": 24, "excludePunctuation": true}, "template": TEMPLATE}});
        }
        spec["storeRef"] = json!({"name": self.store.name()});
        spec
    }

    /// The Secret data version `raw` renders to; `None` when it cannot (not the JSON the shape
    /// needs, which no version the harness or the rotation writes is).
    pub fn render(&self, raw: &str) -> Option<BTreeMap<String, String>> {
        if self.shape == Shape::Whole {
            return Some(BTreeMap::from([("value".into(), raw.to_string())]));
        }
        let value: Value = serde_json::from_str(raw).ok()?;
        let text = |k: &str| value[k].as_str().map(str::to_string);
        Some(match self.shape {
            Shape::Whole => unreachable!(),
            Shape::Property => BTreeMap::from([("password".into(), text("pwd")?)]),
            Shape::Extract => value
                .as_object()?
                .iter()
                .map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect::<Option<_>>()?,
            Shape::Pair => BTreeMap::from([
                ("username".into(), text("uname")?),
                ("password".into(), text("pwd")?),
            ]),
        })
    }

    /// Appends the versions the KMS secret gained since the last look (ids are never reused, and
    /// versions that rolled off stay known).
    pub fn learn(&mut self, emulator: &RunningEmulator) {
        for version in emulator.versions(self.kms).unwrap_or_default() {
            if !self.known.iter().any(|(id, _)| *id == version.id) {
                self.known.push((version.id, version.data));
            }
        }
    }

    /// Index in `known` of the version `data` is the complete rendering of.
    pub fn holds(&self, data: &BTreeMap<String, String>) -> Result<usize, String> {
        let empty: Vec<_> = data
            .iter()
            .filter(|(_, v)| v.is_empty())
            .map(|(k, _)| k)
            .collect();
        if !empty.is_empty() {
            return Err(format!("empty keys {empty:?}"));
        }
        (0..self.known.len())
            .rev()
            .find(|&v| {
                self.render(&self.known[v].1)
                    .is_some_and(|want| want.iter().all(|(k, w)| data.get(k) == Some(w)))
            })
            .ok_or_else(|| {
                format!(
                    "data is no complete rendering of any KMS version (keys {:?})",
                    data.keys().collect::<Vec<_>>()
                )
            })
    }

    pub fn version_name(&self, index: usize) -> &str {
        self.known.get(index).map_or("-", |(id, _)| id.as_str())
    }
}

/// A fresh value for the harness's own versions.
pub fn random_value(rng: &mut impl rand::Rng, n: usize) -> String {
    let pwd: String = (0..16)
        .map(|_| char::from(b"abcdefghijkmnpqrstuvwxyz23456789"[rng.random_range(0..32)]))
        .collect();
    json!({"pwd": pwd, "uname": format!("u{n}")}).to_string()
}

/// The reason in a message ending with `(Reason)`, as rotation conditions give it.
pub fn trailing_reason(message: &str) -> Option<&str> {
    let inner = message.strip_suffix(')')?;
    let start = inner.rfind('(')?;
    let reason = &inner[start + 1..];
    (!reason.is_empty() && reason.chars().all(|c| c.is_ascii_alphanumeric())).then_some(reason)
}
