//! Randomized fault episodes (issue 9): a seeded generator drives the emulator's fault controls
//! and writes of other parties while three ManagedSecrets (whole value, one property, extract)
//! sync. After every step the invariant is checked on every managed Secret:
//!
//! * it exists, no managed key is missing or empty;
//! * its data is exactly the rendering of a KMS version the harness put, never an older one than
//!   seen before (bytes change only to a complete, valid, newer value);
//! * a fault that fails every read leaves `Ready=False` with the reason that fault must give, a
//!   clean step leaves `Ready=True/Synced` on the latest version.
//!
//! `KMSYNC_FAULT_EPISODES` (default 100) sets the count; every episode has its own seed, printed
//! with any violation; `KMSYNC_FAULT_SEED=<seed>` replays that one episode. The run ends with a
//! Markdown table (episodes, steps, violations, faults by kind, time) on stdout.
#![cfg(feature = "integration")]

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kmsync::emulator::{ErrorRule, FaultConfig, Mutation, MutationRule};
use kube::api::{Patch, PatchParams};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use support::sync::SyncEnv;

/// The reasons README "Conditions" documents, plus `InvalidResponse` (a 2xx answer that cannot be
/// the version asked for; see `controller::kms_source::check_answer`).
const KNOWN_REASONS: &[&str] = &[
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

/// How a ManagedSecret renders a KMS value.
#[derive(Clone, Copy, Debug)]
enum Shape {
    Whole,
    Property,
    Extract,
}

struct Managed {
    name: &'static str,
    kms: &'static str,
    shape: Shape,
    /// Values put so far, oldest first (index = age order).
    versions: Vec<(String, Value)>,
    /// Index of the version the Secret was last seen holding.
    seen: usize,
}

impl Managed {
    fn render(&self, index: usize) -> BTreeMap<String, String> {
        let value = &self.versions[index].1;
        let text = |k: &str| value[k].as_str().expect("string").to_string();
        match self.shape {
            Shape::Whole => BTreeMap::from([("value".into(), value.to_string())]),
            Shape::Property => BTreeMap::from([("password".into(), text("pwd"))]),
            Shape::Extract => {
                BTreeMap::from([("pwd".into(), text("pwd")), ("user".into(), text("user"))])
            }
        }
    }

    fn spec(&self) -> Value {
        match self.shape {
            Shape::Whole => json!({}),
            Shape::Property => json!({"data": [{"key": "password", "property": "pwd"}]}),
            Shape::Extract => json!({"dataFrom": {"extract": true}}),
        }
    }
}

/// What one step does.
#[derive(Clone, Debug)]
enum Step {
    /// Faults on GetSecretValue; `expect` is the Ready reason every read must give (`None`: a
    /// partial rate or a harmless fault, either outcome is right).
    Fault {
        kind: &'static str,
        faults: FaultConfig,
        expect: Option<&'static str>,
    },
    /// A new version of one KMS secret becomes ACSCurrent (faults cleared).
    NewVersion(usize),
    /// Another field manager overwrites a managed key of one Secret (faults cleared).
    Conflict(usize),
}

impl Step {
    fn kind(&self) -> &'static str {
        match self {
            Step::Fault { kind, .. } => kind,
            Step::NewVersion(_) => "new version (PutSecretValue)",
            Step::Conflict(_) => "conflicting write (other field manager)",
        }
    }
}

fn error(code: &str, status: u16, rate: f64) -> FaultConfig {
    FaultConfig {
        errors: vec![ErrorRule {
            action: "GetSecretValue".into(),
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

fn random_step(rng: &mut impl Rng, secrets: usize) -> Step {
    let fault = |kind, faults, expect| Step::Fault {
        kind,
        faults,
        expect,
    };
    // The client retries InternalFailure, ServiceUnavailableTemporary, Rejected.Throttling and
    // transport errors (up to ~25 s): those come at a partial rate; the rest at 1.0.
    match rng.random_range(0..22) {
        0 => fault(
            "latency",
            FaultConfig {
                latency_ms: BTreeMap::from([("GetSecretValue".into(), rng.random_range(50..400))]),
                ..FaultConfig::default()
            },
            Some("Synced"),
        ),
        1 => fault(
            "connection reset (30%)",
            mutation(Mutation::ConnectionReset, None, 0.3),
            None,
        ),
        2 => fault(
            "5xx InternalFailure (30%, retried)",
            error("InternalFailure", 500, 0.3),
            None,
        ),
        3 => fault(
            "5xx InternalError",
            error("InternalError", 500, 1.0),
            Some("KmsUnavailable"),
        ),
        4 => fault(
            "503 ServiceUnavailable",
            error("ServiceUnavailable", 503, 1.0),
            Some("KmsUnavailable"),
        ),
        5 => fault(
            "429 Rejected.Throttling (30%, retried)",
            error("Rejected.Throttling", 429, 0.3),
            None,
        ),
        6 => fault(
            "429 Throttling.User",
            error("Throttling.User", 429, 1.0),
            Some("Throttled"),
        ),
        7 => fault(
            "403 access denied",
            error("Forbidden.NoPermission", 403, 1.0),
            Some("AccessDenied"),
        ),
        8 => fault(
            "expired STS token",
            error("InvalidSecurityToken.Expired", 400, 1.0),
            Some("InvalidCredentials"),
        ),
        9 => fault(
            "404 not found",
            error("Forbidden.ResourceNotFound", 404, 1.0),
            Some("SecretNotFound"),
        ),
        10 => fault(
            "malformed JSON",
            mutation(Mutation::MalformedJson, None, 1.0),
            Some("InvalidResponse"),
        ),
        11 => fault(
            "truncated JSON",
            mutation(Mutation::TruncatedJson, None, 1.0),
            Some("InvalidResponse"),
        ),
        12 => fault(
            "empty SecretData",
            mutation(Mutation::EmptySecretData, None, 1.0),
            Some("InvalidResponse"),
        ),
        13 => fault(
            "wrong SecretDataType",
            mutation(Mutation::WrongDataType, None, 1.0),
            Some("InvalidResponse"),
        ),
        14 => fault(
            "JSON key SecretData missing",
            mutation(Mutation::MissingKey, Some("SecretData"), 1.0),
            Some("InvalidResponse"),
        ),
        15 => fault(
            "JSON key VersionId missing",
            mutation(Mutation::MissingKey, Some("VersionId"), 1.0),
            Some("InvalidResponse"),
        ),
        16 => fault(
            "older VersionId returned",
            mutation(Mutation::OlderVersion, None, 1.0),
            Some("InvalidResponse"),
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
            None,
        ),
        18 => Step::Conflict(rng.random_range(0..secrets)),
        // 19..=21: new versions, the common case in life.
        _ => Step::NewVersion(rng.random_range(0..secrets)),
    }
}

fn random_value(rng: &mut impl Rng, n: usize) -> Value {
    let pwd: String = (0..16)
        .map(|_| char::from(b"abcdefghijkmnpqrstuvwxyz23456789"[rng.random_range(0..32)]))
        .collect();
    json!({"pwd": pwd, "user": format!("u{n}")})
}

struct Run {
    env: SyncEnv,
    managed: Vec<Managed>,
    steps: u64,
    violations: Vec<String>,
    by_kind: BTreeMap<&'static str, u64>,
}

impl Run {
    async fn start() -> Self {
        let env = SyncEnv::start_with_log_level("faults", "info").await;
        let mut managed = vec![
            Managed {
                name: "whole",
                kms: "f-whole",
                shape: Shape::Whole,
                versions: vec![],
                seen: 0,
            },
            Managed {
                name: "prop",
                kms: "f-prop",
                shape: Shape::Property,
                versions: vec![],
                seen: 0,
            },
            Managed {
                name: "extract",
                kms: "f-extract",
                shape: Shape::Extract,
                versions: vec![],
                seen: 0,
            },
        ];
        let mut rng = StdRng::seed_from_u64(0);
        for m in &mut managed {
            // Two versions, so ACSPrevious exists for `olderVersion`.
            for n in 0..2 {
                let value = random_value(&mut rng, n);
                let id = format!("v{n}");
                if n == 0 {
                    env.create_kms_secret(m.kms, &id, &value.to_string()).await;
                } else {
                    env.put_kms_value(m.kms, &id, &value.to_string(), None)
                        .await;
                }
                m.versions.push((id, value));
            }
            m.seen = 1;
            env.apply_managed_secret(m.name, m.kms, m.spec()).await;
        }
        let mut run = Self {
            env,
            managed,
            steps: 0,
            violations: vec![],
            by_kind: BTreeMap::new(),
        };
        let mut first = Vec::new();
        run.step_and_check(u64::MAX, "initial sync", Some("Synced"), &mut first)
            .await;
        assert!(first.is_empty(), "initial sync: {first:?}");
        run
    }

    /// One episode; violations are returned (each names the seed and step).
    async fn episode(&mut self, seed: u64) {
        let mut rng = StdRng::seed_from_u64(seed);
        let count = rng.random_range(1..=3);
        let mut problems = Vec::new();
        for _ in 0..count {
            let step = random_step(&mut rng, self.managed.len());
            *self.by_kind.entry(step.kind()).or_default() += 1;
            let expect = match &step {
                Step::Fault { faults, expect, .. } => {
                    self.env.emulator.set_faults(faults.clone());
                    *expect
                }
                Step::NewVersion(i) => {
                    self.env.emulator.set_faults(FaultConfig::default());
                    let m = &mut self.managed[*i];
                    let n = m.versions.len();
                    let value = random_value(&mut rng, n);
                    let id = format!("v{n}");
                    self.env
                        .put_kms_value(m.kms, &id, &value.to_string(), None)
                        .await;
                    m.versions.push((id, value));
                    Some("Synced")
                }
                Step::Conflict(i) => {
                    self.env.emulator.set_faults(FaultConfig::default());
                    self.intrude(*i).await;
                    Some("Synced")
                }
            };
            self.step_and_check(seed, step.kind(), expect, &mut problems)
                .await;
        }
        self.env.emulator.set_faults(FaultConfig::default());
        self.step_and_check(seed, "faults cleared", Some("Synced"), &mut problems)
            .await;
        self.violations.extend(problems);
    }

    /// Another field manager takes a managed key of Secret `i` with a wrong (but non-empty) value.
    async fn intrude(&self, i: usize) {
        let m = &self.managed[i];
        let key = m.render(m.seen).into_keys().next().expect("a key");
        let patch = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": m.name},
                           "stringData": {key: "written-by-someone-else"}});
        self.env
            .secrets()
            .patch(
                m.name,
                &PatchParams::apply("k8s-faults-intruder").force(),
                &Patch::Apply(&patch),
            )
            .await
            .expect("conflicting write");
    }

    /// Force-syncs every ManagedSecret, waits (bounded) until the operator acted on each, then
    /// checks the invariant.
    async fn step_and_check(
        &mut self,
        seed: u64,
        what: &str,
        expect: Option<&str>,
        problems: &mut Vec<String>,
    ) {
        self.steps += 1;
        let calls_before = self.env.calls("GetSecretValue");
        let mut asked = Vec::new();
        for m in &self.managed {
            asked.push(self.env.force_sync(m.name).await);
        }
        let deadline = Instant::now() + Duration::from_secs(40);
        let mut pending: Vec<usize> = (0..self.managed.len()).collect();
        while !pending.is_empty() && Instant::now() < deadline {
            let calls = self.env.calls("GetSecretValue");
            let mut still = Vec::new();
            for i in pending {
                let ms = self
                    .env
                    .managed_secrets()
                    .get(self.managed[i].name)
                    .await
                    .expect("get ManagedSecret");
                let status = ms.status.unwrap_or_default();
                let acked = status.last_force_sync.as_deref() == Some(asked[i].as_str());
                // A failed sync does not record the force-sync value: a fresh read and the
                // expected failure reason stand for "acted".
                let failed = calls > calls_before
                    && status.conditions.iter().any(|c| {
                        c.type_ == "Ready"
                            && c.status == "False"
                            && expect.is_none_or(|want| want == c.reason)
                    });
                if !(acked || failed) {
                    still.push(i);
                }
            }
            pending = still;
            if !pending.is_empty() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        for i in pending {
            problems.push(format!(
                "seed {seed}, step `{what}`: {} did not act on the forced sync within 40s",
                self.managed[i].name
            ));
        }
        for i in 0..self.managed.len() {
            if let Err(problem) = self.check(i, expect).await {
                problems.push(format!(
                    "seed {seed}, step `{what}`, {}: {problem}",
                    self.managed[i].name
                ));
            }
        }
    }

    async fn check(&mut self, i: usize, expect: Option<&str>) -> Result<(), String> {
        let secret: Option<Secret> = self
            .env
            .secrets()
            .get_opt(self.managed[i].name)
            .await
            .expect("get Secret");
        let m = &self.managed[i];
        let secret = secret.ok_or("the Secret is gone")?;
        let data: BTreeMap<String, String> = secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
            .collect();
        let latest = m.versions.len() - 1;
        let held = (0..m.versions.len()).rev().find(|&v| {
            m.render(v)
                .iter()
                .all(|(k, want)| data.get(k) == Some(want))
        });
        let ready = self.env.ready(m.name).await;
        let Some(held) = held else {
            let empty: Vec<_> = data.iter().filter(|(_, v)| v.is_empty()).collect();
            return Err(format!(
                "data is no rendering of any KMS version (empty keys: {empty:?}; keys: {:?}; ready: {ready:?})",
                data.keys().collect::<Vec<_>>()
            ));
        };
        if held < m.seen {
            return Err(format!(
                "rolled back from {} to {} (ready: {ready:?})",
                m.versions[m.seen].0, m.versions[held].0
            ));
        }
        self.managed[i].seen = held;
        let m = &self.managed[i];
        let (status, reason) = ready.clone().unwrap_or_default();
        if status == "False" && !KNOWN_REASONS.contains(&reason.as_str()) {
            return Err(format!("Ready=False with an undocumented reason {reason}"));
        }
        match expect {
            Some("Synced")
                if held != latest || (status.as_str(), reason.as_str()) != ("True", "Synced") =>
            {
                Err(format!(
                    "expected version {} and Ready=True/Synced, found {} and {ready:?}",
                    m.versions[latest].0, m.versions[held].0
                ))
            }
            Some(want)
                if want != "Synced" && (status.as_str(), reason.as_str()) != ("False", want) =>
            {
                Err(format!("expected Ready=False/{want}, found {ready:?}"))
            }
            _ => Ok(()),
        }
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, got {v:?}"))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn randomized_fault_episodes_keep_secrets_complete_and_monotonic() {
    let started = Instant::now();
    let seeds: Vec<u64> = match env_u64("KMSYNC_FAULT_SEED") {
        Some(seed) => vec![seed],
        None => {
            let base: u64 = rand::rng().random_range(0..1 << 40);
            let count = env_u64("KMSYNC_FAULT_EPISODES").unwrap_or(100);
            println!("fault episodes: base seed {base}, {count} episodes");
            (0..count).map(|n| base + n).collect()
        }
    };
    let mut run = Run::start().await;
    let mut episodes = 0;
    for &seed in &seeds {
        episodes += 1;
        run.episode(seed).await;
        // Stop early once something is wrong: later steps would only repeat it.
        if run.violations.len() >= 5 {
            break;
        }
    }
    let elapsed = started.elapsed();
    let mut table = String::from("\n| measure | value |\n| --- | --- |\n");
    table += &format!("| episodes run | {episodes} of {} |\n", seeds.len());
    table += &format!("| steps (force-sync rounds) | {} |\n", run.steps);
    table += &format!("| invariant violations | {} |\n", run.violations.len());
    for (kind, n) in &run.by_kind {
        table += &format!("| fault: {kind} | {n} |\n");
    }
    table += &format!("| time | {:.1} s |\n", elapsed.as_secs_f64());
    println!("{table}");
    if !run.violations.is_empty() {
        let logs = run.env.operator().logs();
        let tail: Vec<_> = logs.lines().rev().take(40).collect::<Vec<_>>();
        panic!(
            "{} invariant violation(s); replay one with KMSYNC_FAULT_SEED=<seed>:\n{}\n\noperator log tail:\n{}",
            run.violations.len(),
            run.violations.join("\n"),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
}
