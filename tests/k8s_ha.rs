//! Two replicas with leader election: only the leader writes; a killed leader is replaced once its
//! Lease expires, with no write done twice; a leader stopped gracefully releases its Lease. Under
//! load (syncs, new KMS versions, immediate and staged rotations) the leader is killed repeatedly:
//! each failover is timed, and no KMS write or rotation happens twice.
#![cfg(feature = "integration")]

mod support;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::events::v1::Event;
use kmsync::crd::ManagedSecret;
use kmsync::kms::actions::{GetSecretValueRequest, ListSecretVersionIdsRequest};
use kmsync::rotation::plan::version_id;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use support::rotation::WEBHOOK_KEY_SECRET;
use support::sync::{Operator, SyncEnv, wait_for};

async fn holder(env: &SyncEnv) -> Option<String> {
    let lease = Api::<Lease>::namespaced(env.client.clone(), &env.namespace)
        .get_opt("kmsync")
        .await
        .ok()??;
    lease.spec?.holder_identity
}

fn replica(env: &SyncEnv, name: &str) -> Operator {
    let namespace = env.namespace.clone();
    Operator::start_with(
        &namespace,
        "info,kmsync=debug",
        &[
            "--leader-elect",
            "--lease-namespace",
            &namespace,
            "--instance",
            name,
        ],
    )
}

async fn event_count(env: &SyncEnv, reason: &str) -> usize {
    Api::<Event>::namespaced(env.client.clone(), &env.namespace)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .count()
}

#[tokio::test]
async fn one_leader_writes_and_a_standby_takes_over() {
    let env = SyncEnv::without_operator("ha").await;
    env.create_kms_secret("db", "v1", "one").await;
    let a = replica(&env, "replica-a");
    wait_for("replica-a to lead", 60, || async {
        holder(&env).await.filter(|h| h == "replica-a")
    })
    .await;
    let mut b = replica(&env, "replica-b");
    wait_for("replica-b to stand by", 60, || async {
        b.logs().contains("standing by").then_some(())
    })
    .await;

    env.apply_managed_secret("db", "db", json!({})).await;
    wait_for("v1 synced", 60, || async {
        env.secret_data("db").await.filter(|d| d["value"] == "one")
    })
    .await;
    assert!(
        !b.logs().contains("reconciling"),
        "the standby must not reconcile"
    );

    drop(a); // SIGKILL: no release, the Lease has to expire
    wait_for("replica-b to take over", 60, || async {
        holder(&env).await.filter(|h| h == "replica-b")
    })
    .await;
    env.put_kms_value("db", "v2", "two", None).await;
    env.force_sync("db").await;
    wait_for("v2 synced by the new leader", 60, || async {
        env.secret_data("db").await.filter(|d| d["value"] == "two")
    })
    .await;
    let lease = Api::<Lease>::namespaced(env.client.clone(), &env.namespace)
        .get("kmsync")
        .await
        .unwrap();
    assert_eq!(lease.spec.unwrap().lease_transitions, Some(1));
    assert_eq!(
        event_count(&env, "Created").await,
        1,
        "the Secret was created once"
    );
    assert_eq!(event_count(&env, "Updated").await, 1, "v2 was written once");

    let status = std::process::Command::new("kill")
        .args(["-TERM", &b.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = b.wait_exit(30).expect("replica-b stops on SIGTERM");
    assert!(exit.success(), "graceful stop: {exit:?}");
    assert_eq!(
        holder(&env).await,
        None,
        "a graceful leader releases its Lease"
    );
}

/// Sizes of the run: CI-sized defaults, larger through the environment for `make soak`.
fn env_size(name: &str, default: usize) -> usize {
    std::env::var(name).map_or(default, |v| {
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, got {v:?}"))
    })
}

/// The rotated value: a fresh password under a fixed user name.
const TEMPLATE: &str = r#"{"uname":"app","pwd":"{{ password }}"}"#;
/// Versions the emulator keeps per secret (its default semantics); older unlabeled ones roll off.
const KMS_MAX_VERSIONS: usize = 10;
/// Load steps at most (about 50 minutes at the pace below); the run stops it long before.
const MAX_LOAD_STEPS: u64 = 20_000;
const LOAD_PACE: Duration = Duration::from_millis(150);

/// The replicas this test started, by leader identity; killed ones only by their own PID (drop).
struct Replicas {
    namespace: String,
    lease_secs: u64,
    started: usize,
    running: Vec<(String, Operator)>,
    logs: Vec<PathBuf>,
}

impl Replicas {
    /// Starts one more replica with a fresh identity (a new pod, as a Deployment would make).
    fn start(&mut self) -> String {
        self.started += 1;
        let identity = format!("replica-{}", self.started);
        let timing = [
            format!("--lease-duration-secs={}", self.lease_secs),
            format!("--lease-renew-deadline-secs={}", self.lease_secs - 1),
            "--lease-retry-period-secs=1".to_string(),
        ];
        let mut args = vec![
            "--leader-elect",
            "--lease-namespace",
            &self.namespace,
            "--instance",
            &identity,
        ];
        args.extend(timing.iter().map(String::as_str));
        let operator = Operator::start_with(&self.namespace, "info", &args);
        self.logs.push(operator.log_path.clone());
        self.running.push((identity.clone(), operator));
        identity
    }

    fn take(&mut self, identity: &str) -> Operator {
        let at = self
            .running
            .iter()
            .position(|(id, _)| id == identity)
            .expect("a replica of this test");
        self.running.remove(at).1
    }
}

/// What the load did, so that the end state can be predicted exactly.
struct Load {
    plain: usize,
    /// Rotating ManagedSecrets (immediate ones, then the staged one last).
    rotating: Vec<String>,
    /// Newest KMS version number of each plain secret.
    newest: Mutex<Vec<u32>>,
    /// Rotations asked for, per rotating ManagedSecret (each only after the previous finished).
    triggers: Mutex<Vec<i64>>,
    /// PutSecretValue calls made by the test itself.
    puts: AtomicU64,
    stop: AtomicBool,
}

async fn annotate(env: &SyncEnv, name: &str, key: &str, value: &str) {
    let patch = json!({"metadata": {"annotations": {key: value}}});
    env.managed_secrets()
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("annotate");
}

/// `(rotations started, one in flight)` as the ManagedSecret's status records them.
fn rotation_progress(ms: &ManagedSecret) -> (i64, bool) {
    let rotation = ms.status.as_ref().and_then(|s| s.rotation.clone());
    let rotation = rotation.unwrap_or_default();
    (
        rotation.sequence.unwrap_or(0),
        rotation.pending_version_id.is_some(),
    )
}

/// New KMS versions with a force-sync, round robin over the plain secrets, and a new rotation of
/// each rotating secret whose previous one has finished; until told to stop.
async fn drive_load(env: &SyncEnv, load: &Load) {
    for step in 0..MAX_LOAD_STEPS {
        if load.stop.load(Ordering::SeqCst) {
            return;
        }
        let i = step as usize % load.plain;
        let version = load.newest.lock().unwrap()[i] + 1;
        let name = format!("s{i}");
        env.put_kms_value(
            &name,
            &format!("v{version}"),
            &format!("{name}-v{version}"),
            None,
        )
        .await;
        load.puts.fetch_add(1, Ordering::SeqCst);
        load.newest.lock().unwrap()[i] = version;
        env.force_sync(&name).await;
        if step % 8 == 0 {
            for (r, name) in load.rotating.iter().enumerate() {
                let ms = env.managed_secrets().get(name).await.expect("get");
                let asked = load.triggers.lock().unwrap()[r];
                if rotation_progress(&ms) == (asked, false) {
                    load.triggers.lock().unwrap()[r] = asked + 1;
                    annotate(env, name, "kmsync.io/rotate", &(asked + 1).to_string()).await;
                }
            }
        }
        tokio::time::sleep(LOAD_PACE).await;
    }
}

/// Rotations finished so far across the rotating ManagedSecrets (status, not the test's wishes).
async fn rotations_finished(env: &SyncEnv, load: &Load) -> i64 {
    let mut finished = 0;
    for name in &load.rotating {
        let ms = env.managed_secrets().get(name).await.expect("get");
        let (sequence, in_flight) = rotation_progress(&ms);
        finished += sequence - i64::from(in_flight);
    }
    finished
}

/// A loopback register/verify webhook for the staged rotation; counts its calls.
async fn webhook(calls: &'static AtomicU64) -> String {
    let app = axum::Router::new().route(
        "/rotate",
        axum::routing::post(move |axum::Json(_): axum::Json<Value>| async move {
            calls.fetch_add(1, Ordering::SeqCst);
            axum::http::StatusCode::OK
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/rotate", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// The KMS secrets and ManagedSecrets: `s<i>` plain, `probe` for timing, `r<i>` immediate
/// rotation, `staged` staged rotation through the webhook; `minInterval: 1s` lets each trigger act
/// at once.
async fn create_objects(env: &SyncEnv, load: &Load, hook: &str) {
    // Its receiver does not check signatures, but kmsync signs every call and needs the key.
    env.apply(
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": WEBHOOK_KEY_SECRET},
        "stringData": {"key": "ha-signing-key"}}),
    )
    .await;
    let spec = |strategy: Value| {
        let mut rotation = json!({"interval": "720h", "minInterval": "1s",
            "generate": {"password": {"length": 24, "excludePunctuation": true}, "template": TEMPLATE}});
        for (k, v) in strategy.as_object().unwrap() {
            rotation[k] = v.clone();
        }
        json!({"data": [{"key": "username", "property": "uname"}, {"key": "password", "property": "pwd"}],
               "rotation": rotation})
    };
    for i in 0..load.plain {
        let name = format!("s{i}");
        env.create_kms_secret(&name, "v1", &format!("{name}-v1"))
            .await;
        env.apply_managed_secret(&name, &name, json!({})).await;
    }
    env.create_kms_secret("probe", "v1", "probe-v1").await;
    env.apply_managed_secret("probe", "probe", json!({})).await;
    for name in &load.rotating {
        env.create_kms_secret(name, "v1", r#"{"uname":"app","pwd":"initial"}"#)
            .await;
        let strategy = if name == "staged" {
            json!({"strategy": "Staged", "register": {"webhook": {"url": hook,
                "signingSecretRef": {"name": WEBHOOK_KEY_SECRET}}}})
        } else {
            json!({"strategy": "Immediate"})
        };
        env.apply_managed_secret(name, name, spec(strategy)).await;
    }
}

/// Every Secret holds the newest KMS value (plain and probe from the test's own count, rotating
/// ones from KMS's ACSCurrent, which must be the last rotation's version).
async fn all_hold_newest(env: &SyncEnv, load: &Load, probe: u32) -> Result<(), String> {
    let newest = load.newest.lock().unwrap().clone();
    let mut want: Vec<(String, String, String)> = newest
        .iter()
        .enumerate()
        .map(|(i, v)| (format!("s{i}"), "value".into(), format!("s{i}-v{v}")))
        .collect();
    want.push(("probe".into(), "value".into(), format!("probe-v{probe}")));
    for name in &load.rotating {
        let current = env
            .kms
            .get_secret_value(&GetSecretValueRequest::current(name.as_str()))
            .await
            .expect("GetSecretValue");
        let value: Value = serde_json::from_str(current.secret_data.expose()).unwrap();
        want.push((
            name.clone(),
            "password".into(),
            value["pwd"].as_str().unwrap().into(),
        ));
    }
    for (name, key, value) in want {
        let data = env.secret_data(&name).await.unwrap_or_default();
        if data.get(&key) != Some(&value) {
            return Err(format!("Secret {name} does not hold the newest KMS value"));
        }
    }
    Ok(())
}

/// Version ids KMS still lists for `name` (deprecated included).
async fn kms_versions(env: &SyncEnv, name: &str) -> BTreeSet<String> {
    let request = ListSecretVersionIdsRequest {
        secret_name: name.into(),
        include_deprecated: Some(true),
        page_number: Some(1),
        page_size: Some(100),
    };
    let listed = env.kms.list_secret_version_ids(&request).await.unwrap();
    listed
        .version_ids
        .into_iter()
        .map(|v| v.version_id)
        .collect()
}

/// Checks one rotating secret after the run: status counted exactly the rotations asked for, and
/// KMS holds exactly their version ids (each once, none skipped), the last one current.
async fn check_rotations(env: &SyncEnv, name: &str, asked: i64) {
    let ms = env.managed_secrets().get(name).await.unwrap();
    assert_eq!(
        rotation_progress(&ms),
        (asked, false),
        "{name}: rotations in status"
    );
    let uid = ms.uid().unwrap();
    let all: Vec<String> = std::iter::once("v1".to_string())
        .chain((1..=asked).map(|n| version_id(&uid, n)))
        .collect();
    let kept: BTreeSet<String> = all[all.len().saturating_sub(KMS_MAX_VERSIONS)..]
        .iter()
        .cloned()
        .collect();
    assert_eq!(kms_versions(env, name).await, kept, "{name}: KMS versions");
    let current = env
        .kms
        .get_secret_value(&GetSecretValueRequest::current(name))
        .await
        .unwrap();
    assert_eq!(
        &current.version_id,
        all.last().unwrap(),
        "{name}: ACSCurrent"
    );
    let secret = env.secrets().get(name).await.unwrap();
    assert_eq!(
        secret.annotations().get("kmsync.io/kms-version-id"),
        Some(&current.version_id),
        "{name}: the Secret holds the last rotation"
    );
}

fn percentile(sorted: &[u128], p: usize) -> u128 {
    sorted[(sorted.len() - 1) * p / 100]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_under_load_fails_over_without_duplicate_writes() {
    let plain = env_size("KMSYNC_HA_SECRETS", 40);
    let kills = env_size("KMSYNC_HA_KILLS", 3).max(1);
    let lease_secs = env_size("KMSYNC_HA_LEASE_SECS", 4).max(3) as u64;
    let immediate = 3;
    static HOOK_CALLS: AtomicU64 = AtomicU64::new(0);
    let started = Instant::now();
    let env = SyncEnv::without_operator("ha-load").await;
    let hook = webhook(&HOOK_CALLS).await;
    let load = Load {
        plain,
        rotating: (0..immediate)
            .map(|i| format!("r{i}"))
            .chain(["staged".to_string()])
            .collect(),
        newest: Mutex::new(vec![1; plain]),
        triggers: Mutex::new(vec![0; immediate + 1]),
        puts: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    };
    let objects = plain + 1 + load.rotating.len();
    let mut replicas = Replicas {
        namespace: env.namespace.clone(),
        lease_secs,
        started: 0,
        running: Vec::new(),
        logs: Vec::new(),
    };
    let first = replicas.start();
    wait_for("the first replica to lead", 60, || async {
        holder(&env).await.filter(|h| *h == first)
    })
    .await;
    replicas.start();
    create_objects(&env, &load, &hook).await;
    // Every Secret is created (and its event recorded) before any kill, so each is created once.
    wait_for("every Secret created", 120, || async {
        (event_count(&env, "Created").await == objects).then_some(())
    })
    .await;

    let mut failovers = Vec::new();
    let mut interrupted = 0;
    let mut probe = 1;
    let kill_loop = async {
        for kill in 1..=kills {
            let leader = wait_for("a leader among our replicas", 60, || async {
                holder(&env)
                    .await
                    .filter(|h| replicas.running.iter().any(|(id, _)| id == h))
            })
            .await;
            wait_for("a standby", 60, || async {
                replicas
                    .running
                    .iter()
                    .all(|(id, op)| *id == leader || op.logs().contains("standing by"))
                    .then_some(())
            })
            .await;
            // Let this leader do real work under load first: at least one more rotation.
            let before = rotations_finished(&env, &load).await;
            wait_for("a rotation under this leader", 60, || async {
                (rotations_finished(&env, &load).await > before).then_some(())
            })
            .await;

            let killed = replicas.take(&leader);
            let (at, wall) = (Instant::now(), jiff::Timestamp::now());
            drop(killed); // SIGKILL by PID: no release, the Lease has to expire
            probe += 1;
            env.put_kms_value(
                "probe",
                &format!("v{probe}"),
                &format!("probe-v{probe}"),
                None,
            )
            .await;
            load.puts.fetch_add(1, Ordering::SeqCst);
            env.force_sync("probe").await;
            // Nobody writes status until a standby leads, so this is what the kill interrupted.
            for ms in env
                .managed_secrets()
                .list(&ListParams::default())
                .await
                .unwrap()
            {
                interrupted += usize::from(rotation_progress(&ms).1);
            }
            replicas.start();
            let want = format!("probe-v{probe}");
            let lease = wait_for("a standby to take over and sync the change", 90, || async {
                let lease = Api::<Lease>::namespaced(env.client.clone(), &env.namespace)
                    .get("kmsync")
                    .await
                    .ok()?;
                let spec = lease.spec.clone()?;
                let taken = spec.holder_identity.as_deref().is_some_and(|h| h != leader);
                let synced = env.secret_data("probe").await?.get("value") == Some(&want);
                (taken && synced).then_some(spec)
            })
            .await;
            let failover = at.elapsed().as_millis();
            let acquired = lease
                .acquire_time
                .map(|t| t.0.duration_since(wall).as_millis());
            println!("SOAK failover_ms {failover}");
            println!(
                "HA kill {kill}/{kills}: {leader} killed, {} took the Lease after {} ms, the change \
                 made right after the kill was synced after {failover} ms",
                lease.holder_identity.unwrap_or_default(),
                acquired.map_or("?".into(), |ms| ms.to_string()),
            );
            failovers.push(failover);
        }
        load.stop.store(true, Ordering::SeqCst);
    };
    tokio::join!(drive_load(&env, &load), kill_loop);

    // The last rotations asked for finish, and every Secret catches up with KMS.
    let triggers = load.triggers.lock().unwrap().clone();
    wait_for("the last rotations to finish", 90, || async {
        (rotations_finished(&env, &load).await == triggers.iter().sum::<i64>()).then_some(())
    })
    .await;
    let mut last_gap = String::new();
    let settled = tokio::time::timeout(Duration::from_secs(90), async {
        loop {
            match all_hold_newest(&env, &load, probe).await {
                Ok(()) => return,
                Err(gap) => last_gap = gap,
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    assert!(settled.is_ok(), "after the run: {last_gap}");
    for (name, asked) in load.rotating.iter().zip(&triggers) {
        check_rotations(&env, name, *asked).await;
    }

    // KMS writes: the test's own puts plus exactly one per rotation; two stage moves (promote,
    // clean) per staged rotation; no secret created by the operator.
    let rotations: i64 = triggers.iter().sum();
    let staged = *triggers.last().unwrap();
    let test_puts = load.puts.load(Ordering::SeqCst);
    let expected = [
        ("PutSecretValue", test_puts + rotations as u64),
        ("UpdateSecretVersionStage", 2 * staged as u64),
        ("CreateSecret", objects as u64),
    ];
    let mut duplicate_writes = 0;
    for (action, want) in expected {
        let calls = env.calls(action);
        duplicate_writes += calls.saturating_sub(want);
        assert_eq!(calls, want, "{action} calls");
    }
    println!("SOAK duplicate_writes {duplicate_writes}");

    let lease = Api::<Lease>::namespaced(env.client.clone(), &env.namespace)
        .get("kmsync")
        .await
        .unwrap();
    assert_eq!(
        lease.spec.unwrap().lease_transitions,
        Some(kills as i32),
        "one transition per kill, none otherwise"
    );
    assert_eq!(
        event_count(&env, "Created").await,
        objects,
        "each Secret created once"
    );
    for log in &replicas.logs {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        for lost in [
            "another replica took the Lease",
            "could not renew",
            "leadership lost",
        ] {
            assert!(
                !text.contains(lost),
                "a replica lost its Lease unexpectedly ({lost}): {log:?}"
            );
        }
    }

    failovers.sort_unstable();
    println!(
        "HA under load: {objects} ManagedSecrets, {kills} leader kills, failover p50 {} ms, max {} ms \
         (lease {lease_secs} s); {rotations} rotations ({staged} staged, {interrupted} in flight at a \
         kill), {test_puts} new KMS versions, {} webhook calls, 0 duplicate KMS writes, {:.0} s",
        percentile(&failovers, 50),
        percentile(&failovers, 100),
        HOOK_CALLS.load(Ordering::SeqCst),
        started.elapsed().as_secs_f64(),
    );
}
