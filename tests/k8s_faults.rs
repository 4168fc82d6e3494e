//! Randomized fault episodes (issue 9): a seeded generator drives the emulator's fault controls,
//! the credentials and the control plane while five ManagedSecrets sync and two of them rotate
//! (`Immediate`). Steps: every GetSecretValue fault kind (errors, throttling, mutations), real
//! timeouts (latency past the operator's `--kms-timeout-secs`), faults on the rotation calls,
//! expired STS credentials of the store that uses AssumeRole (with and without a working STS),
//! conflicting writes of another field manager, new KMS versions and, every
//! `faults::run::RESTART_EVERY` seeds, an apiserver restart (`scripts/controlplane.sh
//! restart-apiserver`, SIGTERM or SIGKILL) with work queued. A rotation is triggered in about a
//! third of the steps (always in those aimed at rotation), so faults hit its steps.
//!
//! Checked on every write the monitor sees and on the state after every step:
//!
//! * no managed Secret is deleted, recreated or left with a missing or empty key;
//! * its data is exactly the rendering of a KMS version, never older than one seen before;
//! * a fault that fails every read leaves `Ready=False` with the reason it must give (a timeout
//!   says "timed out"), a clean step leaves `Ready=True/Synced` on the version KMS calls current;
//! * rotation: the sequence only steps by one, a pending version is the attempt's deterministic
//!   id, never two in flight, a failed attempt ends (is not tried again), KMS never keeps a
//!   pending label, attempts are written in order and none is skipped; the `Rotation` condition
//!   gives a known reason (and cause); after a clean step nothing stays in flight.
//!
//! `KMSYNC_FAULT_EPISODES` (default 100) sets the count; every episode has its own seed, printed
//! with any violation; `KMSYNC_FAULT_SEED=<seed>` replays that one episode. The run ends with a
//! Markdown table and the `SOAK fault_episodes` / `SOAK invariant_violations` lines on stdout;
//! `KMSYNC_FAULT_LOG` (a RUST_LOG filter) makes the operator verbose for a replay.
//!
//! Also here, because they restart the apiserver or must not be disturbed by a restart (the tests
//! of this binary take turns): regression tests for what the episodes found in the control plane
//! paths (watches after restarts, the store re-check after a blip).
#![cfg(feature = "integration")]

mod faults;
mod support;

use std::time::{Duration, Instant};

use faults::control_plane::restart_apiserver;
use faults::run::Run;
use rand::Rng;
use support::sync::{SyncEnv, wait_for};

/// The tests of this binary take turns: the episodes restart the apiserver.
static RESTARTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, got {v:?}"))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn randomized_fault_episodes_keep_secrets_complete_and_monotonic() {
    let _turn = RESTARTS.lock().await;
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
    run.drain_monitor();
    let elapsed = started.elapsed();
    let mut table = String::from("\n| measure | value |\n| --- | --- |\n");
    table += &format!("| episodes run | {episodes} of {} |\n", seeds.len());
    table += &format!("| steps (force-sync rounds) | {} |\n", run.steps);
    table += &format!("| invariant violations | {} |\n", run.violations.len());
    table += &format!("| apiserver restarts | {} |\n", run.restarts);
    table += &format!("| rotations asked for | {} |\n", run.triggers);
    for m in &run.managed {
        if let Some(r) = &m.rotation {
            table += &format!(
                "| {}: rotations asked / started / succeeded / failed | {} / {} / {} / {} |\n",
                m.name,
                r.triggers,
                r.sequence,
                r.succeeded,
                r.failed.len()
            );
        }
    }
    if !run.restart_times.is_empty() {
        let times: Vec<String> = run
            .restart_times
            .iter()
            .map(|t| format!("{:.1} s", t.as_secs_f64()))
            .collect();
        table += &format!("| apiserver restart times | {} |\n", times.join(", "));
    }
    for (kind, n) in &run.by_kind {
        let time = run.time_by_kind.get(kind).copied().unwrap_or_default();
        table += &format!(
            "| step: {kind} | {n} ({:.1} s each) |\n",
            time.as_secs_f64() / (*n).max(1) as f64
        );
    }
    if let Some(cleared) = run.time_by_kind.get("faults cleared") {
        table += &format!(
            "| step: faults cleared (ends every episode) | {episodes} ({:.1} s each) |\n",
            cleared.as_secs_f64() / episodes.max(1) as f64
        );
    }
    table += &format!("| time | {:.1} s |\n", elapsed.as_secs_f64());
    println!("{table}");
    println!("SOAK fault_episodes {episodes}");
    println!("SOAK invariant_violations {}", run.violations.len());
    if !run.violations.is_empty() {
        let logs = run.env.operator().logs();
        let tail: Vec<_> = logs.lines().rev().take(40).collect::<Vec<_>>();
        let seeds: std::collections::BTreeSet<&str> = run
            .violations
            .iter()
            .filter_map(|v| v.strip_prefix("seed ")?.split(',').next())
            .collect();
        panic!(
            "{} invariant violation(s):\n{}\n\nreplay: KMSYNC_FAULT_SEED=<seed> scripts/controlplane.sh run cargo test --features integration --test k8s_faults -- --nocapture\nfailing seeds: {seeds:?}\n\noperator log tail:\n{}",
            run.violations.len(),
            run.violations.join("\n"),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
}

/// Found by the episodes: after apiserver restarts the operator stayed deaf for up to a minute
/// (kube-runtime's watch backoff grows to 30 s and a controller's watches share it). Two restarts
/// in a row, then a change must be acted on within seconds of the apiserver answering again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_hears_changes_within_seconds_after_apiserver_restarts() {
    let _turn = RESTARTS.lock().await;
    let Some(state) = faults::control_plane::state_dir() else {
        println!("skipped: no control plane of scripts/controlplane.sh to restart");
        return;
    };
    let log = std::env::var("KMSYNC_FAULT_LOG").unwrap_or_else(|_| "info".into());
    let env = SyncEnv::start_with_log_level("faults-watch", &log).await;
    env.create_kms_secret("w", "v1", "first").await;
    env.apply_managed_secret("w", "w", serde_json::json!({}))
        .await;
    wait_for("the first sync", 60, || async {
        env.secret_data("w").await.filter(|d| d["value"] == "first")
    })
    .await;
    for (round, kill) in [(2, true), (3, false)] {
        restart_apiserver(state.clone(), kill, &env.client).await;
        // Wait for our resources to be served, then change KMS and ask for a sync.
        wait_for("ManagedSecrets served", 60, || async {
            env.managed_secrets().get("w").await.ok()
        })
        .await;
        let value = format!("after restart {round}");
        env.put_kms_value("w", &format!("v{round}"), &value, None)
            .await;
        let asked = Instant::now();
        env.force_sync("w").await;
        wait_for(&format!("the sync after restart {round}"), 60, || async {
            env.secret_data("w").await.filter(|d| d["value"] == value)
        })
        .await;
        let took = asked.elapsed();
        println!(
            "acted {:.1} s after restart {round} (kill: {kill})",
            took.as_secs_f64()
        );
        // Each watch backs off on its own, at most 5 s (±20 %); with kube-runtime's default,
        // shared by a controller's watches and growing to 30 s, this took over a minute.
        assert!(
            took < Duration::from_secs(15),
            "the operator took {took:?} to act after apiserver restart {round}"
        );
    }
}

/// Found by the episodes: a store check that failed for a transient reason (KMS unavailable) was
/// repeated only a minute later, and every reader waited with `StoreNotReady` all that time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_check_that_failed_transiently_is_repeated_within_seconds() {
    let _turn = RESTARTS.lock().await;
    let mut env = SyncEnv::without_operator("faults-store").await;
    env.create_kms_secret("s", "v1", "one").await;
    env.emulator.set_faults(faults::steps::error(
        "ListSecrets",
        "ServiceUnavailable",
        503,
        1.0,
    ));
    env.operator = Some(support::sync::Operator::start(&env.namespace, "info"));
    env.apply_managed_secret("s", "s", serde_json::json!({}))
        .await;
    wait_for(
        "the store check to fail and the reader to wait",
        60,
        || async {
            let ready = env.ready("s").await?;
            (ready == ("False".into(), "StoreNotReady".into())).then_some(())
        },
    )
    .await;
    env.emulator.set_faults(Default::default());
    let cleared = Instant::now();
    wait_for("the reader to be synced again", 90, || async {
        let ready = env.ready("s").await?;
        (ready == ("True".into(), "Synced".into())).then_some(())
    })
    .await;
    let took = cleared.elapsed();
    println!(
        "store re-checked, reader synced {:.1} s after the outage",
        took.as_secs_f64()
    );
    // The first re-check comes within 5 s (±20 %); it used to be a flat minute.
    assert!(took < Duration::from_secs(20), "took {took:?}");
    assert_eq!(env.secret_data("s").await.expect("Secret")["value"], "one");
}
