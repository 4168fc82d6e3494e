//! Two replicas with leader election: only the leader writes; a killed leader is replaced once its
//! Lease expires, with no write done twice; a leader stopped gracefully releases its Lease.
#![cfg(feature = "integration")]

mod support;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams};
use serde_json::json;
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
