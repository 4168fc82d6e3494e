//! The sync controller end to end: the operator binary against a real kube-apiserver and the KMS
//! emulator. Each test has its own namespace, emulator and operator.
#![cfg(feature = "integration")]

mod support;

use std::collections::BTreeMap;

use k8s_openapi::api::events::v1::Event;
use kmsync::crd::SecretStore;
use kmsync::emulator::{ErrorRule, FaultConfig};
use kmsync::kms::SecretString;
use kmsync::kms::actions::{CreateSecretRequest, DeleteSecretRequest};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use support::sync::{SyncEnv, wait_for};

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn wait_ready(env: &SyncEnv, name: &str, status: &str, reason: &str) {
    wait_for(&format!("{name} Ready={status} ({reason})"), 60, || async {
        env.ready(name)
            .await
            .filter(|(s, r)| s == status && r == reason)
    })
    .await;
}

async fn events(env: &SyncEnv) -> Vec<Event> {
    Api::<Event>::namespaced(env.client.clone(), &env.namespace)
        .list(&ListParams::default())
        .await
        .expect("list events")
        .items
}

#[tokio::test]
async fn first_sync_then_a_new_version_through_force_sync() {
    let env = SyncEnv::start("sync-first").await;
    env.create_kms_secret("db_cred", "v1", r#"{"uname":"alice","pwd":"p1"}"#)
        .await;
    env.apply_managed_secret("db-cred", "db_cred", json!({"data": [
        {"key": "username", "property": "uname"},
        {"key": "password", "property": "pwd"},
        {"key": "password-previous", "property": "pwd", "versionStage": "ACSPrevious", "optional": true}]}))
        .await;
    wait_ready(&env, "db-cred", "True", "Synced").await;
    assert_eq!(
        env.secret_data("db-cred").await.unwrap(),
        map(&[("username", "alice"), ("password", "p1")])
    );
    let secret = env.secrets().get("db-cred").await.unwrap();
    let annotations = secret.metadata.annotations.unwrap();
    assert_eq!(annotations["kmsync.io/kms-version-id"], "v1");
    assert_eq!(annotations["kmsync.io/kms-secret-name"], "db_cred");
    assert_eq!(secret.metadata.labels.unwrap()["kmsync.io/managed"], "true");
    let status = env
        .managed_secrets()
        .get("db-cred")
        .await
        .unwrap()
        .status
        .unwrap();
    assert_eq!(status.source.unwrap().version_id.as_deref(), Some("v1"));
    assert!(status.last_sync_time.is_some());

    // The store check runs on its own; wait for it rather than assume it already reported.
    let ready = wait_for("the store's Ready condition", 60, || async {
        let store: SecretStore = Api::namespaced(env.client.clone(), &env.namespace)
            .get("kms")
            .await
            .ok()?;
        store
            .status?
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Ready")
    })
    .await;
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("True", "Valid")
    );

    env.put_kms_value("db_cred", "v2", r#"{"uname":"alice","pwd":"p2"}"#, None)
        .await;
    env.force_sync("db-cred").await;
    let data = wait_for("v2 in the Secret", 60, || async {
        env.secret_data("db-cred")
            .await
            .filter(|d| d.get("password").map(String::as_str) == Some("p2"))
    })
    .await;
    assert_eq!(
        data,
        map(&[
            ("username", "alice"),
            ("password", "p2"),
            ("password-previous", "p1")
        ])
    );
    let reasons: Vec<String> = events(&env)
        .await
        .into_iter()
        .filter_map(|e| e.reason)
        .collect();
    assert!(
        reasons.contains(&"Created".to_string()) && reasons.contains(&"Updated".to_string()),
        "{reasons:?}"
    );
}

#[tokio::test]
async fn unchanged_refresh_writes_nothing_and_a_new_version_arrives_by_refresh() {
    let env = SyncEnv::start("sync-refresh").await;
    env.create_kms_secret("app", "v1", "first").await;
    env.apply_managed_secret("app", "app", json!({"refreshInterval": "10s"}))
        .await;
    wait_ready(&env, "app", "True", "Synced").await;
    // Let the writes of the first sync settle, then take the baseline.
    let baseline_reads = wait_for("one refresh after the first sync", 60, || async {
        let reads = env.calls("GetSecretValue");
        (reads >= 2).then_some(reads)
    })
    .await;
    let secret_rv = env
        .secrets()
        .get("app")
        .await
        .unwrap()
        .metadata
        .resource_version;
    let ms_rv = env
        .managed_secrets()
        .get("app")
        .await
        .unwrap()
        .metadata
        .resource_version;
    wait_for("two more periodic refreshes", 60, || async {
        (env.calls("GetSecretValue") >= baseline_reads + 2).then_some(())
    })
    .await;
    assert_eq!(
        env.secrets()
            .get("app")
            .await
            .unwrap()
            .metadata
            .resource_version,
        secret_rv,
        "Secret rewritten"
    );
    assert_eq!(
        env.managed_secrets()
            .get("app")
            .await
            .unwrap()
            .metadata
            .resource_version,
        ms_rv,
        "status rewritten"
    );

    env.put_kms_value("app", "v2", "second", None).await;
    wait_for("v2 through periodic refresh", 60, || async {
        env.secret_data("app")
            .await
            .filter(|d| d["value"] == "second")
    })
    .await;
}

#[tokio::test]
async fn pinned_version_previous_stage_binary_value_and_extract() {
    let env = SyncEnv::start("sync-shapes").await;
    env.create_kms_secret("cfg", "v1", r#"{"host":"db1","port":5432}"#)
        .await;
    env.put_kms_value("cfg", "v2", r#"{"host":"db2","port":5433}"#, None)
        .await;
    let binary = [0u8, 255, 128, 10, 13, 1];
    use base64::Engine as _;
    let request = CreateSecretRequest {
        secret_name: "blob".into(),
        version_id: "b1".into(),
        secret_data: SecretString::new(base64::engine::general_purpose::STANDARD.encode(binary)),
        secret_data_type: Some("binary".into()),
        ..CreateSecretRequest::default()
    };
    env.kms
        .create_secret(&request)
        .await
        .expect("binary secret");

    env.apply_managed_secret("pinned", "cfg", json!({"versionId": "v1"}))
        .await;
    env.apply_managed_secret(
        "previous",
        "cfg",
        json!({"versionStage": "ACSPrevious", "data": [{"key": "host", "property": "host"}]}),
    )
    .await;
    env.apply_managed_secret("extract", "cfg", json!({"dataFrom": {"extract": true}}))
        .await;
    env.apply_managed_secret("binary", "blob", json!({})).await;
    env.apply_managed_secret(
        "missing-prop",
        "cfg",
        json!({"data": [{"key": "user", "property": "user"}]}),
    )
    .await;
    for name in ["pinned", "previous", "extract", "binary"] {
        wait_ready(&env, name, "True", "Synced").await;
    }
    assert_eq!(
        env.secret_data("pinned").await.unwrap(),
        map(&[("value", r#"{"host":"db1","port":5432}"#)])
    );
    assert_eq!(
        env.secret_data("previous").await.unwrap(),
        map(&[("host", "db1")])
    );
    assert_eq!(
        env.secret_data("extract").await.unwrap(),
        map(&[("host", "db2"), ("port", "5433")])
    );
    let blob = env.secrets().get("binary").await.unwrap().data.unwrap();
    assert_eq!(blob["value"].0, binary.to_vec());
    wait_ready(&env, "missing-prop", "False", "PropertyNotFound").await;
    assert!(
        env.secret_data("missing-prop").await.is_none(),
        "a failed render must not create the Secret"
    );
}

#[tokio::test]
async fn kms_failures_leave_the_secret_byte_for_byte_and_recovery_follows() {
    let env = SyncEnv::start("sync-faults").await;
    env.create_kms_secret("db", "v1", r#"{"pwd":"keep-me"}"#)
        .await;
    env.apply_managed_secret(
        "db",
        "db",
        json!({"data": [{"key": "pwd", "property": "pwd"}]}),
    )
    .await;
    wait_ready(&env, "db", "True", "Synced").await;
    let before = env.secrets().get("db").await.unwrap();

    let faults = [
        ("InternalFailure", 500, "KmsUnavailable"),
        ("Forbidden.NoPermission", 403, "AccessDenied"),
        ("Rejected.Throttling", 429, "Throttled"),
    ];
    for (code, status, reason) in faults {
        env.emulator.set_faults(FaultConfig {
            errors: vec![ErrorRule {
                action: "GetSecretValue".into(),
                rate: 1.0,
                code: code.into(),
                status,
                message: None,
            }],
            ..FaultConfig::default()
        });
        env.force_sync("db").await;
        wait_ready(&env, "db", "False", reason).await;
        let after = env.secrets().get("db").await.unwrap();
        assert_eq!(after.data, before.data, "{code}: data changed");
        assert_eq!(
            after.metadata.resource_version, before.metadata.resource_version,
            "{code}: Secret written"
        );
        let message = env
            .managed_secrets()
            .get("db")
            .await
            .unwrap()
            .status
            .unwrap()
            .conditions[0]
            .message
            .clone();
        assert!(
            !message.to_lowercase().contains("requestid"),
            "request ids churn conditions: {message}"
        );
    }
    env.emulator.set_faults(FaultConfig::default());
    env.force_sync("db").await;
    wait_ready(&env, "db", "True", "Synced").await;

    let delete = DeleteSecretRequest {
        secret_name: "db".into(),
        recovery_window_in_days: None,
        force_delete_without_recovery: Some(true),
    };
    env.kms
        .delete_secret(&delete)
        .await
        .expect("delete upstream");
    env.force_sync("db").await;
    wait_ready(&env, "db", "False", "SecretNotFound").await;
    let after = env.secrets().get("db").await.unwrap();
    assert_eq!(
        after.data, before.data,
        "upstream deletion must not empty the Secret"
    );
}

#[tokio::test]
async fn a_foreign_secret_is_never_taken_over_without_adopt_or_merge() {
    let env = SyncEnv::start("sync-foreign").await;
    env.create_kms_secret("token", "v1", r#"{"token":"t1"}"#)
        .await;
    env.apply(
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "shared"},
        "stringData": {"theirs": "keep", "token": "old"}}),
    )
    .await;
    env.apply_managed_secret(
        "owner",
        "token",
        json!({"target": {"name": "shared"},
        "data": [{"key": "token", "property": "token"}]}),
    )
    .await;
    wait_ready(&env, "owner", "False", "TargetConflict").await;
    assert_eq!(
        env.secret_data("shared").await.unwrap(),
        map(&[("theirs", "keep"), ("token", "old")])
    );

    env.apply_managed_secret(
        "owner",
        "token",
        json!({"target": {"name": "shared", "creationPolicy": "Merge"},
        "data": [{"key": "token", "property": "token"}]}),
    )
    .await;
    wait_ready(&env, "owner", "True", "Synced").await;
    assert_eq!(
        env.secret_data("shared").await.unwrap(),
        map(&[("theirs", "keep"), ("token", "t1")])
    );

    // A second ManagedSecret may not write the same Secret, whatever its policy.
    env.apply_managed_secret(
        "intruder",
        "token",
        json!({"target": {"name": "shared", "creationPolicy": "Adopt"}}),
    )
    .await;
    wait_ready(&env, "intruder", "False", "TargetConflict").await;
    assert_eq!(
        env.secret_data("shared").await.unwrap(),
        map(&[("theirs", "keep"), ("token", "t1")])
    );
}

#[tokio::test]
async fn deletion_retains_by_default_and_deletes_only_when_asked() {
    let env = SyncEnv::start("sync-delete").await;
    env.create_kms_secret("s", "v1", "x").await;
    env.apply_managed_secret("retained", "s", json!({})).await;
    env.apply_managed_secret(
        "deleted",
        "s",
        json!({"target": {"deletionPolicy": "Delete"}}),
    )
    .await;
    wait_ready(&env, "retained", "True", "Synced").await;
    wait_ready(&env, "deleted", "True", "Synced").await;
    for name in ["retained", "deleted"] {
        env.managed_secrets()
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
    }
    wait_for("the Delete ManagedSecret to be gone", 60, || async {
        env.managed_secrets()
            .get_opt("deleted")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    assert!(
        env.secret_data("deleted").await.is_none(),
        "deletionPolicy Delete must remove the Secret"
    );
    assert!(
        env.managed_secrets()
            .get_opt("retained")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        env.secret_data("retained").await.unwrap(),
        map(&[("value", "x")])
    );
}

#[tokio::test]
async fn drift_is_repaired_and_a_deleted_secret_comes_back() {
    let env = SyncEnv::start("sync-drift").await;
    env.create_kms_secret("s", "v1", "truth").await;
    env.apply_managed_secret("app", "s", json!({})).await;
    wait_ready(&env, "app", "True", "Synced").await;
    let patch = json!({"data": {"value": "ZWRpdGVk"}});
    env.secrets()
        .patch(
            "app",
            &PatchParams::apply("someone-else").force(),
            &Patch::Apply(&json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "app"}, "data": patch["data"]})),
        )
        .await
        .unwrap();
    wait_for("drift repaired", 60, || async {
        env.secret_data("app")
            .await
            .filter(|d| d["value"] == "truth")
    })
    .await;
    let reasons: Vec<String> = events(&env)
        .await
        .into_iter()
        .filter_map(|e| e.reason)
        .collect();
    assert!(
        reasons.contains(&"DriftRepaired".to_string()),
        "{reasons:?}"
    );

    env.secrets()
        .delete("app", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("Secret recreated", 60, || async {
        env.secret_data("app")
            .await
            .filter(|d| d["value"] == "truth")
    })
    .await;
}

/// Keys of one of the Secret's string maps (labels or annotations).
fn keys_of(map: Option<BTreeMap<String, String>>) -> Vec<String> {
    map.unwrap_or_default().into_keys().collect()
}

#[tokio::test]
async fn keys_labels_and_annotations_dropped_from_the_spec_leave_the_secret() {
    let env = SyncEnv::start("sync-exact").await;
    env.create_kms_secret("db_cred", "v1", r#"{"uname":"alice","pwd":"p1"}"#)
        .await;
    env.put_kms_value("db_cred", "v2", r#"{"uname":"alice","pwd":"p2"}"#, None)
        .await;
    let spec = |previous: bool, labels: Value, annotations: Value| {
        let mut data = vec![
            json!({"key": "username", "property": "uname"}),
            json!({"key": "password", "property": "pwd"}),
        ];
        if previous {
            data.push(json!({"key": "password-previous", "property": "pwd", "versionStage": "ACSPrevious"}));
        }
        json!({"data": data, "target": {"labels": labels, "annotations": annotations}})
    };
    env.apply_managed_secret(
        "db",
        "db_cred",
        spec(
            true,
            json!({"team": "payments", "tier": "db"}),
            json!({"contact": "dba", "note": "rotated monthly"}),
        ),
    )
    .await;
    wait_ready(&env, "db", "True", "Synced").await;
    assert_eq!(
        env.secret_data("db").await.unwrap(),
        map(&[
            ("username", "alice"),
            ("password", "p2"),
            ("password-previous", "p1")
        ])
    );
    // Another manager's key and label: the removals below must not take them along.
    env.secrets()
        .patch(
            "db",
            &PatchParams::apply("someone-else"),
            &Patch::Apply(&json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "db", "labels": {"app": "web"}}, "data": {"theirs": "a2VlcA=="}})),
        )
        .await
        .unwrap();

    // No KMS change from here on: only the spec drops a key, a label and an annotation.
    env.apply_managed_secret(
        "db",
        "db_cred",
        spec(
            false,
            json!({"team": "payments"}),
            json!({"contact": "dba"}),
        ),
    )
    .await;
    let secret = wait_for(
        "the dropped key, label and annotation to go",
        60,
        || async {
            let secret = env.secrets().get("db").await.ok()?;
            let data = secret.data.as_ref()?;
            let labels = secret.metadata.labels.as_ref()?;
            let annotations = secret.metadata.annotations.as_ref()?;
            (!data.contains_key("password-previous")
                && !labels.contains_key("tier")
                && !annotations.contains_key("note"))
            .then_some(secret)
        },
    )
    .await;
    println!("exactness: removed key 'password-previous' gone from Secret db");
    println!("exactness: removed label 'tier' and annotation 'note' gone from Secret db");
    assert_eq!(
        env.secret_data("db").await.unwrap(),
        map(&[
            ("username", "alice"),
            ("password", "p2"),
            ("theirs", "keep")
        ])
    );
    assert_eq!(
        keys_of(secret.metadata.labels),
        ["app", "kmsync.io/managed", "team"]
    );
    let annotations = secret.metadata.annotations.unwrap();
    assert_eq!(annotations["contact"], "dba");
    assert_eq!(annotations["kmsync.io/kms-version-id"], "v2");
}

#[tokio::test]
async fn switching_delete_to_retain_removes_the_owner_reference() {
    let env = SyncEnv::start("sync-retain-switch").await;
    env.create_kms_secret("s", "v1", "x").await;
    env.apply_managed_secret("app", "s", json!({"target": {"deletionPolicy": "Delete"}}))
        .await;
    wait_ready(&env, "app", "True", "Synced").await;
    let uid = env.managed_secrets().get("app").await.unwrap().metadata.uid;
    let owners = env
        .secrets()
        .get("app")
        .await
        .unwrap()
        .metadata
        .owner_references
        .unwrap_or_default();
    assert_eq!(
        owners.iter().map(|o| Some(&o.uid)).collect::<Vec<_>>(),
        [uid.as_ref()],
        "Delete sets our ownerReference"
    );

    // No KMS change: only the policy. A garbage collector would otherwise delete the kept Secret.
    env.apply_managed_secret("app", "s", json!({"target": {"deletionPolicy": "Retain"}}))
        .await;
    wait_for("the ownerReference to go", 60, || async {
        let secret = env.secrets().get("app").await.ok()?;
        secret
            .metadata
            .owner_references
            .unwrap_or_default()
            .is_empty()
            .then_some(())
    })
    .await;
    println!("retain-switch: ownerReference removed from Secret app");
    assert_eq!(
        env.secret_data("app").await.unwrap(),
        map(&[("value", "x")])
    );
    env.managed_secrets()
        .delete("app", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("the Retain ManagedSecret to be gone", 60, || async {
        env.managed_secrets()
            .get_opt("app")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    assert_eq!(
        env.secret_data("app").await.unwrap(),
        map(&[("value", "x")])
    );
}

#[tokio::test]
async fn readers_of_one_secret_share_one_kms_read() {
    let env = SyncEnv::start("sync-coalesce").await;
    env.create_kms_secret("shared", "v1", "same").await;
    let before = env.calls("GetSecretValue");
    for i in 0..5 {
        env.apply_managed_secret(&format!("reader-{i}"), "shared", json!({}))
            .await;
    }
    for i in 0..5 {
        wait_ready(&env, &format!("reader-{i}"), "True", "Synced").await;
    }
    assert_eq!(
        env.calls("GetSecretValue") - before,
        1,
        "five readers of one secret, one KMS read"
    );
}

#[tokio::test]
async fn canary_values_never_leak_into_logs_events_status_or_metrics() {
    let canary = "canary-6c1d2b-must-not-leak";
    let env = SyncEnv::start_with_log_level("sync-canary", "trace").await;
    env.create_kms_secret("c", "v1", &format!(r#"{{"pwd":"{canary}"}}"#))
        .await;
    env.apply_managed_secret(
        "ok",
        "c",
        json!({"data": [{"key": "pwd", "property": "pwd"}]}),
    )
    .await;
    env.apply_managed_secret(
        "bad-prop",
        "c",
        json!({"data": [{"key": "x", "property": "nope"}]}),
    )
    .await;
    env.apply_managed_secret("not-json", "c", json!({"versionStage": "ACSCurrent", "dataFrom": {"extract": true}, "data": [{"key": "k", "property": "pwd.deeper"}]})).await;
    wait_ready(&env, "ok", "True", "Synced").await;
    wait_ready(&env, "bad-prop", "False", "PropertyNotFound").await;
    env.emulator.set_faults(FaultConfig {
        errors: vec![ErrorRule {
            action: "GetSecretValue".into(),
            rate: 1.0,
            code: "Forbidden.NoPermission".into(),
            status: 403,
            message: None,
        }],
        ..FaultConfig::default()
    });
    env.force_sync("ok").await;
    wait_ready(&env, "ok", "False", "AccessDenied").await;
    assert_eq!(
        env.secret_data("ok").await.unwrap()["pwd"],
        canary,
        "the value itself did sync"
    );

    let credential = support::sync::ACCESS_KEY_SECRET;
    let logs = env.operator().logs();
    assert!(logs.len() > 1000, "trace logs were captured");
    let events = serde_json::to_string(&events(&env).await).unwrap();
    let statuses = serde_json::to_string(
        &env.managed_secrets()
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .map(|m| &m.status)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let metrics = env.operator().metrics().await;
    for (place, text) in [
        ("logs", &logs),
        ("events", &events),
        ("status", &statuses),
        ("metrics", &metrics),
    ] {
        assert!(!text.contains(canary), "secret value leaked into {place}");
        assert!(!text.contains(credential), "credential leaked into {place}");
    }
    assert!(metrics.contains("kmsync_reconciles_total"), "{metrics}");
}

#[tokio::test]
async fn consumers_roll_exactly_once_per_data_change() {
    use k8s_openapi::api::apps::v1::Deployment;
    let mut env = SyncEnv::start("sync-rollout").await;
    let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), &env.namespace);
    let deployment: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "api"},
        "spec": {"selector": {"matchLabels": {"app": "api"}},
                 "template": {"metadata": {"labels": {"app": "api"}},
                              "spec": {"containers": [{"name": "api", "image": "example.invalid/api:1"}]}}}}))
    .unwrap();
    deployments
        .create(&Default::default(), &deployment)
        .await
        .unwrap();
    let rolled = |d: &Deployment| {
        d.spec
            .as_ref()?
            .template
            .metadata
            .as_ref()?
            .annotations
            .as_ref()?
            .get("kmsync.io/rollout-db")
            .cloned()
    };

    env.create_kms_secret("db", "v1", "one").await;
    env.apply_managed_secret(
        "db",
        "db",
        json!({"rolloutRestart": [
        {"kind": "Deployment", "name": "api"}, {"kind": "StatefulSet", "name": "missing"}]}),
    )
    .await;
    wait_ready(&env, "db", "True", "Synced").await;
    let status = env
        .managed_secrets()
        .get("db")
        .await
        .unwrap()
        .status
        .unwrap();
    assert_eq!(status.consumers_revision.as_deref(), Some("ACSCurrent=v1"));
    let api = deployments.get("api").await.unwrap();
    assert_eq!(
        (api.metadata.generation, rolled(&api)),
        (Some(1), None),
        "first sync restarts nobody"
    );

    env.force_sync_and_wait("db").await;
    assert_eq!(
        deployments.get("api").await.unwrap().metadata.generation,
        Some(1),
        "no-op sync restarts nobody"
    );

    env.put_kms_value("db", "v2", "two", None).await;
    env.force_sync("db").await;
    let api = wait_for("the rollout for v2", 60, || async {
        deployments
            .get("api")
            .await
            .ok()
            .filter(|d| rolled(d).as_deref() == Some("ACSCurrent=v2"))
    })
    .await;
    assert_eq!(api.metadata.generation, Some(2));

    env.restart_operator();
    env.force_sync_and_wait("db").await;
    env.force_sync_and_wait("db").await;
    assert_eq!(
        deployments.get("api").await.unwrap().metadata.generation,
        Some(2),
        "restart must not roll again"
    );
    let reasons: Vec<String> = events(&env)
        .await
        .into_iter()
        .filter_map(|e| e.reason)
        .collect();
    assert_eq!(
        reasons.iter().filter(|r| *r == "RolloutRestarted").count(),
        1,
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r == "RolloutTargetNotFound"),
        "{reasons:?}"
    );
}

#[tokio::test]
async fn an_operator_watches_exactly_the_namespaces_it_is_given() {
    let mut env = SyncEnv::without_operator("sync-scope").await;
    let second = support::fresh_namespace(&env.client, "sync-scope-b").await;
    let outside = support::fresh_namespace(&env.client, "sync-scope-out").await;
    env.add_store_in(&second).await;
    env.add_store_in(&outside).await;
    env.create_kms_secret("s", "v1", "x").await;
    let managed = |name: &str| {
        json!({"apiVersion": "kmsync.io/v1alpha1", "kind": "ManagedSecret",
        "metadata": {"name": name}, "spec": {"storeRef": {"name": "kms"}, "secretName": "s"}})
    };
    env.apply(managed("here")).await;
    env.apply_in(&second, managed("there")).await;
    env.apply_in(&outside, managed("elsewhere")).await;
    env.operator = Some(support::sync::Operator::start_with(
        &env.namespace,
        "info",
        &["--namespace", &second],
    ));

    wait_ready(&env, "here", "True", "Synced").await;
    let there: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(env.client.clone(), &second);
    wait_for("the Secret in the second namespace", 60, || async {
        there.get_opt("there").await.unwrap()
    })
    .await;
    env.force_sync_and_wait("here").await;
    let elsewhere: Api<kmsync::crd::ManagedSecret> = Api::namespaced(env.client.clone(), &outside);
    assert!(
        elsewhere.get("elsewhere").await.unwrap().status.is_none(),
        "a namespace not listed was reconciled"
    );
    let outside_secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(env.client.clone(), &outside);
    assert!(
        outside_secrets
            .get_opt("elsewhere")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn per_tenant_rrsa_exchanges_a_service_account_token_for_sts_credentials() {
    use k8s_openapi::api::core::v1::ServiceAccount;
    let env = SyncEnv::start("sync-rrsa").await;
    let accounts: Api<ServiceAccount> = Api::namespaced(env.client.clone(), &env.namespace);
    let account: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "tenant"}})).unwrap();
    accounts
        .create(&Default::default(), &account)
        .await
        .unwrap();
    let rrsa_store = |name: &str, account: &str| {
        json!({"apiVersion": "kmsync.io/v1alpha1", "kind": "SecretStore",
        "metadata": {"name": name},
        "spec": {"regionId": "cn-hangzhou", "endpoint": env.emulator.base_url(),
                 "auth": {"rrsa": {"roleArn": "acs:ram::1234567890:role/tenant-reader",
                                    "oidcProviderArn": "acs:ram::1234567890:oidc-provider/ack-rrsa",
                                    "serviceAccountRef": {"name": account}}}}})
    };
    env.apply(rrsa_store("rrsa", "tenant")).await;
    env.apply(rrsa_store("rrsa-missing", "nobody")).await;
    env.create_kms_secret("tenant-secret", "v1", "for-the-tenant")
        .await;
    env.apply_managed_secret(
        "via-rrsa",
        "tenant-secret",
        json!({"storeRef": {"name": "rrsa"}}),
    )
    .await;
    env.apply_managed_secret(
        "via-missing",
        "tenant-secret",
        json!({"storeRef": {"name": "rrsa-missing"}}),
    )
    .await;

    wait_ready(&env, "via-rrsa", "True", "Synced").await;
    assert_eq!(
        env.secret_data("via-rrsa").await.unwrap(),
        map(&[("value", "for-the-tenant")])
    );
    assert!(
        env.calls("AssumeRoleWithOIDC") >= 1,
        "the token was exchanged at STS"
    );
    wait_for(
        "the store to report its missing ServiceAccount",
        60,
        || async {
            let store: SecretStore = Api::namespaced(env.client.clone(), &env.namespace)
                .get("rrsa-missing")
                .await
                .ok()?;
            let ready = store
                .status?
                .conditions
                .into_iter()
                .find(|c| c.type_ == "Ready")?;
            (ready.reason == "InvalidCredentials").then_some(())
        },
    )
    .await;
    // Its readers wait for the store and say why.
    wait_ready(&env, "via-missing", "False", "StoreNotReady").await;
    let status = env
        .managed_secrets()
        .get("via-missing")
        .await
        .unwrap()
        .status
        .unwrap();
    let message = &status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap()
        .message;
    assert!(
        message.contains("ServiceAccount") && message.contains("nobody"),
        "{message}"
    );
    assert!(env.secret_data("via-missing").await.is_none());
}

#[tokio::test]
async fn metrics_describe_the_work_and_forget_deleted_objects() {
    use k8s_openapi::api::apps::v1::Deployment;
    let env = SyncEnv::start("sync-metrics").await;
    let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), &env.namespace);
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "api"},
        "spec": {"selector": {"matchLabels": {"app": "api"}},
                 "template": {"metadata": {"labels": {"app": "api"}},
                              "spec": {"containers": [{"name": "api", "image": "example.invalid/api:1"}]}}}}))
    .unwrap();
    deployments
        .create(&Default::default(), &deployment)
        .await
        .unwrap();
    env.create_kms_secret("m", "v1", "x").await;
    env.apply_managed_secret(
        "watched",
        "m",
        json!({"rolloutRestart": [{"kind": "Deployment", "name": "api"}]}),
    )
    .await;
    env.apply_managed_secret("broken", "missing-secret", json!({}))
        .await;
    wait_ready(&env, "watched", "True", "Synced").await;
    wait_ready(&env, "broken", "False", "SecretNotFound").await;
    env.put_kms_value("m", "v2", "y", None).await;
    env.force_sync("watched").await;
    wait_for("the rollout", 60, || async {
        let d = deployments.get("api").await.ok()?;
        (d.metadata.generation == Some(2)).then_some(())
    })
    .await;

    let ns = &env.namespace;
    // The apiserver shows the rollout a moment before the operator's patch call returns and counts it.
    let text = wait_for("the restart to be counted", 60, || async {
        let text = env.operator().metrics().await;
        text.contains(r#"kmsync_consumer_restarts_total{kind="Deployment"} 1"#)
            .then_some(text)
    })
    .await;
    for expected in [
        r#"kmsync_reconciles_total{outcome="success",reason="Synced"}"#.to_string(),
        r#"kmsync_reconciles_total{outcome="failure",reason="SecretNotFound"}"#.to_string(),
        "kmsync_reconcile_duration_seconds_count".to_string(),
        r#"kmsync_kms_calls_total{action="GetSecretValue",outcome="Success"}"#.to_string(),
        r#"kmsync_kms_calls_total{action="GetSecretValue",outcome="SecretNotFound"}"#.to_string(),
        r#"kmsync_kms_calls_total{action="ListSecrets",outcome="Success"}"#.to_string(),
        r#"kmsync_kms_call_duration_seconds_count{action="GetSecretValue"}"#.to_string(),
        r#"kmsync_consumer_restarts_total{kind="Deployment"} 1"#.to_string(),
        format!(
            r#"kmsync_last_successful_sync_timestamp_seconds{{namespace="{ns}",name="watched"}}"#
        ),
        format!(r#"kmsync_synced_version_age_seconds{{namespace="{ns}",name="watched"}}"#),
    ] {
        assert!(text.contains(&expected), "missing {expected} in\n{text}");
    }
    assert!(
        !text.contains(r#"name="broken""#),
        "no success series for an object that never synced"
    );

    env.managed_secrets()
        .delete("watched", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("the per-object series to go", 60, || async {
        let text = env.operator().metrics().await;
        (!text.contains(r#"name="watched""#)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_least_privilege_policy_without_list_permission_still_syncs() {
    let mut env = SyncEnv::without_operator("sync-least-privilege").await;
    env.emulator.set_faults(FaultConfig {
        errors: vec![ErrorRule {
            action: "ListSecrets".into(),
            rate: 1.0,
            code: "Forbidden.NoPermission".into(),
            status: 403,
            message: None,
        }],
        ..FaultConfig::default()
    });
    env.create_kms_secret("db", "v1", "x").await;
    env.apply_managed_secret("db", "db", json!({})).await;
    env.operator = Some(support::sync::Operator::start(&env.namespace, "info"));
    wait_ready(&env, "db", "True", "Synced").await;
    let store: SecretStore = wait_for("the store check", 60, || async {
        let store: SecretStore = Api::namespaced(env.client.clone(), &env.namespace)
            .get("kms")
            .await
            .ok()?;
        store
            .status
            .as_ref()?
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready")
            .then_some(store)
    })
    .await;
    let ready = store
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("True", "Valid")
    );
    assert!(
        ready.message.contains("ListSecrets is not permitted"),
        "{}",
        ready.message
    );
    assert!(
        env.calls("ListSecrets") >= 1,
        "the check did call ListSecrets"
    );
}
