//! `kubectl kmsync`, found by the real kubectl on the PATH as `kubectl-kmsync` (a link to the
//! kmsync binary), against the real apiserver, the emulator and a running operator.
#![cfg(feature = "integration")]

mod support;

use std::process::Output;

use serde_json::{Value, json};
use support::kubectl_kmsync;
use support::sync::{SyncEnv, wait_for};

fn stdout(output: &Output) -> String {
    assert!(output.status.success(), "{}", support::describe(output));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

// Multi-threaded: kubectl runs synchronously while the in-process emulator must keep serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plugin_shows_status_versions_and_asks_for_syncs() {
    let canary = "canary-plugin-91c2";
    let env = SyncEnv::start("plugin").await;
    let ns = env.namespace.clone();
    env.create_kms_secret("db", "v1", &format!(r#"{{"pwd":"{canary}-1"}}"#))
        .await;
    env.put_kms_value("db", "v2", &format!(r#"{{"pwd":"{canary}-2"}}"#), None)
        .await;
    env.apply_managed_secret(
        "db",
        "db",
        json!({"data": [{"key": "pwd", "property": "pwd"}]}),
    )
    .await;
    env.apply_managed_secret("broken", "nope", json!({})).await;
    wait_for("db synced", 60, || async {
        env.ready("db").await.filter(|(s, _)| s == "True")
    })
    .await;
    wait_for("broken reported", 60, || async {
        env.ready("broken").await.filter(|(s, _)| s == "False")
    })
    .await;

    let table = stdout(&kubectl_kmsync(&["status", "-n", &ns]));
    let header = table.lines().next().unwrap();
    assert!(
        header.starts_with("NAME") && header.contains("READY") && header.contains("NEXT ROTATION"),
        "{table}"
    );
    let db_row = table
        .lines()
        .find(|l| l.starts_with("db "))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        db_row.contains("True") && db_row.contains("Synced") && db_row.contains("v2"),
        "{db_row}"
    );
    let broken_row = table.lines().find(|l| l.starts_with("broken ")).unwrap();
    assert!(broken_row.contains("SecretNotFound"), "{broken_row}");

    let rows: Vec<Value> = serde_json::from_str(&stdout(&kubectl_kmsync(&[
        "status", "-n", &ns, "-o", "json",
    ])))
    .unwrap();
    assert_eq!(rows.len(), 2);
    let all = stdout(&kubectl_kmsync(&["status", "-A"]));
    assert!(all.lines().next().unwrap().starts_with("NAMESPACE") && all.contains(&ns));

    let versions: Value = serde_json::from_str(&stdout(&kubectl_kmsync(&[
        "versions", "db", "-n", &ns, "-o", "json",
    ])))
    .unwrap();
    let ids: Vec<(&str, Vec<&str>, bool)> = versions["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let stages = v["stages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap())
                .collect();
            (
                v["versionId"].as_str().unwrap(),
                stages,
                v["synced"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ids,
        [
            ("v1", vec!["ACSPrevious"], false),
            ("v2", vec!["ACSCurrent"], true)
        ]
    );
    let versions_table = stdout(&kubectl_kmsync(&["versions", "db", "-n", &ns]));
    assert!(
        versions_table.contains("ACSCurrent") && versions_table.contains("v1"),
        "{versions_table}"
    );

    let synced = stdout(&kubectl_kmsync(&["sync", "db", "-n", &ns]));
    assert!(synced.contains("Sync requested"), "{synced}");
    let asked = env
        .managed_secrets()
        .get("db")
        .await
        .unwrap()
        .metadata
        .annotations
        .unwrap()["kmsync.io/force-sync"]
        .clone();
    wait_for("the operator to act on the plugin's sync", 60, || async {
        let status = env.managed_secrets().get("db").await.ok()?.status?;
        (status.last_force_sync.as_deref() == Some(asked.as_str())).then_some(())
    })
    .await;

    let refused = kubectl_kmsync(&["rotate", "db", "-n", &ns]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("has no spec.rotation"),
        "{}",
        support::describe(&refused)
    );
    let missing = kubectl_kmsync(&["sync", "ghost", "-n", &ns]);
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("ManagedSecret")
            && String::from_utf8_lossy(&missing.stderr).contains("not found")
    );

    for output in [table, all, versions.to_string(), versions_table, synced] {
        assert!(
            !output.contains(canary),
            "the plugin printed a secret value"
        );
    }
}
