//! The seeded step generator: which fault or event a step brings, and what each ManagedSecret's
//! `Ready` condition must then say.

use std::collections::BTreeMap;

use kmsync::emulator::{ErrorRule, FaultConfig, Mutation, MutationRule};
use rand::Rng;

use super::model::Store;

/// The operator's `--kms-timeout-secs` in the episodes; timeout steps add more latency than this.
pub const KMS_TIMEOUT_SECS: u64 = 1;

/// What `Ready` must say after a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// `True/Synced`, holding the version KMS calls current.
    Synced,
    /// `False` with one of these reasons.
    Failed(&'static [&'static str]),
    /// A partial fault rate or a harmless one: either outcome is right.
    Either,
}

impl Expect {
    /// Whether `reason` of a `Ready=False` is what this expectation allows.
    pub fn allows_failure(self, reason: &str) -> bool {
        match self {
            Expect::Synced => false,
            Expect::Failed(reasons) => reasons.contains(&reason),
            Expect::Either => true,
        }
    }
}

/// What one step does.
#[derive(Clone, Debug)]
pub enum Step {
    /// Faults for the whole step. `sts` is the expectation for ManagedSecrets on the STS store
    /// when it differs (their credentials go through STS). `timed_out`: the failure must be the
    /// client's timeout. `rotate`: rotation steps are the target, so a rotation is triggered.
    Fault {
        kind: &'static str,
        faults: FaultConfig,
        expect: Expect,
        sts: Option<Expect>,
        timed_out: bool,
        rotate: bool,
    },
    /// A new version of one (non-rotating) KMS secret becomes ACSCurrent.
    NewVersion(usize),
    /// Another field manager overwrites a managed key of one Secret.
    Conflict(usize),
    /// Every STS credential issued so far expires now; with `sts_down`, AssumeRole fails too
    /// (503: a refusal would keep the store failed until its re-check a minute later, by design).
    ExpireSts { sts_down: bool },
    /// The kube-apiserver is stopped (SIGTERM, or SIGKILL with `kill`) and started again while
    /// the operator has work queued.
    RestartApiserver { kill: bool },
}

impl Step {
    pub fn kind(&self) -> &'static str {
        match self {
            Step::Fault { kind, .. } => kind,
            Step::NewVersion(_) => "new version (PutSecretValue)",
            Step::Conflict(_) => "conflicting write (other field manager)",
            Step::ExpireSts { sts_down: false } => "STS credentials expired (refresh works)",
            Step::ExpireSts { sts_down: true } => "STS credentials expired, STS unavailable",
            Step::RestartApiserver { kill: false } => "apiserver restart (SIGTERM)",
            Step::RestartApiserver { kill: true } => "apiserver restart (SIGKILL)",
        }
    }

    /// The faults in force during the step.
    pub fn faults(&self) -> FaultConfig {
        match self {
            Step::Fault { faults, .. } => faults.clone(),
            Step::ExpireSts { sts_down: true } => {
                error("AssumeRole", "ServiceUnavailable", 503, 1.0)
            }
            _ => FaultConfig::default(),
        }
    }

    /// No fault at all: in-flight work must finish and status catch up.
    pub fn clean(&self) -> bool {
        self.faults() == FaultConfig::default()
    }

    pub fn expect(&self, store: Store) -> Expect {
        match self {
            Step::Fault { expect, sts, .. } => match store {
                Store::Sts => sts.unwrap_or(*expect),
                Store::Static => *expect,
            },
            Step::ExpireSts { sts_down: true } if store == Store::Sts => {
                Expect::Failed(&["CredentialsUnavailable", "StoreNotReady"])
            }
            _ => Expect::Synced,
        }
    }

    pub fn timed_out(&self) -> bool {
        matches!(
            self,
            Step::Fault {
                timed_out: true,
                ..
            }
        )
    }

    pub fn targets_rotation(&self) -> bool {
        matches!(self, Step::Fault { rotate: true, .. })
    }
}

pub fn error(action: &str, code: &str, status: u16, rate: f64) -> FaultConfig {
    FaultConfig {
        errors: vec![ErrorRule {
            action: action.into(),
            rate,
            code: code.into(),
            status,
            message: Some("Injected by k8s_faults.".into()),
        }],
        ..FaultConfig::default()
    }
}

fn mutation(kind: Mutation, key: Option<&str>, rate: f64) -> FaultConfig {
    FaultConfig {
        mutations: vec![MutationRule {
            action: "GetSecretValue".into(),
            rate,
            kind,
            key: key.map(str::to_string),
        }],
        ..FaultConfig::default()
    }
}

fn latency(action: &str, ms: u64) -> FaultConfig {
    FaultConfig {
        latency_ms: BTreeMap::from([(action.into(), ms)]),
        ..FaultConfig::default()
    }
}

const UNAVAILABLE: Expect = Expect::Failed(&["KmsUnavailable"]);
/// When every call fails, a store check that runs meanwhile (after an apiserver restart the
/// stores are listed and checked again) fails too, and its readers wait with `StoreNotReady`.
const ALL_UNAVAILABLE: Expect = Expect::Failed(&["KmsUnavailable", "StoreNotReady"]);
const ALL_UNAVAILABLE_STS: Expect =
    Expect::Failed(&["KmsUnavailable", "CredentialsUnavailable", "StoreNotReady"]);

/// How often each kind comes, by its number in `random_step`: the slow ones (a real timeout or a
/// retried fault waits out the client's retries, seconds each) less often than the rest, a new
/// version most often.
const WEIGHTS: [u32; 30] = [
    2, 2, 1, 4, 4, 2, 4, 4, 4, 4, // GetSecretValue errors 0..=9
    4, 4, 4, 4, 4, 4, 4, 2, // GetSecretValue mutations 10..=17
    2, 1, 4, // timeouts, 503 on every call 18..=20
    4, 4, 3, 4, 4, // rotation calls 21..=25
    4, 4,  // STS expiry 26..=27
    6,  // conflicting write 28
    18, // new version 29
];

/// A random step. `plain` are the indexes of ManagedSecrets whose KMS secret the harness writes
/// (the rotating ones get their versions from the operator); `all` counts every one.
pub fn random_step(rng: &mut impl Rng, plain: &[usize], all: usize) -> Step {
    let fault = |kind, faults, expect| Step::Fault {
        kind,
        faults,
        expect,
        sts: None,
        timed_out: false,
        rotate: false,
    };
    let rotation = |kind, faults| Step::Fault {
        kind,
        faults,
        expect: Expect::Synced,
        sts: None,
        timed_out: false,
        rotate: true,
    };
    // The client retries InternalFailure, ServiceUnavailableTemporary, Rejected.Throttling and
    // transport errors (up to ~25 s): those come at a partial rate; the rest at 1.0.
    let total: u32 = WEIGHTS.iter().sum();
    let mut draw = rng.random_range(0..total);
    let kind = WEIGHTS
        .iter()
        .position(|&w| {
            let hit = draw < w;
            draw = draw.saturating_sub(w);
            hit
        })
        .expect("a kind");
    match kind {
        0 => fault(
            "latency (under the timeout)",
            latency("GetSecretValue", rng.random_range(50..400)),
            Expect::Synced,
        ),
        1 => fault(
            "connection reset (30%)",
            mutation(Mutation::ConnectionReset, None, 0.3),
            Expect::Either,
        ),
        2 => fault(
            "5xx InternalFailure (30%, retried)",
            error("GetSecretValue", "InternalFailure", 500, 0.3),
            Expect::Either,
        ),
        3 => fault(
            "5xx InternalError",
            error("GetSecretValue", "InternalError", 500, 1.0),
            UNAVAILABLE,
        ),
        4 => fault(
            "503 ServiceUnavailable",
            error("GetSecretValue", "ServiceUnavailable", 503, 1.0),
            UNAVAILABLE,
        ),
        5 => fault(
            "429 Rejected.Throttling (30%, retried)",
            error("GetSecretValue", "Rejected.Throttling", 429, 0.3),
            Expect::Either,
        ),
        6 => fault(
            "429 Throttling.User",
            error("GetSecretValue", "Throttling.User", 429, 1.0),
            Expect::Failed(&["Throttled"]),
        ),
        7 => fault(
            "403 access denied",
            error("GetSecretValue", "Forbidden.NoPermission", 403, 1.0),
            Expect::Failed(&["AccessDenied"]),
        ),
        8 => fault(
            "expired STS token (error code)",
            error("GetSecretValue", "InvalidSecurityToken.Expired", 400, 1.0),
            Expect::Failed(&["InvalidCredentials"]),
        ),
        9 => fault(
            "404 not found",
            error("GetSecretValue", "Forbidden.ResourceNotFound", 404, 1.0),
            Expect::Failed(&["SecretNotFound"]),
        ),
        10 => fault(
            "malformed JSON",
            mutation(Mutation::MalformedJson, None, 1.0),
            Expect::Failed(&["InvalidResponse"]),
        ),
        11 => fault(
            "truncated JSON",
            mutation(Mutation::TruncatedJson, None, 1.0),
            Expect::Failed(&["InvalidResponse"]),
        ),
        12 => fault(
            "empty SecretData",
            mutation(Mutation::EmptySecretData, None, 1.0),
            Expect::Failed(&["InvalidResponse"]),
        ),
        13 => fault(
            "wrong SecretDataType",
            mutation(Mutation::WrongDataType, None, 1.0),
            Expect::Failed(&["InvalidResponse"]),
        ),
        14 => fault(
            "JSON key SecretData missing",
            mutation(Mutation::MissingKey, Some("SecretData"), 1.0),
            Expect::Failed(&["InvalidResponse"]),
        ),
        15 => fault(
            "JSON key VersionId missing",
            mutation(Mutation::MissingKey, Some("VersionId"), 1.0),
            Expect::Failed(&["InvalidResponse"]),
        ),
        16 => fault(
            "older VersionId returned",
            mutation(Mutation::OlderVersion, None, 1.0),
            Expect::Failed(&["InvalidResponse"]),
        ),
        17 => fault(
            "mixed mutations (3 x 30%)",
            FaultConfig {
                mutations: [
                    Mutation::EmptySecretData,
                    Mutation::OlderVersion,
                    Mutation::TruncatedJson,
                ]
                .into_iter()
                .map(|kind| MutationRule {
                    action: "GetSecretValue".into(),
                    rate: 0.3,
                    kind,
                    key: None,
                })
                .collect(),
                ..FaultConfig::default()
            },
            Expect::Either,
        ),
        18 => Step::Fault {
            kind: "KMS read timeout (latency > --kms-timeout-secs)",
            faults: latency(
                "GetSecretValue",
                KMS_TIMEOUT_SECS * 1000 + rng.random_range(500..1500),
            ),
            expect: UNAVAILABLE,
            sts: None,
            timed_out: true,
            rotate: false,
        },
        19 => Step::Fault {
            kind: "timeout on every call (latency > --kms-timeout-secs)",
            faults: latency("*", KMS_TIMEOUT_SECS * 1000 + rng.random_range(500..1500)),
            expect: ALL_UNAVAILABLE,
            // A credential refresh that times out is CredentialsUnavailable.
            sts: Some(ALL_UNAVAILABLE_STS),
            timed_out: false,
            rotate: true,
        },
        20 => Step::Fault {
            kind: "503 on every call",
            faults: error("*", "ServiceUnavailable", 503, 1.0),
            expect: ALL_UNAVAILABLE,
            sts: Some(ALL_UNAVAILABLE_STS),
            timed_out: false,
            rotate: true,
        },
        21 => rotation(
            "rotation write 503 (PutSecretValue)",
            error("PutSecretValue", "ServiceUnavailable", 503, 1.0),
        ),
        22 => rotation(
            "rotation write refused (PutSecretValue 403)",
            error("PutSecretValue", "Forbidden.NoPermission", 403, 1.0),
        ),
        23 => rotation(
            "rotation write applied, answer lost (PutSecretValue reset 50%)",
            FaultConfig {
                mutations: vec![MutationRule {
                    action: "PutSecretValue".into(),
                    rate: 0.5,
                    kind: Mutation::ConnectionReset,
                    key: None,
                }],
                ..FaultConfig::default()
            },
        ),
        24 => rotation(
            "password generation fails (GetRandomPassword 500)",
            error("GetRandomPassword", "InternalError", 500, 1.0),
        ),
        25 => rotation(
            "version listing throttled (ListSecretVersionIds 429)",
            error("ListSecretVersionIds", "Throttling.User", 429, 1.0),
        ),
        26 => Step::ExpireSts { sts_down: false },
        27 => Step::ExpireSts { sts_down: true },
        28 => Step::Conflict(rng.random_range(0..all)),
        // New versions, the common case in life.
        _ => Step::NewVersion(plain[rng.random_range(0..plain.len())]),
    }
}
