//! Leak canaries, end to end: unique values in KMS secret data, in the store's credentials, in the
//! database's admin and role passwords, and every password the operator generates, are driven
//! through syncs, extraction, both rotation strategies (webhook and PostgreSQL), every fault class
//! of the emulator (error codes and spoiled answers, rotations attempted under them) and an
//! operator restart, with the operator logging at `trace`. The operator's logs, the events, the
//! status of every object, `/metrics` and the kubectl plugin's output must hold none of them.
#![cfg(feature = "integration")]

mod support;

use k8s_openapi::api::events::v1::Event;
use kmsync::emulator::{ErrorRule, FaultConfig, Mutation, MutationRule};
use kmsync::kms::actions::GetSecretValueRequest;
use kube::api::{Api, DynamicObject, ListParams};
use serde_json::{Value, json};
use support::kubectl_kmsync;
use support::rotation::{annotate, create_role, mtls_hook, pg_env, versions, wait_rotation};
use support::sync::{ACCESS_KEY_SECRET, SyncEnv, wait_for};

const TEMPLATE: &str = r#"{"uname":"{{ current.uname }}","pwd":"{{ password }}"}"#;
/// Every object that reads KMS in this test.
const OBJECTS: [&str; 5] = ["plain", "whole", "imm", "staged", "pg"];

/// A fault to apply to every action: an error code, or a spoiled answer.
fn fault_classes() -> Vec<(String, FaultConfig)> {
    let mut classes = Vec::new();
    for (code, status) in [
        ("Forbidden.NoPermission", 403),
        ("Forbidden.ResourceNotFound", 404),
        ("Throttling", 429),
        ("InternalFailure", 500),
        ("InvalidAccessKeyId.NotFound", 404),
        ("Rejected.Throttling", 503),
    ] {
        let errors = vec![ErrorRule {
            action: "*".into(),
            rate: 1.0,
            code: code.into(),
            status,
            message: None,
        }];
        classes.push((
            code.to_string(),
            FaultConfig {
                errors,
                ..FaultConfig::default()
            },
        ));
    }
    for kind in Mutation::ALL {
        let mutations = vec![MutationRule {
            action: "*".into(),
            rate: 1.0,
            kind,
            key: None,
        }];
        classes.push((
            format!("{kind:?}"),
            FaultConfig {
                mutations,
                ..FaultConfig::default()
            },
        ));
    }
    classes
}

fn ready_condition(object: &kmsync::crd::ManagedSecret) -> Option<(String, String)> {
    let condition = object
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")?;
    Some((condition.status.clone(), condition.reason.clone()))
}

/// Forces a sync of `name` and waits until the operator acted on it: the forced value recorded
/// (success) or a False Ready condition (failure; the object was Ready before the fault).
async fn force_and_wait_outcome(env: &SyncEnv, name: &str) -> String {
    let value = env.force_sync(name).await;
    wait_for(&format!("{name} to act on a forced sync"), 90, || async {
        let object = env.managed_secrets().get(name).await.ok()?;
        let status = object.status.as_ref()?;
        let (ready, reason) = ready_condition(&object)?;
        if status.last_force_sync.as_deref() == Some(value.as_str()) || ready == "False" {
            Some(reason)
        } else {
            None
        }
    })
    .await
}

async fn wait_all_ready(env: &SyncEnv) {
    for name in OBJECTS {
        wait_for(&format!("{name} Ready again"), 120, || async {
            env.ready(name)
                .await
                .filter(|(s, r)| s == "True" && r == "Synced")
        })
        .await;
    }
}

/// Everything of the namespace a user or a log shipper could read, as text.
async fn observable_text(env: &SyncEnv) -> Vec<(String, String)> {
    let mut places = vec![("operator logs".to_string(), env.operator().logs())];
    let events = Api::<Event>::namespaced(env.client.clone(), &env.namespace)
        .list(&ListParams::default())
        .await
        .expect("list events")
        .items;
    places.push(("events".into(), serde_json::to_string(&events).unwrap()));
    for kind in ["ManagedSecret", "SecretStore"] {
        let resource = kube::api::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
            "kmsync.io",
            "v1alpha1",
            kind,
        ));
        let api: Api<DynamicObject> =
            Api::namespaced_with(env.client.clone(), &env.namespace, &resource);
        for object in api.list(&ListParams::default()).await.unwrap().items {
            let name = object.metadata.name.clone().unwrap_or_default();
            places.push((
                format!("{kind}/{name} status"),
                serde_json::to_string(&object.data["status"]).unwrap(),
            ));
        }
    }
    places.push(("/metrics".into(), env.operator().metrics().await));
    let ns = env.namespace.as_str();
    let mut plugin = vec![
        vec!["status", "-n", ns],
        vec!["status", "-n", ns, "-o", "json"],
    ];
    for name in OBJECTS {
        plugin.push(vec!["versions", name, "-n", ns]);
        plugin.push(vec!["versions", name, "-n", ns, "-o", "json"]);
    }
    for args in plugin {
        let output = kubectl_kmsync(&args);
        assert!(output.status.success(), "{}", support::describe(&output));
        places.push((
            format!("kubectl kmsync {}", args.join(" ")),
            format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        ));
    }
    places
}

// Multi-threaded: kubectl runs synchronously while the in-process emulator must keep serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canaries_never_leak_through_rotations_faults_restarts_or_the_plugin() {
    let tag = &uuid::Uuid::new_v4().simple().to_string()[..10];
    let mut canaries: Vec<(String, String)> = vec![
        ("store credential".into(), ACCESS_KEY_SECRET.into()),
        ("json value".into(), format!("canary-json-{tag}")),
        (
            "whole value".into(),
            format!("canary-whole-{tag} with spaces"),
        ),
        ("immediate seed".into(), format!("canary-imm-{tag}")),
        ("staged seed".into(), format!("canary-staged-{tag}")),
        ("database role".into(), format!("canary-role-{tag}")),
    ];
    // The webhook demands a client certificate (mutual TLS): its key is a canary too.
    let (webhook, webhook_ca, (client_cert, client_key)) = mtls_hook(true).await;
    canaries.push(("webhook signing key".into(), webhook.key.clone()));
    let key_line = client_key.lines().nth(1).expect("PEM body").to_string();
    canaries.push(("webhook client key".into(), key_line));
    let canary = |label: &str| {
        canaries
            .iter()
            .find(|(l, _)| l == label)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    let mut env = SyncEnv::start_with_log_level("leaks", "trace").await;
    let (host, port, admin, admin_password) = pg_env();
    let role = format!("leak_{tag}");
    create_role(&role, &canary("database role")).await;
    env.apply(
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "pg-admin"},
        "stringData": {"username": admin, "password": admin_password}}),
    )
    .await;
    env.apply(webhook.key_secret()).await;
    env.apply(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hook-client"},
        "type": "kubernetes.io/tls", "stringData": {"tls.crt": client_cert, "tls.key": client_key}}))
        .await;
    let mut register = webhook.register();
    register["webhook"]["caBundle"] = json!(webhook_ca);
    register["webhook"]["clientCertificateSecretRef"] = json!({"name": "hook-client"});

    let json_value = |user: &str, pwd: &str| format!(r#"{{"uname":"{user}","pwd":"{pwd}"}}"#);
    env.create_kms_secret("plain", "v1", &json_value("alice", &canary("json value")))
        .await;
    env.create_kms_secret("whole", "v1", &canary("whole value"))
        .await;
    env.create_kms_secret("imm", "v1", &json_value("bob", &canary("immediate seed")))
        .await;
    env.create_kms_secret("staged", "v1", &json_value("carol", &canary("staged seed")))
        .await;
    env.create_kms_secret("pg", "v1", &json_value(&role, &canary("database role")))
        .await;

    let mapping =
        json!([{"key": "username", "property": "uname"}, {"key": "password", "property": "pwd"}]);
    let rotation = |strategy: Value| {
        let mut rotation = json!({"interval": "720h",
            "generate": {"password": {"length": 24, "excludePunctuation": true}, "template": TEMPLATE}});
        for (k, v) in strategy.as_object().unwrap() {
            rotation[k] = v.clone();
        }
        rotation
    };
    env.apply_managed_secret(
        "plain",
        "plain",
        json!({"data": mapping, "dataFrom": {"extract": true}}),
    )
    .await;
    env.apply_managed_secret("whole", "whole", json!({})).await;
    env.apply_managed_secret(
        "imm",
        "imm",
        json!({"data": mapping, "rotation": rotation(json!({"strategy": "Immediate", "minInterval": "1s"}))}),
    )
    .await;
    env.apply_managed_secret(
        "staged",
        "staged",
        json!({"data": mapping,
        "rotation": rotation(json!({"strategy": "Staged", "register": register}))}),
    )
    .await;
    env.apply_managed_secret("pg", "pg", json!({"data": mapping,
        "rotation": rotation(json!({"strategy": "Staged",
            "register": {"postgres": {"host": host, "port": port, "sslMode": "disable", "adminSecretRef": {"name": "pg-admin"}}}}))}))
        .await;
    wait_all_ready(&env).await;
    assert_eq!(
        env.secret_data("whole").await.unwrap()["value"],
        canary("whole value"),
        "the values really synced (so the sweep below looks for values that were handled)"
    );

    // Every strategy rotates once on a clean line.
    for name in ["imm", "staged", "pg"] {
        annotate(&env, name, "kmsync.io/rotate", "clean").await;
    }
    for name in ["imm", "staged", "pg"] {
        wait_rotation(&env, name, "RotationSucceeded").await;
    }

    // Every fault class, with a sync of every object and a rotation attempted under it.
    let mut outcomes = Vec::new();
    for (round, (class, faults)) in fault_classes().into_iter().enumerate() {
        env.emulator.set_faults(faults);
        annotate(&env, "imm", "kmsync.io/rotate", &format!("fault-{round}")).await;
        for name in OBJECTS {
            outcomes.push((
                class.clone(),
                name,
                force_and_wait_outcome(&env, name).await,
            ));
        }
        env.emulator.set_faults(FaultConfig::default());
        for name in OBJECTS {
            env.force_sync(name).await;
        }
        wait_all_ready(&env).await;
    }
    assert!(
        outcomes.iter().any(|(_, _, reason)| reason != "Synced"),
        "the faults made syncs fail: {outcomes:?}"
    );

    // A restart replays everything from the apiserver and KMS.
    let logs_before_restart = env.operator().logs();
    env.restart_operator_with_log_level("trace");
    for name in OBJECTS {
        env.force_sync_and_wait(name).await;
    }

    // Every version KMS holds is a canary: the seeds and each generated password, promoted or
    // left behind by a rotation a fault interrupted.
    for name in OBJECTS {
        for (version_id, _) in versions(&env, name).await {
            let request = GetSecretValueRequest {
                secret_name: name.into(),
                version_id: Some(version_id.clone()),
                ..GetSecretValueRequest::default()
            };
            let value = env
                .kms
                .get_secret_value(&request)
                .await
                .expect("read a version");
            let text = value.secret_data.expose().to_string();
            let password = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["pwd"].as_str().map(str::to_string))
                .unwrap_or(text);
            if !canaries.iter().any(|(_, v)| *v == password) {
                canaries.push((format!("{name} version {version_id}"), password));
            }
        }
    }
    assert!(
        canaries.len() >= 9,
        "the seeds and at least three generated passwords: {}",
        canaries.len()
    );

    let mut places = observable_text(&env).await;
    places.push((
        "operator logs before the restart".into(),
        logs_before_restart,
    ));
    assert!(
        places[0].1.len() > 10_000,
        "trace logs were captured ({} bytes)",
        places[0].1.len()
    );
    // Positive control: the logs did cover the rotations whose passwords are looked for.
    let all_logs = format!("{}{}", places[0].1, places.last().unwrap().1);
    for (label, _) in &canaries {
        if let Some(version_id) = label.split(" version ").nth(1) {
            assert!(
                all_logs.contains(version_id),
                "the logs never mention {version_id}"
            );
        }
    }
    let mut hits = Vec::new();
    for (place, text) in &places {
        for (label, value) in &canaries {
            if text.contains(value.as_str()) {
                hits.push(format!("{label} in {place}"));
            }
        }
    }
    let checks = places.len() * canaries.len();
    println!(
        "leak sweep: {} canaries × {} places, {} fault classes, {} hits",
        canaries.len(),
        places.len(),
        fault_classes().len(),
        hits.len()
    );
    println!("SOAK canary_checks {checks}");
    println!("SOAK canary_hits {}", hits.len());
    assert!(hits.is_empty(), "secret values leaked: {hits:#?}");
}
