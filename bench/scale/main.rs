//! The scale benchmark (`make bench`, `make bench-smoke`): the release operator against the local
//! control plane and the KMS emulator (per-call latency and the shared-gateway QPS limits on).
//!
//! For each size N it measures a cold start (N ManagedSecrets, each with its own 1 KiB JSON KMS
//! secret: time until all are Ready, peak RSS, CPU seconds, KMS calls by action, Kubernetes
//! writes), change propagation (PutSecretValue → new Secret data, by force-sync and by periodic
//! refresh), and the steady state (KMS calls per object per interval, Kubernetes writes, peak
//! against average request rate). Once it adds large Secrets kmsync does not manage (the
//! operator's RSS must not follow them) and once it runs M readers of one KMS secret (one read per
//! interval). It writes `bench/results/<timestamp>.{json,md}` and `bench/results/latest.md`.
//!
//! Run through `scripts/controlplane.sh run cargo bench --bench scale -- [flags]` (KUBECONFIG
//! must point at the local control plane). Every wait is bounded in count and time; a phase that
//! runs out of time is recorded as such, never fatal: the run fails only when the harness breaks
//! (a process dies, the apiserver refuses a request, results cannot be written).

mod probe;
mod procs;
mod report;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kmsync::crd::ManagedSecret;
use kmsync::kms::actions::{CreateSecretRequest, PutSecretValueRequest};
use kmsync::kms::credentials::StaticProvider;
use kmsync::kms::{Credentials, Endpoint, KmsClient, KmsClientConfig, SecretString};
use kube::Client;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use serde::Serialize;
use serde_json::{Value, json};

use probe::{
    ChangeTracker, ReadyTracker, apiserver_writes, delta, is_operator_resource, wait_until,
};
use procs::{EmulatorProc, OperatorProc, action_calls};

pub type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const ACCESS_KEY_ID: &str = "kmsync-bench";
const ACCESS_KEY_SECRET: &str = "kmsync-bench-secret-5c1e";
/// Size of each KMS secret value (JSON).
const VALUE_BYTES: usize = 1024;

/// Flags (`cargo bench --bench scale -- --help`).
#[derive(Debug, Clone, Parser, Serialize)]
#[command(name = "scale", about = "kmsync scale benchmark")]
#[serde(rename_all = "camelCase")]
pub struct Args {
    /// Small and quick (N = 20, 10 s refresh, short phases); results go under the target
    /// directory, not bench/results. Every phase still runs.
    #[arg(long)]
    pub smoke: bool,
    /// ManagedSecret counts, one cold start each.
    #[arg(long, value_delimiter = ',', default_value = "100,1000,5000")]
    pub sizes: Vec<usize>,
    /// refreshInterval of the ManagedSecrets, in seconds (the operator's minimum is 10).
    #[arg(long, default_value_t = 60)]
    pub refresh_secs: u64,
    /// Steady-state observation, in refresh intervals.
    #[arg(long, default_value_t = 3)]
    pub steady_intervals: u64,
    /// Peak-rate windows (seconds) compared with the steady-state average.
    #[arg(long, value_delimiter = ',', default_value = "60,10")]
    pub rate_windows_secs: Vec<u64>,
    /// Latency the emulator adds to every KMS call, in milliseconds.
    #[arg(long, default_value_t = 20)]
    pub kms_latency_ms: u64,
    /// The operator's --concurrency.
    #[arg(long, default_value_t = 8)]
    pub concurrency: u16,
    /// Secrets changed per propagation measurement (periodic and force-sync each).
    #[arg(long, default_value_t = 20)]
    pub propagation_samples: usize,
    /// Secrets kmsync does not manage, added once (0: skip).
    #[arg(long, default_value_t = 2000)]
    pub unrelated_count: usize,
    /// Size of each unmanaged Secret, in KiB.
    #[arg(long, default_value_t = 512)]
    pub unrelated_kib: usize,
    /// The size whose run gets the unmanaged Secrets (default: the largest).
    #[arg(long)]
    pub unrelated_at: Option<usize>,
    /// ManagedSecrets reading one KMS secret in the coalescing run (0: skip).
    #[arg(long, default_value_t = 100)]
    pub coalesce_readers: usize,
    /// refreshInterval of the coalescing run, in seconds.
    #[arg(long, default_value_t = 20)]
    pub coalesce_refresh_secs: u64,
    /// Coalescing observation, in refresh intervals.
    #[arg(long, default_value_t = 4)]
    pub coalesce_intervals: u64,
    /// Concurrent create requests while setting up (KMS secrets, ManagedSecrets).
    #[arg(long, default_value_t = 16)]
    pub create_concurrency: usize,
    /// Limit for all ManagedSecrets to be Ready (default 120 s + 60 ms per object).
    #[arg(long)]
    pub ready_timeout_secs: Option<u64>,
    /// Where results go (default bench/results, or <target>/bench-smoke with --smoke).
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// The kmsync binary (default: the one cargo built for this benchmark, release profile).
    #[arg(long)]
    pub kmsync_bin: Option<PathBuf>,
    /// Passed by `cargo bench`; without it (`cargo test --benches`) nothing runs.
    #[arg(long, hide = true)]
    #[serde(skip)]
    pub bench: bool,
}

impl Args {
    fn resolved(mut self) -> Self {
        if self.smoke {
            self.sizes = vec![20];
            self.refresh_secs = 10;
            self.steady_intervals = 2;
            self.rate_windows_secs = vec![10, 5];
            self.propagation_samples = 5;
            self.unrelated_count = 20;
            self.coalesce_readers = 5;
            self.coalesce_refresh_secs = 10;
            self.coalesce_intervals = 2;
        }
        self.sizes.retain(|n| *n > 0);
        self.refresh_secs = self.refresh_secs.max(10);
        self.coalesce_refresh_secs = self.coalesce_refresh_secs.max(10);
        self.steady_intervals = self.steady_intervals.clamp(1, 100);
        self.coalesce_intervals = self.coalesce_intervals.clamp(1, 100);
        self.create_concurrency = self.create_concurrency.clamp(1, 64);
        self.rate_windows_secs.retain(|w| *w > 0);
        if self.unrelated_at.is_none() {
            self.unrelated_at = self.sizes.iter().copied().max();
        }
        let target = target_dir();
        self.out_dir.get_or_insert_with(|| {
            if self.smoke {
                target.join("bench-smoke")
            } else {
                Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/results")
            }
        });
        self.kmsync_bin
            .get_or_insert_with(|| PathBuf::from(env!("CARGO_BIN_EXE_kmsync")));
        self
    }

    fn ready_timeout(&self, n: usize) -> Duration {
        Duration::from_secs(
            self.ready_timeout_secs
                .unwrap_or(120 + (n as u64 * 60).div_ceil(1000)),
        )
    }
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

fn log(message: impl AsRef<str>) {
    let t = START.get_or_init(Instant::now).elapsed().as_secs_f64();
    eprintln!("[bench {t:>7.1}s] {}", message.as_ref());
}

// ---------------------------------------------------------------------------------------------
// Results

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SizeResult {
    pub managed_secrets: usize,
    pub namespace: String,
    pub setup_kms_secrets_seconds: f64,
    pub setup_managed_secrets_seconds: f64,
    pub cold: Cold,
    pub force_sync: Latencies,
    pub steady: Steady,
    pub periodic: Latencies,
    pub unrelated: Option<Unrelated>,
}

/// KMS calls: action → outcome → count.
pub type Calls = BTreeMap<String, BTreeMap<String, u64>>;

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Cold {
    pub complete: bool,
    pub ready: usize,
    pub not_ready: BTreeMap<String, usize>,
    pub seconds_to_first_ready: Option<f64>,
    pub seconds_to_all_ready: Option<f64>,
    pub timeout_seconds: u64,
    pub peak_rss_mib: f64,
    pub rss_mib: f64,
    pub cpu_seconds: f64,
    pub kms_calls: Calls,
    pub kms_calls_total: u64,
    pub kubernetes_writes: BTreeMap<String, u64>,
    pub kubernetes_writes_total: u64,
    /// Writes by others during the phase (the apiserver's own leases).
    pub other_writes: BTreeMap<String, u64>,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Steady {
    pub seconds: f64,
    pub intervals: f64,
    pub kms_calls: Calls,
    pub kms_calls_total: u64,
    pub get_secret_value: u64,
    pub reads_per_secret_per_interval: f64,
    pub kms_calls_per_object_per_interval: f64,
    pub kubernetes_writes: BTreeMap<String, u64>,
    pub kubernetes_writes_total: u64,
    pub other_writes: BTreeMap<String, u64>,
    pub average_kms_calls_per_second: f64,
    /// Window (seconds) → highest rate in any window of that length / average rate.
    pub peak_to_average: BTreeMap<u64, f64>,
    pub cpu_seconds: f64,
    pub cpu_seconds_per_interval: f64,
    pub rss_mib: f64,
    pub peak_rss_mib: f64,
    /// (seconds since start, KMS calls so far), one a second.
    pub samples: Vec<(f64, u64)>,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Latencies {
    pub samples: usize,
    pub observed: usize,
    pub timed_out: usize,
    pub limit_seconds: f64,
    pub p50_seconds: Option<f64>,
    pub p99_seconds: Option<f64>,
    pub max_seconds: Option<f64>,
    pub seconds: Vec<f64>,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Unrelated {
    pub requested: usize,
    pub kib_each: usize,
    pub created: usize,
    pub errors: usize,
    pub first_error: Option<String>,
    pub create_seconds: f64,
    pub data_mib: f64,
    pub rss_before_mib: f64,
    pub rss_after_mib: f64,
    pub rss_delta_mib: f64,
    pub peak_rss_before_mib: f64,
    pub peak_rss_after_mib: f64,
    pub cpu_seconds: f64,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Coalescing {
    pub readers: usize,
    pub refresh_seconds: u64,
    pub ready: usize,
    pub seconds_to_all_ready: Option<f64>,
    pub cold_get_secret_value: u64,
    pub seconds: f64,
    pub intervals: f64,
    pub get_secret_value: u64,
    pub reads_per_interval: f64,
    pub kubernetes_writes_total: u64,
    pub peak_rss_mib: f64,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub memory_mib: u64,
    pub kernel: String,
    pub os: String,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Versions {
    pub kmsync: String,
    pub git_rev: String,
    pub git_dirty: bool,
    pub kubernetes: String,
    pub etcd: String,
    pub rustc: String,
    pub operator_binary: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub schema: u32,
    pub mode: String,
    pub started_at: String,
    pub finished_at: String,
    pub seconds: f64,
    pub machine: Machine,
    pub versions: Versions,
    pub parameters: Args,
    pub sizes: Vec<SizeResult>,
    pub coalescing: Option<Coalescing>,
}

// ---------------------------------------------------------------------------------------------
// Harness

struct Bench {
    args: Args,
    client: Client,
    kms: KmsClient,
    emulator: EmulatorProc,
    bin: PathBuf,
    work: PathBuf,
    ticks: f64,
}

/// A 1 KiB JSON value for secret `i`, and its password (what lands in the Secret).
fn secret_value(i: usize, tag: &str) -> (String, String) {
    let head = format!(r#"{{"username":"svc-{i:05}","password":""#);
    let tail = r#""}"#;
    let prefix = format!("{tag}-{i:05}-");
    let alphabet = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let pad = VALUE_BYTES.saturating_sub(head.len() + tail.len() + prefix.len());
    let mut password = prefix;
    let mut x = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    for _ in 0..pad {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        password.push(alphabet[(x % alphabet.len() as u64) as usize] as char);
    }
    (format!("{head}{password}{tail}"), password)
}

/// Retries `f` up to three times, a second apart.
async fn retry<T, F, Fut, E>(what: &str, mut f: F) -> Res<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    let mut last = String::new();
    for attempt in 0..3 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) => last = e.to_string(),
        }
    }
    Err(format!("{what}: {last}").into())
}

fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// Highest rate over any window of `window` seconds between samples, divided by the average.
fn peak_to_average(samples: &[(f64, u64)], window: f64) -> Option<f64> {
    let &(t_end, c_end) = samples.last()?;
    if t_end < window || c_end == 0 {
        return None;
    }
    let average = c_end as f64 / t_end;
    let mut peak: f64 = 0.0;
    let mut j = 0;
    for (i, &(ti, ci)) in samples.iter().enumerate() {
        j = j.max(i + 1);
        while j < samples.len() && samples[j].0 - ti < window - 0.05 {
            j += 1;
        }
        let Some(&(tj, cj)) = samples.get(j) else {
            break;
        };
        peak = peak.max((cj - ci) as f64 / (tj - ti));
    }
    Some(peak / average)
}

fn calls_map(calls: &Value) -> Calls {
    serde_json::from_value(calls["calls"].clone()).unwrap_or_default()
}

fn split_writes(all: BTreeMap<String, u64>) -> (BTreeMap<String, u64>, BTreeMap<String, u64>) {
    all.into_iter().partition(|(r, _)| is_operator_resource(r))
}

impl Bench {
    fn faults_on(&self) -> Value {
        json!({"latencyMs": {"*": self.args.kms_latency_ms}, "throttling": {"enabled": true}})
    }

    async fn create_namespace(&self, prefix: &str) -> Res<String> {
        let name = format!(
            "{prefix}-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..6]
        );
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        Api::<Namespace>::all(self.client.clone())
            .create(&PostParams::default(), &namespace)
            .await?;
        Ok(name)
    }

    /// The credentials Secret and SecretStore `kms` (pointing at the emulator) in `namespace`.
    async fn store(&self, namespace: &str) -> Res<()> {
        let params = PatchParams::apply("kmsync-bench").force();
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let credentials = json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "kms-credentials"},
            "stringData": {"AccessKeyId": ACCESS_KEY_ID, "AccessKeySecret": ACCESS_KEY_SECRET}});
        secrets
            .patch("kms-credentials", &params, &Patch::Apply(&credentials))
            .await?;
        let store = json!({"apiVersion": "kmsync.io/v1alpha1", "kind": "SecretStore",
            "metadata": {"name": "kms"},
            "spec": {"regionId": "cn-hangzhou", "endpoint": self.emulator.base_url,
                     "auth": {"accessKey": {"secretRef": {"name": "kms-credentials"}}}}});
        let stores: Api<kmsync::crd::SecretStore> = Api::namespaced(self.client.clone(), namespace);
        stores.patch("kms", &params, &Patch::Apply(&store)).await?;
        Ok(())
    }

    /// Creates the KMS secrets with throttling and latency off (setup is not what is measured),
    /// then switches them on. Returns the seconds it took.
    async fn create_kms_secrets(&self, names: &[(usize, String)]) -> Res<f64> {
        self.emulator.set_faults(&json!({})).await?;
        let started = Instant::now();
        futures::stream::iter(names)
            .map(|(i, name)| async move {
                let request = CreateSecretRequest {
                    secret_name: name.clone(),
                    version_id: "v1".into(),
                    secret_data: SecretString::new(secret_value(*i, "v1").0),
                    ..CreateSecretRequest::default()
                };
                retry(&format!("CreateSecret {name}"), || {
                    self.kms.create_secret(&request)
                })
                .await
                .map(|_| ())
            })
            .buffer_unordered(self.args.create_concurrency)
            .try_collect::<Vec<()>>()
            .await?;
        let seconds = started.elapsed().as_secs_f64();
        self.emulator.set_faults(&self.faults_on()).await?;
        Ok(seconds)
    }

    /// Creates ManagedSecrets `(name, kms secret)` reading two JSON properties each.
    async fn create_managed_secrets(
        &self,
        namespace: &str,
        items: &[(String, String)],
        refresh_secs: u64,
    ) -> Res<f64> {
        let api: Api<ManagedSecret> = Api::namespaced(self.client.clone(), namespace);
        let started = Instant::now();
        futures::stream::iter(items)
            .map(|(name, secret)| {
                let api = api.clone();
                async move {
                    let ms: ManagedSecret = serde_json::from_value(json!({
                        "apiVersion": "kmsync.io/v1alpha1", "kind": "ManagedSecret",
                        "metadata": {"name": name},
                        "spec": {"storeRef": {"name": "kms"}, "secretName": secret,
                                 "refreshInterval": format!("{refresh_secs}s"),
                                 "data": [{"key": "username", "property": "username"},
                                          {"key": "password", "property": "password"}]}}))?;
                    let params = PostParams::default();
                    retry(&format!("create ManagedSecret {name}"), || {
                        api.create(&params, &ms)
                    })
                    .await
                    .map(|_| ())
                }
            })
            .buffer_unordered(self.args.create_concurrency)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(started.elapsed().as_secs_f64())
    }

    /// Sleeps `duration` in one-second steps, failing if the operator exits.
    async fn hold(&self, operator: &mut OperatorProc, duration: Duration) -> Res<()> {
        let until = Instant::now() + duration;
        for _ in 0..=duration.as_secs() + 1 {
            operator.proc.check_alive()?;
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            tokio::time::sleep(left.min(Duration::from_secs(1))).await;
        }
        Ok(())
    }

    /// Waits (bounded) until `n` ManagedSecrets are Ready; `(first, all)` in seconds from start.
    async fn wait_ready(
        &self,
        operator: &mut OperatorProc,
        ready: &ReadyTracker,
        n: usize,
        limit: Duration,
    ) -> Res<(Option<f64>, Option<f64>)> {
        let step = Duration::from_millis(100);
        let mut first = None;
        let mut last_log = Instant::now();
        for _ in 0..(limit.as_millis() / step.as_millis()) as u64 + 2 {
            operator.proc.check_alive()?;
            let count = ready.ready();
            let elapsed = operator.started.elapsed().as_secs_f64();
            if count > 0 && first.is_none() {
                first = Some(elapsed);
            }
            if count >= n {
                return Ok((first, Some(elapsed)));
            }
            if operator.started.elapsed() >= limit {
                break;
            }
            if last_log.elapsed() >= Duration::from_secs(10) {
                log(format!("  {count}/{n} Ready after {elapsed:.0}s"));
                last_log = Instant::now();
            }
            tokio::time::sleep(step).await;
        }
        Ok((first, None))
    }

    async fn run_size(&self, n: usize) -> Res<SizeResult> {
        let r = self.args.refresh_secs;
        let namespace = self.create_namespace(&format!("bench-{n}")).await?;
        log(format!("N={n}: namespace {namespace}"));
        let mut result = SizeResult {
            managed_secrets: n,
            namespace: namespace.clone(),
            ..SizeResult::default()
        };
        let kms_names: Vec<(usize, String)> =
            (0..n).map(|i| (i, format!("{namespace}-{i:05}"))).collect();
        let items: Vec<(String, String)> = kms_names
            .iter()
            .map(|(i, kms)| (format!("ms-{i:05}"), kms.clone()))
            .collect();
        result.setup_kms_secrets_seconds = self.create_kms_secrets(&kms_names).await?;
        self.store(&namespace).await?;
        result.setup_managed_secrets_seconds =
            self.create_managed_secrets(&namespace, &items, r).await?;
        log(format!(
            "  setup: {n} KMS secrets in {:.1}s, {n} ManagedSecrets in {:.1}s",
            result.setup_kms_secrets_seconds, result.setup_managed_secrets_seconds
        ));

        // Cold start: the operator starts with all N objects waiting.
        let ready = ReadyTracker::start(&self.client, &namespace);
        if !wait_until(Duration::from_secs(60), Duration::from_millis(50), || {
            ready.listed()
        })
        .await
        {
            return Err("the ManagedSecret watch did not list within 60 s".into());
        }
        self.emulator.reset_calls().await?;
        let writes_before = apiserver_writes(&self.client).await?;
        let mut operator =
            OperatorProc::start(&self.bin, &self.work, &namespace, self.args.concurrency)?;
        let limit = self.args.ready_timeout(n);
        let (first, all) = self.wait_ready(&mut operator, &ready, n, limit).await?;
        let stats = operator.stats(self.ticks)?;
        let calls = self.emulator.calls().await?;
        let (writes, other) = split_writes(delta(
            &apiserver_writes(&self.client).await?,
            &writes_before,
        ));
        result.cold = Cold {
            complete: all.is_some(),
            ready: ready.ready(),
            not_ready: ready.not_ready(),
            seconds_to_first_ready: first,
            seconds_to_all_ready: all,
            timeout_seconds: limit.as_secs(),
            peak_rss_mib: stats.hwm_mib(),
            rss_mib: stats.rss_mib(),
            cpu_seconds: stats.cpu_seconds,
            kms_calls: calls_map(&calls),
            kms_calls_total: calls["total"].as_u64().unwrap_or(0),
            kubernetes_writes_total: writes.values().sum(),
            kubernetes_writes: writes,
            other_writes: other,
        };
        match all {
            Some(s) => log(format!(
                "  cold start: {n} Ready in {s:.1}s, peak RSS {:.1} MiB, CPU {:.1}s, {} KMS calls, {} writes",
                result.cold.peak_rss_mib,
                result.cold.cpu_seconds,
                result.cold.kms_calls_total,
                result.cold.kubernetes_writes_total
            )),
            None => log(format!(
                "  cold start: only {}/{n} Ready after {}s ({:?})",
                result.cold.ready,
                limit.as_secs(),
                result.cold.not_ready
            )),
        }

        // Change propagation by force-sync, then (after half an interval, so every object is on
        // its grid) the steady state, then propagation by periodic refresh.
        let changes = ChangeTracker::start(&self.client, &namespace);
        if !wait_until(Duration::from_secs(60), Duration::from_millis(50), || {
            changes.listed()
        })
        .await
        {
            return Err("the Secret watch did not list within 60 s".into());
        }
        let k = self.args.propagation_samples.min(n / 2).max(1);
        let stride = n / k;
        let periodic_picks: Vec<usize> = (0..k).map(|j| j * stride).collect();
        let force_picks: Vec<usize> = (0..k).map(|j| (j * stride + stride / 2) % n).collect();
        result.force_sync = self
            .propagate(
                &mut operator,
                &changes,
                &namespace,
                &items,
                &force_picks,
                true,
            )
            .await?;
        log(format!("  force-sync: {}", describe(&result.force_sync)));
        self.hold(&mut operator, Duration::from_millis(r * 500 + 2000))
            .await?;
        result.steady = self.steady(&mut operator, n).await?;
        log(format!(
            "  steady: {:.3} reads/secret/interval, {} writes, peak/avg {:?}",
            result.steady.reads_per_secret_per_interval,
            result.steady.kubernetes_writes_total,
            result.steady.peak_to_average
        ));
        result.periodic = self
            .propagate(
                &mut operator,
                &changes,
                &namespace,
                &items,
                &periodic_picks,
                false,
            )
            .await?;
        log(format!(
            "  periodic refresh: {}",
            describe(&result.periodic)
        ));

        if self.args.unrelated_at == Some(n) && self.args.unrelated_count > 0 {
            result.unrelated = Some(self.unrelated(&mut operator, &namespace).await?);
        }
        operator.proc.check_alive()?;
        Ok(result)
    }

    /// Writes a new version of each picked secret, optionally asks for a force-sync, and times
    /// the arrival of the new value in the Secret.
    async fn propagate(
        &self,
        operator: &mut OperatorProc,
        changes: &ChangeTracker,
        namespace: &str,
        items: &[(String, String)],
        picks: &[usize],
        force: bool,
    ) -> Res<Latencies> {
        let version = if force { "v-force" } else { "v-periodic" };
        let api: Api<ManagedSecret> = Api::namespaced(self.client.clone(), namespace);
        for &i in picks {
            changes.expect(
                &items[i].0,
                "password",
                secret_value(i, version).1.as_bytes(),
            );
        }
        let writes: Vec<(String, Instant)> = futures::stream::iter(picks)
            .map(|&i| {
                let api = api.clone();
                let (name, secret) = &items[i];
                async move {
                    let request = PutSecretValueRequest {
                        secret_name: secret.clone(),
                        version_id: version.into(),
                        secret_data: SecretString::new(secret_value(i, version).0),
                        secret_data_type: None,
                        version_stages: None,
                    };
                    retry(&format!("PutSecretValue {secret}"), || {
                        self.kms.put_secret_value(&request)
                    })
                    .await?;
                    let written = Instant::now();
                    if force {
                        let patch = json!({"metadata": {"annotations": {
                            "kmsync.io/force-sync": uuid::Uuid::new_v4().to_string()}}});
                        let (params, patch) = (PatchParams::default(), Patch::Merge(&patch));
                        retry(&format!("force-sync {name}"), || {
                            api.patch(name, &params, &patch)
                        })
                        .await?;
                    }
                    Res::Ok((name.clone(), written))
                }
            })
            .buffer_unordered(8)
            .try_collect()
            .await?;
        let limit = if force {
            Duration::from_secs(60 + picks.len() as u64)
        } else {
            Duration::from_secs(self.args.refresh_secs * 3 / 2 + 30)
        };
        wait_until(limit, Duration::from_millis(100), || {
            writes.iter().all(|(name, _)| changes.seen(name).is_some())
        })
        .await;
        operator.proc.check_alive()?;
        let mut seconds: Vec<f64> = writes
            .iter()
            .filter_map(|(name, written)| {
                changes
                    .seen(name)
                    .map(|seen| seen.saturating_duration_since(*written).as_secs_f64())
            })
            .collect();
        seconds.sort_by(f64::total_cmp);
        Ok(Latencies {
            samples: picks.len(),
            observed: seconds.len(),
            timed_out: picks.len() - seconds.len(),
            limit_seconds: limit.as_secs_f64(),
            p50_seconds: percentile(&seconds, 50.0),
            p99_seconds: percentile(&seconds, 99.0),
            max_seconds: seconds.last().copied(),
            seconds,
        })
    }

    /// Nothing changes for `steady_intervals` refresh intervals: KMS calls sampled every second.
    async fn steady(&self, operator: &mut OperatorProc, n: usize) -> Res<Steady> {
        let r = self.args.refresh_secs;
        let duration = r * self.args.steady_intervals;
        log(format!("  steady state for {duration}s"));
        self.emulator.reset_calls().await?;
        let writes_before = apiserver_writes(&self.client).await?;
        let cpu_before = operator.stats(self.ticks)?.cpu_seconds;
        let started = Instant::now();
        let mut samples = vec![(0.0, 0u64)];
        for second in 1..=duration {
            tokio::time::sleep_until((started + Duration::from_secs(second)).into()).await;
            let calls = self.emulator.calls().await?;
            samples.push((
                started.elapsed().as_secs_f64(),
                calls["total"].as_u64().unwrap_or(0),
            ));
            if second.is_multiple_of(5) {
                operator.proc.check_alive()?;
            }
        }
        let seconds = samples.last().map_or(0.0, |s| s.0);
        let calls = self.emulator.calls().await?;
        let stats = operator.stats(self.ticks)?;
        let (writes, other) = split_writes(delta(
            &apiserver_writes(&self.client).await?,
            &writes_before,
        ));
        let intervals = seconds / r as f64;
        let total = calls["total"].as_u64().unwrap_or(0);
        let gets = action_calls(&calls, "GetSecretValue");
        let per_object = |count: u64| count as f64 / n as f64 / intervals.max(f64::EPSILON);
        let cpu = stats.cpu_seconds - cpu_before;
        Ok(Steady {
            seconds,
            intervals,
            kms_calls: calls_map(&calls),
            kms_calls_total: total,
            get_secret_value: gets,
            reads_per_secret_per_interval: per_object(gets),
            kms_calls_per_object_per_interval: per_object(total),
            kubernetes_writes_total: writes.values().sum(),
            kubernetes_writes: writes,
            other_writes: other,
            average_kms_calls_per_second: samples.last().map_or(0, |s| s.1) as f64
                / seconds.max(f64::EPSILON),
            peak_to_average: self
                .args
                .rate_windows_secs
                .iter()
                .filter_map(|w| Some((*w, peak_to_average(&samples, *w as f64)?)))
                .collect(),
            cpu_seconds: cpu,
            cpu_seconds_per_interval: cpu / intervals.max(f64::EPSILON),
            rss_mib: stats.rss_mib(),
            peak_rss_mib: stats.hwm_mib(),
            samples,
        })
    }

    /// Average RSS over five samples a second apart.
    async fn rss(&self, operator: &mut OperatorProc) -> Res<f64> {
        let mut total = 0.0;
        for _ in 0..5 {
            operator.proc.check_alive()?;
            total += operator.stats(self.ticks)?.rss_mib();
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        Ok(total / 5.0)
    }

    /// Adds large Secrets kmsync does not manage to the watched namespace.
    async fn unrelated(&self, operator: &mut OperatorProc, namespace: &str) -> Res<Unrelated> {
        let (count, kib) = (self.args.unrelated_count, self.args.unrelated_kib);
        log(format!("  adding {count} unmanaged Secrets of {kib} KiB"));
        let before = self.rss(operator).await?;
        let hwm_before = operator.stats(self.ticks)?;
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let payload: Arc<Vec<u8>> = Arc::new(
            (0..kib * 1024)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8)
                .collect(),
        );
        let started = Instant::now();
        let outcomes: Vec<Result<(), String>> = futures::stream::iter(0..count)
            .map(|i| {
                let (api, payload) = (api.clone(), payload.clone());
                async move {
                    let mut bytes = payload.as_ref().clone();
                    bytes[..8].copy_from_slice(&(i as u64).to_be_bytes());
                    let secret = Secret {
                        metadata: ObjectMeta {
                            name: Some(format!("unrelated-{i:05}")),
                            ..Default::default()
                        },
                        data: Some([("blob".to_string(), ByteString(bytes))].into()),
                        ..Default::default()
                    };
                    let params = PostParams::default();
                    api.create(&params, &secret)
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                }
            })
            .buffer_unordered(4)
            .collect()
            .await;
        let create_seconds = started.elapsed().as_secs_f64();
        let created = outcomes.iter().filter(|o| o.is_ok()).count();
        let first_error = outcomes.iter().find_map(|o| o.clone().err());
        log(format!(
            "  created {created}/{count} in {create_seconds:.1}s; settling"
        ));
        self.hold(
            operator,
            Duration::from_secs(if self.args.smoke { 3 } else { 15 }),
        )
        .await?;
        let after = self.rss(operator).await?;
        let hwm_after = operator.stats(self.ticks)?;
        Ok(Unrelated {
            requested: count,
            kib_each: kib,
            created,
            errors: count - created,
            first_error,
            create_seconds,
            data_mib: (created * kib) as f64 / 1024.0,
            rss_before_mib: before,
            rss_after_mib: after,
            rss_delta_mib: after - before,
            peak_rss_before_mib: hwm_before.hwm_mib(),
            peak_rss_after_mib: hwm_after.hwm_mib(),
            cpu_seconds: hwm_after.cpu_seconds - hwm_before.cpu_seconds,
        })
    }

    /// M ManagedSecrets reading one KMS secret: reads per refresh interval.
    async fn coalescing(&self) -> Res<Coalescing> {
        let (m, r) = (self.args.coalesce_readers, self.args.coalesce_refresh_secs);
        let namespace = self.create_namespace("bench-coalesce").await?;
        log(format!(
            "coalescing: {m} readers of one secret in {namespace}"
        ));
        let secret = format!("{namespace}-shared");
        self.create_kms_secrets(&[(0, secret.clone())]).await?;
        self.store(&namespace).await?;
        let items: Vec<(String, String)> = (0..m)
            .map(|i| (format!("reader-{i:04}"), secret.clone()))
            .collect();
        self.create_managed_secrets(&namespace, &items, r).await?;
        let ready = ReadyTracker::start(&self.client, &namespace);
        if !wait_until(Duration::from_secs(60), Duration::from_millis(50), || {
            ready.listed()
        })
        .await
        {
            return Err("the ManagedSecret watch did not list within 60 s".into());
        }
        self.emulator.reset_calls().await?;
        let mut operator =
            OperatorProc::start(&self.bin, &self.work, &namespace, self.args.concurrency)?;
        let (_, all) = self
            .wait_ready(&mut operator, &ready, m, self.args.ready_timeout(m))
            .await?;
        let cold_gets = action_calls(&self.emulator.calls().await?, "GetSecretValue");
        self.hold(&mut operator, Duration::from_millis(r * 500 + 2000))
            .await?;
        self.emulator.reset_calls().await?;
        let writes_before = apiserver_writes(&self.client).await?;
        let started = Instant::now();
        self.hold(
            &mut operator,
            Duration::from_secs(r * self.args.coalesce_intervals),
        )
        .await?;
        let seconds = started.elapsed().as_secs_f64();
        let gets = action_calls(&self.emulator.calls().await?, "GetSecretValue");
        let (writes, _) = split_writes(delta(
            &apiserver_writes(&self.client).await?,
            &writes_before,
        ));
        let intervals = seconds / r as f64;
        let result = Coalescing {
            readers: m,
            refresh_seconds: r,
            ready: ready.ready(),
            seconds_to_all_ready: all,
            cold_get_secret_value: cold_gets,
            seconds,
            intervals,
            get_secret_value: gets,
            reads_per_interval: gets as f64 / intervals.max(f64::EPSILON),
            kubernetes_writes_total: writes.values().sum(),
            peak_rss_mib: operator.stats(self.ticks)?.hwm_mib(),
        };
        log(format!(
            "  {gets} reads in {intervals:.2} intervals ({:.2} per interval), {} cold reads",
            result.reads_per_interval, cold_gets
        ));
        Ok(result)
    }
}

fn describe(l: &Latencies) -> String {
    let f = |v: Option<f64>| v.map_or("-".into(), |s| format!("{s:.2}s"));
    format!(
        "{}/{} observed, p50 {}, p99 {}",
        l.observed,
        l.samples,
        f(l.p50_seconds),
        f(l.p99_seconds)
    )
}

// ---------------------------------------------------------------------------------------------
// Machine and versions

fn command_output(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn machine() -> Machine {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let meminfo = read("/proc/meminfo");
    let os_release = read("/etc/os-release");
    Machine {
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu_model: cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default(),
        memory_mib: meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map_or(0, |kib| kib / 1024),
        kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
        os: os_release
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_default(),
    }
}

async fn versions(client: &Client, bin: &Path) -> Versions {
    let etcd = match std::env::var("CP_ETCD_URL") {
        Ok(url) if url.starts_with("http://127.0.0.1:") => {
            match reqwest::get(format!("{url}/version")).await {
                Ok(response) => response
                    .json::<Value>()
                    .await
                    .ok()
                    .and_then(|v| v["etcdserver"].as_str().map(str::to_string))
                    .unwrap_or_default(),
                Err(_) => String::new(),
            }
        }
        _ => String::new(),
    };
    Versions {
        kmsync: env!("CARGO_PKG_VERSION").into(),
        git_rev: command_output("git", &["rev-parse", "HEAD"]),
        git_dirty: !command_output("git", &["status", "--porcelain", "--untracked-files=no"])
            .is_empty(),
        kubernetes: client
            .apiserver_version()
            .await
            .map(|v| v.git_version)
            .unwrap_or_default(),
        etcd,
        rustc: command_output("rustc", &["-V"]),
        operator_binary: bin.display().to_string(),
    }
}

// ---------------------------------------------------------------------------------------------

async fn run(args: Args) -> Res<PathBuf> {
    if std::env::var_os("KUBECONFIG").is_none() {
        return Err(
            "KUBECONFIG is not set: run through `make bench` / `make bench-smoke` \
                    (scripts/controlplane.sh run cargo bench --bench scale -- …)"
                .into(),
        );
    }
    let started_at = jiff::Timestamp::now();
    let stamp = started_at.strftime("%Y%m%dT%H%M%SZ").to_string();
    let client = Client::try_default().await?;
    let bin = args.kmsync_bin.clone().ok_or("no kmsync binary")?;
    if !bin.exists() {
        return Err(format!("{} does not exist", bin.display()).into());
    }
    let work = target_dir().join("bench-work").join(&stamp);
    std::fs::create_dir_all(&work)?;
    log(format!(
        "sizes {:?}, refresh {}s, latency {} ms, operator {} (logs in {})",
        args.sizes,
        args.refresh_secs,
        args.kms_latency_ms,
        bin.display(),
        work.display()
    ));
    let emulator =
        EmulatorProc::start(&bin, &work, &format!("{ACCESS_KEY_ID}:{ACCESS_KEY_SECRET}")).await?;
    let provider = Arc::new(StaticProvider::new(Credentials::access_key(
        ACCESS_KEY_ID,
        ACCESS_KEY_SECRET,
    )));
    let endpoint = Endpoint::parse(&emulator.base_url)?;
    let kms = KmsClient::new(KmsClientConfig::new(endpoint, provider))?;
    let versions = versions(&client, &bin).await;
    let bench = Bench {
        args: args.clone(),
        client,
        kms,
        emulator,
        bin,
        work,
        ticks: procs::clock_ticks(),
    };
    let mut sizes = Vec::new();
    for &n in &args.sizes {
        sizes.push(bench.run_size(n).await?);
    }
    let coalescing = if args.coalesce_readers > 0 {
        Some(bench.coalescing().await?)
    } else {
        None
    };
    let finished_at = jiff::Timestamp::now();
    let report = Report {
        schema: 1,
        mode: if args.smoke { "smoke" } else { "full" }.into(),
        started_at: started_at.to_string(),
        finished_at: finished_at.to_string(),
        seconds: finished_at.duration_since(started_at).as_secs_f64(),
        machine: machine(),
        versions,
        parameters: args.clone(),
        sizes,
        coalescing,
    };
    let out = args.out_dir.clone().ok_or("no output directory")?;
    std::fs::create_dir_all(&out)?;
    let markdown = report::markdown(&report);
    std::fs::write(
        out.join(format!("{stamp}.json")),
        serde_json::to_string_pretty(&report)? + "\n",
    )?;
    std::fs::write(out.join(format!("{stamp}.md")), &markdown)?;
    std::fs::write(out.join("latest.md"), &markdown)?;
    println!("{markdown}");
    Ok(out.join(format!("{stamp}.md")))
}

#[tokio::main]
async fn main() -> ExitCode {
    START.get_or_init(Instant::now);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Args::parse().resolved();
    if !args.bench {
        // `cargo test --benches` / `--all-targets` runs bench targets without `--bench`: this
        // needs a control plane and takes minutes, so it only runs under `cargo bench`.
        eprintln!("scale benchmark: skipped (run it with `cargo bench --bench scale`)");
        return ExitCode::SUCCESS;
    }
    match run(args).await {
        Ok(path) => {
            log(format!("results: {}", path.display()));
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("scale benchmark: {error}");
            ExitCode::FAILURE
        }
    }
}
