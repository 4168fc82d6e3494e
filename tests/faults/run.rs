//! One run of episodes: the environment (two stores, five ManagedSecrets, the operator with a
//! short KMS timeout, the monitor), the steps, and the invariant checks after each step.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use kmsync::emulator::FaultConfig;
use kube::ResourceExt;
use kube::api::{Patch, PatchParams};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use super::control_plane::{restart_apiserver, state_dir};
use super::invariants::{ready_of, rotation_condition};
use super::model::{INTRUDER_VALUE, Managed, Shape, Store, random_value};
use super::monitor::Monitor;
use super::steps::{Expect, KMS_TIMEOUT_SECS, Step, random_step};
use crate::support::sync::{Operator, SyncEnv};

/// Every this many seeds, an episode also restarts the apiserver (2 or 3 in a 100-episode run,
/// alternately with SIGTERM and SIGKILL; decided by the seed, so a replay does the same).
pub const RESTART_EVERY: u64 = 40;
/// How long the operator may take to act on a forced sync, and to settle a rotation.
const ACT_WITHIN: Duration = Duration::from_secs(40);
const SETTLE_WITHIN: Duration = Duration::from_secs(30);

/// What a check round expects.
pub(super) struct Round<'a> {
    pub(super) what: &'a str,
    /// No fault in force: in-flight work must finish.
    pub(super) clean: bool,
    /// The failure must be the client's timeout.
    pub(super) timed_out: bool,
    expect: [Expect; 2],
}

impl Round<'_> {
    fn clean(what: &str) -> Round<'_> {
        Round {
            what,
            clean: true,
            timed_out: false,
            expect: [Expect::Synced; 2],
        }
    }

    fn of(step: &Step) -> Round<'static> {
        Round {
            what: step.kind(),
            clean: step.clean(),
            timed_out: step.timed_out(),
            expect: [step.expect(Store::Static), step.expect(Store::Sts)],
        }
    }

    pub(super) fn expect(&self, store: Store) -> Expect {
        self.expect[usize::from(store == Store::Sts)]
    }
}

pub struct Run {
    pub env: SyncEnv,
    pub managed: Vec<Managed>,
    pub(super) monitor: Monitor,
    pub steps: u64,
    pub violations: Vec<String>,
    pub by_kind: BTreeMap<&'static str, u64>,
    /// Time spent in steps of each kind (the step and its check).
    pub time_by_kind: BTreeMap<&'static str, Duration>,
    /// How long each apiserver restart took until our client got answers again.
    pub restart_times: Vec<Duration>,
    pub restarts: u64,
    pub triggers: u64,
    /// The control plane's state dir (restarts need it); `None` outside scripts/controlplane.sh.
    control_plane: Option<PathBuf>,
}

impl Run {
    pub async fn start() -> Self {
        let mut env = SyncEnv::without_operator("faults").await;
        // The same AccessKey, exchanged for temporary credentials through the emulator's STS.
        env.apply(json!({"apiVersion": "kmsync.io/v1alpha1", "kind": "SecretStore", "metadata": {"name": "kms-sts"},
            "spec": {"regionId": "cn-hangzhou", "endpoint": env.emulator.base_url(),
                     "auth": {"accessKey": {"secretRef": {"name": "kms-credentials"}},
                              "assumeRole": {"roleArn": "acs:ram::1234567890123456:role/kmsync-faults",
                                             "sessionName": "kmsync-faults"}}}}))
            .await;
        let mut managed = vec![
            Managed::new("whole", "f-whole", Shape::Whole, Store::Static),
            Managed::new("prop", "f-prop", Shape::Property, Store::Static),
            Managed::new("extract", "f-extract", Shape::Extract, Store::Sts),
            Managed::new("rot-a", "f-rot-a", Shape::Pair, Store::Static),
            Managed::new("rot-b", "f-rot-b", Shape::Pair, Store::Sts),
        ];
        let monitor = Monitor::start(
            &env.client,
            &env.namespace,
            managed.iter().map(|m| m.name.to_string()).collect(),
            managed
                .iter()
                .filter(|m| m.rotating())
                .map(|m| m.name.to_string())
                .collect(),
        );
        let mut rng = StdRng::seed_from_u64(0);
        for m in &mut managed {
            // Two versions, so ACSPrevious exists for `olderVersion`.
            env.create_kms_secret(m.kms, "v0", &random_value(&mut rng, 0))
                .await;
            env.put_kms_value(m.kms, "v1", &random_value(&mut rng, 1), None)
                .await;
            m.learn(&env.emulator);
            m.seen = 1;
            env.apply_managed_secret(m.name, m.kms, m.spec()).await;
            if let Some(rotation) = &mut m.rotation {
                let ms = env.managed_secrets().get(m.name).await.expect("get");
                rotation.uid = ms.uid().expect("uid");
            }
        }
        let timeout = KMS_TIMEOUT_SECS.to_string();
        // KMSYNC_FAULT_LOG (a RUST_LOG filter) makes the operator more verbose for a replay.
        let log = std::env::var("KMSYNC_FAULT_LOG").unwrap_or_else(|_| "info".into());
        env.operator = Some(Operator::start_with(
            &env.namespace,
            &log,
            &["--kms-timeout-secs", &timeout],
        ));
        let control_plane = state_dir();
        let mut run = Self {
            env,
            managed,
            monitor,
            steps: 0,
            violations: vec![],
            by_kind: BTreeMap::new(),
            time_by_kind: BTreeMap::new(),
            restart_times: vec![],
            restarts: 0,
            triggers: 0,
            control_plane,
        };
        let mut first = Vec::new();
        run.step_and_check(u64::MAX, &Round::clean("initial sync"), &mut first)
            .await;
        assert!(first.is_empty(), "initial sync: {first:?}");
        run
    }

    /// One episode; violations name the seed and step.
    pub async fn episode(&mut self, seed: u64) {
        let mut rng = StdRng::seed_from_u64(seed);
        let plain: Vec<usize> = (0..self.managed.len())
            .filter(|&i| !self.managed[i].rotating())
            .collect();
        let rotating: Vec<usize> = (0..self.managed.len())
            .filter(|&i| self.managed[i].rotating())
            .collect();
        let count = rng.random_range(1..=3);
        let mut steps: Vec<Step> = (0..count)
            .map(|_| random_step(&mut rng, &plain, self.managed.len()))
            .collect();
        if seed.is_multiple_of(RESTART_EVERY) {
            let at = rng.random_range(0..=steps.len());
            let kill = (seed / RESTART_EVERY) % 2 == 1;
            steps.insert(at, Step::RestartApiserver { kill });
        }
        let mut problems = Vec::new();
        for step in &steps {
            let began = Instant::now();
            *self.by_kind.entry(step.kind()).or_default() += 1;
            self.env.emulator.set_faults(step.faults());
            // Rotations run under the step's faults; steps aimed at rotation always start one.
            let p = if step.targets_rotation() { 1.0 } else { 0.3 };
            if rng.random_bool(p) {
                let i = rotating[rng.random_range(0..rotating.len())];
                self.trigger_rotation(i).await;
            }
            match step {
                Step::NewVersion(i) => self.new_version(*i, &mut rng).await,
                Step::Conflict(i) => self.intrude(*i).await,
                Step::ExpireSts { .. } => {
                    // None may be valid right now (a refresh failed in the last step).
                    self.env.emulator.expire_issued_credentials();
                }
                Step::RestartApiserver { kill } => {
                    if !self.apiserver_restart_step(*kill, &plain, &mut rng).await {
                        *self
                            .by_kind
                            .entry("apiserver restart skipped (no control plane state)")
                            .or_default() += 1;
                    }
                }
                Step::Fault { .. } => {}
            }
            self.step_and_check(seed, &Round::of(step), &mut problems)
                .await;
            *self.time_by_kind.entry(step.kind()).or_default() += began.elapsed();
        }
        let began = Instant::now();
        self.env.emulator.set_faults(FaultConfig::default());
        self.step_and_check(seed, &Round::clean("faults cleared"), &mut problems)
            .await;
        *self.time_by_kind.entry("faults cleared").or_default() += began.elapsed();
        self.violations.extend(problems);
    }

    async fn new_version(&mut self, i: usize, rng: &mut StdRng) {
        let m = &self.managed[i];
        let n = m.known.len();
        let value = random_value(rng, n);
        self.env
            .put_kms_value(m.kms, &format!("v{n}"), &value, None)
            .await;
    }

    /// A new `kmsync.io/rotate` value on ManagedSecret `i`.
    async fn trigger_rotation(&mut self, i: usize) {
        self.triggers += 1;
        let value = format!("t{}", self.triggers);
        let m = &mut self.managed[i];
        let patch = json!({"metadata": {"annotations": {"kmsync.io/rotate": value}}});
        self.env
            .managed_secrets()
            .patch(m.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("annotate rotate");
        let rotation = m.rotation.as_mut().expect("a rotating ManagedSecret");
        rotation.issued = Some(value);
        rotation.triggers += 1;
        rotation.fresh_trigger = true;
    }

    /// Another field manager takes a managed key of Secret `i` with a wrong (but non-empty) value.
    async fn intrude(&self, i: usize) {
        let m = &self.managed[i];
        let key = m
            .render(&m.known[m.seen].1)
            .and_then(|data| data.into_keys().next())
            .expect("a key");
        let patch = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": m.name},
                           "stringData": {key: INTRUDER_VALUE}});
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

    /// Queues work (a new KMS version, forced syncs), then restarts the apiserver under the
    /// operator with `scripts/controlplane.sh restart-apiserver`, and waits until it answers.
    /// False when there is no control plane of ours to restart.
    async fn apiserver_restart_step(
        &mut self,
        kill: bool,
        plain: &[usize],
        rng: &mut StdRng,
    ) -> bool {
        let Some(state) = self.control_plane.clone() else {
            return false;
        };
        let i = plain[rng.random_range(0..plain.len())];
        self.new_version(i, rng).await;
        for m in &self.managed {
            self.env.force_sync(m.name).await;
        }
        let took = restart_apiserver(state, kill, &self.env.client).await;
        // CRD-served resources may lag the core API after a start: wait for ours as well.
        let deadline = Instant::now() + Duration::from_secs(60);
        while self
            .env
            .managed_secrets()
            .get(self.managed[0].name)
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "ManagedSecrets not served within 60 s of the restart"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.restarts += 1;
        self.restart_times.push(took);
        true
    }

    /// Force-syncs every ManagedSecret, waits (bounded) until the operator acted on each, lets
    /// rotations settle after a clean step, then checks the invariants on every state the
    /// monitor saw and on the state found now.
    async fn step_and_check(&mut self, seed: u64, round: &Round<'_>, problems: &mut Vec<String>) {
        self.steps += 1;
        let what = round.what;
        let asked_kms_before: Vec<u64> =
            (0..self.managed.len()).map(|i| self.asked_kms(i)).collect();
        let mut asked = Vec::new();
        for m in &self.managed {
            asked.push(self.env.force_sync(m.name).await);
        }
        let deadline = Instant::now() + ACT_WITHIN;
        let mut pending: Vec<usize> = (0..self.managed.len()).collect();
        while !pending.is_empty() && Instant::now() < deadline {
            let mut still = Vec::new();
            for i in pending {
                let m = &self.managed[i];
                let ms = self
                    .env
                    .managed_secrets()
                    .get(m.name)
                    .await
                    .expect("get ManagedSecret");
                let acked = ms
                    .status
                    .as_ref()
                    .and_then(|s| s.last_force_sync.as_deref())
                    == Some(asked[i].as_str());
                // A failed sync does not record the force-sync value: a KMS request for this
                // object's secret since the forced sync, and the expected failure reason stand
                // for "acted".
                // (A timeout must be the cause: the same reason may still stand from the last
                // step while the slow request is on its way.)
                let failed = self.asked_kms(i) > asked_kms_before[i]
                    && ready_of(&ms).is_some_and(|(status, reason, message)| {
                        status == "False"
                            && round.expect(m.store).allows_failure(&reason)
                            && (!round.timed_out || message.contains("timed out"))
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
                "seed {seed}, step `{what}`: {} did not act on the forced sync within {}s",
                self.managed[i].name,
                ACT_WITHIN.as_secs()
            ));
        }
        if round.clean {
            for i in 0..self.managed.len() {
                if let Err(problem) = self.settle(i).await {
                    problems.push(format!(
                        "seed {seed}, step `{what}`, {}: {problem}",
                        self.managed[i].name
                    ));
                }
            }
        }
        for m in &mut self.managed {
            m.learn(&self.env.emulator);
        }
        for seen in self.monitor.drain() {
            if let Err((name, problem)) = self.observe(seen) {
                problems.push(format!(
                    "seed {seed}, step `{what}`, {name} (as it was written): {problem}"
                ));
            }
        }
        for i in 0..self.managed.len() {
            if let Err(problem) = self.check(i, round).await {
                problems.push(format!(
                    "seed {seed}, step `{what}`, {}: {problem}",
                    self.managed[i].name
                ));
            }
        }
    }

    /// Checks what the monitor saw since the last step (the writes after the last check).
    pub fn drain_monitor(&mut self) {
        for m in &mut self.managed {
            m.learn(&self.env.emulator);
        }
        for seen in self.monitor.drain() {
            if let Err((name, problem)) = self.observe(seen) {
                self.violations
                    .push(format!("end of run, {name} (as it was written): {problem}"));
            }
        }
    }

    /// KMS requests made on behalf of ManagedSecret `i` so far: its secret's reads (and the
    /// rotation's calls), and for the STS store the AssumeRole calls (a refresh that fails comes
    /// before any read).
    fn asked_kms(&self, i: usize) -> u64 {
        let m = &self.managed[i];
        let emulator = &self.env.emulator;
        let mut asked = ["GetSecretValue", "ListSecretVersionIds"]
            .iter()
            .map(|action| emulator.received(m.kms, action))
            .sum();
        if m.store == Store::Sts {
            asked += emulator.received("-", "AssumeRole");
        }
        asked
    }

    /// After a clean step a rotating ManagedSecret must come to rest (bounded): nothing in
    /// flight, the last trigger taken, Ready on what KMS calls current.
    async fn settle(&self, i: usize) -> Result<(), String> {
        let m = &self.managed[i];
        let Some(rotation) = &m.rotation else {
            return Ok(());
        };
        let deadline = Instant::now() + SETTLE_WITHIN;
        loop {
            let ms = self
                .env
                .managed_secrets()
                .get(m.name)
                .await
                .expect("get ManagedSecret");
            let status = ms.status.clone().unwrap_or_default();
            let progress = status.rotation.clone().unwrap_or_default();
            let current = self.current_id(m);
            let at_rest = progress.pending_version_id.is_none()
                && (rotation.issued.is_none() || progress.last_trigger == rotation.issued)
                && ready_of(&ms).is_some_and(|(s, r, _)| s == "True" && r == "Synced")
                && status.source.and_then(|s| s.version_id) == current;
            if at_rest {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "no rest {}s after a clean step: pending {:?}, trigger {:?} (asked {:?}), ready {:?}, rotation {:?}, KMS current {current:?}",
                    SETTLE_WITHIN.as_secs(),
                    progress.pending_version_id,
                    progress.last_trigger,
                    rotation.issued,
                    ready_of(&ms),
                    rotation_condition(&ms)
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The id of the version KMS calls current.
    pub(super) fn current_id(&self, m: &Managed) -> Option<String> {
        self.env
            .emulator
            .versions(m.kms)?
            .into_iter()
            .find(|v| v.stages.iter().any(|s| s == "ACSCurrent"))
            .map(|v| v.id)
    }
}
