//! Rotation driven by the spec, end to end: the operator binary, the real apiserver and the KMS
//! emulator. Single-call and staged walkthroughs, a webhook that registers or refuses, manual
//! approval, bootstrap of a missing secret, outages mid-rotation, and a crash at every step
//! boundary ending in one of the two clean states.
#![cfg(feature = "integration")]

mod support;

use kmsync::emulator::{ErrorRule, FaultConfig};
use serde_json::{Value, json};
use support::rotation::{
    annotate, create_role, current, hook, https_hook, mtls_hook, pg_env, pg_login,
    postgres_rotation_start, rotation_condition, stages_of, versions, wait_rotation,
};
use support::sync::{Operator, SyncEnv, wait_for};

const TEMPLATE: &str = r#"{"uname":"{{ current.uname }}","pwd":"{{ password }}"}"#;

fn managed(strategy: Value) -> Value {
    let mut rotation = json!({"interval": "720h", "generate": {"password": {"length": 24, "excludePunctuation": true}, "template": TEMPLATE}});
    for (k, v) in strategy.as_object().unwrap() {
        rotation[k] = v.clone();
    }
    json!({"data": [{"key": "username", "property": "uname"}, {"key": "password", "property": "pwd"}], "rotation": rotation})
}

/// KMS `db_cred` v1 for alice, the ManagedSecret `db` with `spec`, and its first sync.
async fn first_sync(env: &SyncEnv, spec: Value) {
    env.create_kms_secret("db_cred", "v1", r#"{"uname":"alice","pwd":"first"}"#)
        .await;
    env.apply_managed_secret("db", "db_cred", spec).await;
    wait_for("first sync", 60, || async {
        env.secret_data("db")
            .await
            .filter(|d| d["password"] == "first")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_call_rotation_on_request_like_the_walkthrough() {
    let env = SyncEnv::start("rot-single").await;
    first_sync(&env, managed(json!({"strategy": "Immediate"}))).await;
    let ms = wait_rotation(&env, "db", "RotationScheduled").await;
    assert!(
        ms.status
            .unwrap()
            .rotation
            .unwrap()
            .next_rotation_time
            .is_some()
    );
    assert_eq!(
        versions(&env, "db_cred").await.len(),
        1,
        "no rotation without a trigger"
    );

    annotate(&env, "db", "kmsync.io/rotate", "now").await;
    let ms = wait_rotation(&env, "db", "RotationSucceeded").await;
    let all = versions(&env, "db_cred").await;
    let new = current(&all);
    assert!(new.starts_with("kmsync-r1-"), "{all:?}");
    assert_eq!(stages_of(&all, "v1"), ["ACSPrevious"]);
    assert_eq!(all.len(), 2);
    let data = wait_for("the Secret to follow", 60, || async {
        env.secret_data("db")
            .await
            .filter(|d| d["password"] != "first")
    })
    .await;
    assert_eq!(data["username"], "alice", "the template kept the user name");
    assert_eq!(data["password"].len(), 24);
    let rotation = ms.status.unwrap().rotation.unwrap();
    assert!(rotation.last_rotation_time.is_some() && rotation.pending_version_id.is_none());

    // The same annotation value does not rotate again.
    env.force_sync_and_wait("db").await;
    assert_eq!(versions(&env, "db_cred").await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staged_rotation_registers_verifies_and_promotes_through_a_webhook() {
    let env = SyncEnv::start("rot-staged").await;
    let hook = hook(true).await;
    env.apply(hook.key_secret()).await;
    first_sync(
        &env,
        managed(
            json!({"strategy": "Staged", "pendingStage": "MyPendingLabel",
        "register": hook.register()}),
        ),
    )
    .await;
    annotate(&env, "db", "kmsync.io/rotate", "1").await;
    wait_rotation(&env, "db", "RotationSucceeded").await;

    let all = versions(&env, "db_cred").await;
    let new = current(&all);
    assert_eq!(
        stages_of(&all, &new),
        ["ACSCurrent"],
        "the pending label was cleaned"
    );
    assert_eq!(stages_of(&all, "v1"), ["ACSPrevious"]);
    assert_eq!(hook.actions(), ["register", "verify"]);
    let calls = hook.calls.lock().unwrap().clone();
    assert!(calls.iter().all(|c| c["versionId"] == new.as_str()));
    let sent: Value = serde_json::from_str(calls[0]["value"].as_str().unwrap()).unwrap();
    let data = wait_for("the Secret to follow", 60, || async {
        env.secret_data("db")
            .await
            .filter(|d| d["password"] != "first")
    })
    .await;
    assert_eq!(
        sent["pwd"],
        data["password"].as_str(),
        "the registered credential is the one promoted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_registration_never_promotes_and_cleans_its_label() {
    let env = SyncEnv::start("rot-refused").await;
    let hook = hook(false).await;
    env.apply(hook.key_secret()).await;
    first_sync(
        &env,
        managed(json!({"strategy": "Staged", "register": hook.register()})),
    )
    .await;
    let before = env.secrets().get("db").await.unwrap();
    annotate(&env, "db", "kmsync.io/rotate", "1").await;
    let ms = wait_rotation(&env, "db", "RotationFailed").await;
    let (status, _, message) = rotation_condition(&ms).unwrap();
    assert_eq!(status, "False");
    assert!(message.contains("register"), "{message}");
    let ms = wait_for("the pending label to be dropped", 60, || async {
        let ms = env.managed_secrets().get("db").await.ok()?;
        ms.status
            .as_ref()?
            .rotation
            .as_ref()?
            .pending_version_id
            .is_none()
            .then_some(ms)
    })
    .await;
    assert_eq!(
        ms.status.unwrap().rotation.unwrap().failed_step.as_deref(),
        Some("register")
    );
    let all = versions(&env, "db_cred").await;
    assert_eq!(current(&all), "v1", "ACSCurrent untouched");
    assert!(
        all.iter()
            .all(|(_, s)| !s.iter().any(|x| x == "KmsyncPending")),
        "{all:?}"
    );
    let after = env.secrets().get("db").await.unwrap();
    assert_eq!(after.data, before.data, "the Secret is untouched");
    assert_eq!(
        hook.calls.lock().unwrap().len(),
        1,
        "verify never ran after a refused register"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_approval_promotes_exactly_the_approved_version() {
    let env = SyncEnv::start("rot-manual").await;
    first_sync(
        &env,
        managed(json!({"strategy": "Staged", "register": {"manualApproval": {}}})),
    )
    .await;
    annotate(&env, "db", "kmsync.io/rotate", "1").await;
    let ms = wait_rotation(&env, "db", "AwaitingApproval").await;
    let pending = ms
        .status
        .unwrap()
        .rotation
        .unwrap()
        .pending_version_id
        .unwrap();
    let all = versions(&env, "db_cred").await;
    assert_eq!(current(&all), "v1");
    assert_eq!(stages_of(&all, &pending), ["KmsyncPending"]);
    annotate(&env, "db", "kmsync.io/approve", "some-other-version").await;
    env.force_sync_and_wait("db").await;
    assert_eq!(
        current(&versions(&env, "db_cred").await),
        "v1",
        "approving another version promotes nothing"
    );
    annotate(&env, "db", "kmsync.io/approve", &pending).await;
    wait_rotation(&env, "db", "RotationSucceeded").await;
    assert_eq!(current(&versions(&env, "db_cred").await), pending);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_secret_is_created_when_asked() {
    let env = SyncEnv::start("rot-create").await;
    env.apply_managed_secret("app", "fresh/app", json!({"rotation": {"interval": "720h", "createIfMissing": {"description": "made by kmsync", "tags": {"team": "core"}},
        "generate": {"template": "{\"pwd\":\"{{ password }}\"}"}}, "data": [{"key": "pwd", "property": "pwd"}]})).await;
    let data = wait_for("the generated value in the Secret", 60, || async {
        env.secret_data("app").await
    })
    .await;
    assert_eq!(data["pwd"].len(), 32, "default password length");
    let all = versions(&env, "fresh/app").await;
    assert_eq!(all.len(), 1);
    assert!(all[0].0.starts_with("kmsync-r1-") && all[0].1 == ["ACSCurrent"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_mid_rotation_recovers_without_burning_versions() {
    let env = SyncEnv::start("rot-outage").await;
    first_sync(&env, managed(json!({"strategy": "Immediate"}))).await;
    env.emulator.set_faults(FaultConfig {
        errors: vec![ErrorRule {
            action: "PutSecretValue".into(),
            rate: 1.0,
            code: "ServiceUnavailableTemporary".into(),
            status: 503,
            message: None,
        }],
        ..FaultConfig::default()
    });
    annotate(&env, "db", "kmsync.io/rotate", "1").await;
    wait_for("several failed puts", 90, || async {
        (env.calls("PutSecretValue") >= 8).then_some(())
    })
    .await;
    assert_eq!(
        versions(&env, "db_cred").await.len(),
        1,
        "failed puts create nothing"
    );
    let ms = env.managed_secrets().get("db").await.unwrap();
    let pending = ms
        .status
        .unwrap()
        .rotation
        .unwrap()
        .pending_version_id
        .expect("the attempt is still in flight");
    env.emulator.set_faults(FaultConfig::default());
    wait_rotation(&env, "db", "RotationSucceeded").await;
    let all = versions(&env, "db_cred").await;
    assert_eq!(
        current(&all),
        pending,
        "the retried put reused the attempt's version id"
    );
    assert_eq!(all.len(), 2);
}

/// The clean end states: old current with nothing pending, or new current with old previous.
fn assert_clean(all: &[(String, Vec<String>)], point: &str) {
    assert!(
        all.iter()
            .all(|(_, s)| !s.iter().any(|x| x == "KmsyncPending")),
        "{point}: dangling pending label {all:?}"
    );
    assert!(
        all.len() <= 2,
        "{point}: a second new version was created {all:?}"
    );
    let now = current(all);
    if now == "v1" {
        assert_eq!(
            all.iter().filter(|(_, s)| !s.is_empty()).count(),
            1,
            "{point}: {all:?}"
        );
    } else {
        assert_eq!(stages_of(all, "v1"), ["ACSPrevious"], "{point}: {all:?}");
        assert_eq!(stages_of(all, &now), ["ACSCurrent"], "{point}: {all:?}");
    }
}

/// What a crash case rotates, and through which register backend.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Setup {
    Immediate,
    StagedWebhook,
    StagedPostgres,
    /// `createIfMissing` bootstrapping a secret KMS does not have.
    CreateMissing,
    /// A webhook that refuses, so the rotation is aborted.
    RefusedWebhook,
}

/// The crash points of each path, exactly as `crash_point` names them in `src/rotation/driver.rs`
/// (`every_crash_point_in_the_driver_is_in_the_matrix` keeps the two in step).
const IMMEDIATE_POINTS: [&str; 3] = ["put:before", "put:after", "finish:before"];
const STAGED_POINTS: [&str; 11] = [
    "put:before",
    "put:after",
    "register:before",
    "register:after",
    "verify:before",
    "verify:after",
    "promote:before",
    "promote:after",
    "clean:before",
    "clean:after",
    "finish:before",
];
const CREATE_POINTS: [&str; 2] = ["create:before", "create:after"];
const ABORT_POINTS: [&str; 2] = ["abort:before", "abort:after"];

#[test]
fn every_crash_point_in_the_driver_is_in_the_matrix() {
    let source = std::fs::read_to_string(support::repo("src/rotation/driver.rs")).unwrap();
    let mut in_source = std::collections::BTreeSet::new();
    for part in source.split("crash_point(").skip(1) {
        // Call sites only: the argument is a string literal, possibly inside `&format!`.
        let Some(literal) = part
            .strip_prefix('"')
            .or_else(|| part.strip_prefix("&format!(\""))
        else {
            continue;
        };
        let name = &literal[..literal.find('"').expect("a closed string literal")];
        if name == "{step_name}:before" || name == "{step_name}:after" {
            // The register and verify steps share one call site.
            for step in ["register", "verify"] {
                in_source.insert(name.replace("{step_name}", step));
            }
        } else if name.contains(':') {
            in_source.insert(name.to_string());
        }
    }
    let covered: std::collections::BTreeSet<String> = IMMEDIATE_POINTS
        .iter()
        .chain(&STAGED_POINTS)
        .chain(&CREATE_POINTS)
        .chain(&ABORT_POINTS)
        .map(|p| p.to_string())
        .collect();
    assert!(in_source.len() >= 15, "parsed the driver: {in_source:?}");
    assert_eq!(
        in_source, covered,
        "the crash matrix must cover every point"
    );
}

/// Kills the operator at `point` during a rotation (or a bootstrap), restarts it, and checks the
/// end state: one of the two clean states, no dangling pending label, no second new version.
async fn crash_case(setup: Setup, point: &str) {
    let mut env = SyncEnv::without_operator(&format!("crash-{}", point.replace(':', "-"))).await;
    let hook = hook(setup != Setup::RefusedWebhook).await;
    let role = format!("crash_{}", &env.namespace[env.namespace.len() - 8..]);
    let first = if setup == Setup::StagedPostgres {
        format!("first-{}", uuid::Uuid::new_v4().simple())
    } else {
        "first".to_string()
    };
    env.apply(hook.key_secret()).await;
    let webhook = json!({"strategy": "Staged", "register": hook.register()});
    match setup {
        Setup::CreateMissing => {
            env.apply_managed_secret("db", "fresh/db", json!({"rotation": {"interval": "720h", "createIfMissing": {},
                "generate": {"template": "{\"pwd\":\"{{ password }}\"}"}}, "data": [{"key": "password", "property": "pwd"}]})).await;
        }
        Setup::StagedPostgres => {
            let register = postgres_rotation_start(&env, "db_cred", &role, &first).await;
            env.apply_managed_secret(
                "db",
                "db_cred",
                managed(json!({"strategy": "Staged", "register": register})),
            )
            .await;
        }
        Setup::Immediate | Setup::StagedWebhook | Setup::RefusedWebhook => {
            env.create_kms_secret("db_cred", "v1", r#"{"uname":"alice","pwd":"first"}"#)
                .await;
            let spec = match setup {
                Setup::Immediate => managed(json!({"strategy": "Immediate"})),
                _ => managed(webhook),
            };
            env.apply_managed_secret("db", "db_cred", spec).await;
        }
    }
    let mut crashing =
        Operator::start_with_env(&env.namespace, "info", &[], &[("KMSYNC_CRASH_AT", point)]);
    if setup != Setup::CreateMissing {
        wait_for("first sync", 60, || async {
            env.secret_data("db")
                .await
                .filter(|d| d["password"] == first)
        })
        .await;
        annotate(&env, "db", "kmsync.io/rotate", "1").await;
    }
    let exit = crashing
        .wait_exit(60)
        .unwrap_or_else(|| panic!("{point}: the operator never reached the crash point"));
    assert!(!exit.success(), "{point}: aborted");
    assert!(
        crashing
            .logs()
            .contains(&format!("crash point {point} reached")),
        "{point}"
    );
    drop(crashing);
    env.operator = Some(Operator::start(&env.namespace, "info"));

    if setup == Setup::CreateMissing {
        let data = wait_for(&format!("{point}: the bootstrapped Secret"), 60, || async {
            env.secret_data("db").await
        })
        .await;
        let all = versions(&env, "fresh/db").await;
        assert_eq!(all.len(), 1, "{point}: created once {all:?}");
        assert!(
            all[0].0.starts_with("kmsync-r1-") && all[0].1 == ["ACSCurrent"],
            "{point}: {all:?}"
        );
        assert_eq!(data["password"].len(), 32, "{point}");
        return;
    }
    if setup == Setup::RefusedWebhook {
        let ms = wait_for(&format!("{point}: the abort to finish"), 90, || async {
            let ms = env.managed_secrets().get("db").await.ok()?;
            let rotation = ms.status.as_ref()?.rotation.as_ref()?;
            (rotation.pending_version_id.is_none() && rotation.failed_step.is_some()).then_some(ms)
        })
        .await;
        assert_eq!(
            ms.status.unwrap().rotation.unwrap().failed_step.as_deref(),
            Some("register"),
            "{point}"
        );
        let all = versions(&env, "db_cred").await;
        assert_clean(&all, point);
        assert_eq!(current(&all), "v1", "{point}: nothing promoted");
        assert_eq!(
            env.secret_data("db").await.unwrap()["password"],
            "first",
            "{point}: the Secret is untouched"
        );
        return;
    }

    wait_rotation(&env, "db", "RotationSucceeded").await;
    let all = versions(&env, "db_cred").await;
    assert_clean(&all, point);
    let now = current(&all);
    assert_ne!(
        now, "v1",
        "{point}: the rotation completed after the restart"
    );
    let expected: Value = serde_json::from_str(&{
        let read = env
            .kms
            .get_secret_value(&kmsync::kms::actions::GetSecretValueRequest::current(
                "db_cred",
            ))
            .await
            .unwrap();
        read.secret_data.expose().to_string()
    })
    .unwrap();
    let new_password = expected["pwd"].as_str().unwrap();
    wait_for(
        &format!("{point}: the Secret to hold the new current"),
        60,
        || async {
            env.secret_data("db")
                .await
                .filter(|d| d["password"] == new_password)
        },
    )
    .await;
    match setup {
        Setup::StagedWebhook => {
            let registered: Vec<String> = hook
                .calls
                .lock()
                .unwrap()
                .iter()
                .map(|c| c["versionId"].as_str().unwrap().to_string())
                .collect();
            assert!(
                registered.iter().all(|v| *v == now),
                "{point}: only the promoted version was registered {registered:?}"
            );
        }
        Setup::StagedPostgres => {
            pg_login(&role, new_password)
                .await
                .unwrap_or_else(|e| panic!("{point}: the database takes the new password: {e}"));
            assert!(
                pg_login(&role, &first).await.is_err(),
                "{point}: the database refuses the old password"
            );
        }
        _ => {}
    }
}

/// Runs every point of `points` for `setup`, one after the other, and reports the count.
async fn crash_matrix(setup: Setup, points: &[&str]) {
    for point in points {
        crash_case(setup, point).await;
    }
    println!("{setup:?}: {} crash points, all clean", points.len());
    println!("SOAK crash_points {}", points.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_at_every_step_of_a_single_call_rotation() {
    crash_matrix(Setup::Immediate, &IMMEDIATE_POINTS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_at_every_step_of_a_staged_rotation() {
    crash_matrix(Setup::StagedWebhook, &STAGED_POINTS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_at_every_step_of_a_staged_postgres_rotation() {
    crash_matrix(Setup::StagedPostgres, &STAGED_POINTS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_while_creating_a_missing_secret() {
    crash_matrix(Setup::CreateMissing, &CREATE_POINTS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_while_aborting_a_refused_rotation() {
    crash_matrix(Setup::RefusedWebhook, &ABORT_POINTS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staged_rotation_with_postgres_like_the_walkthrough() {
    let env = SyncEnv::start("rot-pg").await;
    let role = format!("app_{}", &env.namespace[env.namespace.len() - 8..]);
    let first = format!("first-{}", uuid::Uuid::new_v4().simple());
    let register = postgres_rotation_start(&env, "db_cred", &role, &first).await;
    pg_login(&role, &first)
        .await
        .expect("the role logs in with its first password");
    env.apply_managed_secret(
        "db",
        "db_cred",
        managed(
            json!({"strategy": "Staged", "pendingStage": "MyPendingLabel", "register": register}),
        ),
    )
    .await;
    wait_for("first sync", 60, || async {
        env.secret_data("db")
            .await
            .filter(|d| d["password"] == first)
    })
    .await;

    annotate(&env, "db", "kmsync.io/rotate", "1").await;
    wait_rotation(&env, "db", "RotationSucceeded").await;
    let data = wait_for("the Secret to follow", 60, || async {
        env.secret_data("db")
            .await
            .filter(|d| d["password"] != first)
    })
    .await;
    assert_eq!(data["username"], role);
    pg_login(&role, &data["password"])
        .await
        .expect("the database accepts the new password");
    assert!(
        pg_login(&role, &first).await.is_err(),
        "the database rejects the old password"
    );
    let all = versions(&env, "db_cred").await;
    assert_eq!(stages_of(&all, "v1"), ["ACSPrevious"]);
    assert!(
        all.iter()
            .all(|(_, s)| !s.iter().any(|x| x == "MyPendingLabel"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_restart_once_per_promoted_version() {
    use k8s_openapi::api::apps::v1::Deployment;
    let env = SyncEnv::start("rot-consumers").await;
    let deployments: kube::Api<Deployment> =
        kube::Api::namespaced(env.client.clone(), &env.namespace);
    let deployment: Deployment = serde_json::from_value(json!({"metadata": {"name": "api"},
        "spec": {"selector": {"matchLabels": {"app": "api"}}, "template": {"metadata": {"labels": {"app": "api"}},
        "spec": {"containers": [{"name": "api", "image": "example.invalid/api:1"}]}}}})).unwrap();
    deployments
        .create(&Default::default(), &deployment)
        .await
        .unwrap();
    env.create_kms_secret("db_cred", "v1", r#"{"uname":"alice","pwd":"first"}"#)
        .await;
    let mut spec = managed(json!({"strategy": "Immediate", "minInterval": "1s"}));
    spec["rolloutRestart"] = json!([{"kind": "Deployment", "name": "api"}]);
    env.apply_managed_secret("db", "db_cred", spec).await;
    wait_for("first sync", 60, || async {
        env.secret_data("db")
            .await
            .filter(|d| d["password"] == "first")
    })
    .await;
    for round in 1..=2 {
        annotate(&env, "db", "kmsync.io/rotate", &round.to_string()).await;
        wait_for(&format!("rotation {round} delivered"), 90, || async {
            let d = deployments.get("api").await.ok()?;
            (d.metadata.generation == Some(1 + round)).then_some(())
        })
        .await;
    }
    env.force_sync_and_wait("db").await;
    assert_eq!(
        deployments.get("api").await.unwrap().metadata.generation,
        Some(3),
        "one restart per promoted version"
    );
    assert_eq!(versions(&env, "db_cred").await.len(), 3);
}

/// `examples/<file>` with the demo's emulator endpoint and database settings replaced.
fn example(file: &str, replacements: &[(&str, String)]) -> String {
    let mut text =
        std::fs::read_to_string(support::repo(&format!("examples/{file}"))).expect("example");
    for (from, to) in replacements {
        assert!(text.contains(from), "{file} has no {from:?}");
        text = text.replace(from, to);
    }
    text
}

fn kubectl_ok(args: &[&str], stdin: Option<&str>) {
    let output = support::kubectl(args, stdin);
    assert!(output.status.success(), "{}", support::describe(&output));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_walkthroughs_driven_only_by_kubectl_and_the_examples() {
    let env = SyncEnv::without_operator("rot-examples").await;
    let ns = env.namespace.clone();
    let endpoint = env.emulator.base_url();
    kubectl_ok(
        &["apply", "-n", &ns, "-f", "-"],
        Some(&example(
            "secretstore.yaml",
            &[
                ("http://127.0.0.1:18090", endpoint.clone()),
                (
                    "AccessKeyId: kmsync-demo",
                    format!("AccessKeyId: {}", support::sync::ACCESS_KEY_ID),
                ),
                (
                    "AccessKeySecret: kmsync-demo-secret",
                    format!("AccessKeySecret: {}", support::sync::ACCESS_KEY_SECRET),
                ),
            ],
        )),
    );

    // Single call: the example bootstraps app_cred, then a kubectl annotation rotates it.
    kubectl_ok(
        &["apply", "-n", &ns, "-f", "-"],
        Some(&example("rotation-immediate.yaml", &[])),
    );
    // Multi call against the test database: the role and its first password exist already.
    let (_, port, admin, admin_password) = pg_env();
    let role = format!("walk_{}", &ns[ns.len() - 8..]);
    let first = format!("first-{}", uuid::Uuid::new_v4().simple());
    create_role(&role, &first).await;
    env.create_kms_secret(
        "db_cred",
        "v1",
        &format!(r#"{{"uname":"{role}","pwd":"{first}"}}"#),
    )
    .await;
    kubectl_ok(
        &["apply", "-n", &ns, "-f", "-"],
        Some(&example(
            "rotation-staged-postgres.yaml",
            &[
                ("password: change-me", format!("password: {admin_password}")),
                ("username: kmsync_admin", format!("username: {admin}")),
                ("port: 5432", format!("port: {port}")),
            ],
        )),
    );
    let _operator = Operator::start(&ns, "info");

    wait_for("app_cred bootstrapped and synced", 60, || async {
        env.secret_data("app-cred")
            .await
            .filter(|d| d.contains_key("password"))
    })
    .await;
    wait_for("db_cred synced", 60, || async {
        env.secret_data("db-cred-rotated")
            .await
            .filter(|d| d["password"] == first)
    })
    .await;
    let bootstrap = env.secret_data("app-cred").await.unwrap()["password"].clone();

    kubectl_ok(
        &[
            "annotate",
            "-n",
            &ns,
            "managedsecret",
            "app-cred",
            "kmsync.io/rotate=walkthrough-1",
        ],
        None,
    );
    kubectl_ok(
        &[
            "annotate",
            "-n",
            &ns,
            "managedsecret",
            "db-cred-rotated",
            "kmsync.io/rotate=walkthrough-1",
        ],
        None,
    );
    wait_rotation(&env, "app-cred", "RotationSucceeded").await;
    let ms = wait_for("the staged rotation", 90, || async {
        let ms = env.managed_secrets().get("db-cred-rotated").await.ok()?;
        (rotation_condition(&ms)?.1 == "RotationSucceeded").then_some(ms)
    })
    .await;
    let rotation = ms.status.unwrap().rotation.unwrap();
    assert!(rotation.pending_version_id.is_none() && rotation.last_rotation_time.is_some());

    let app = versions(&env, "app_cred").await;
    assert_eq!(app.len(), 2);
    assert!(
        app.iter().any(|(_, s)| s == &["ACSPrevious"])
            && app.iter().any(|(_, s)| s == &["ACSCurrent"])
    );
    let db = versions(&env, "db_cred").await;
    assert_eq!(stages_of(&db, "v1"), ["ACSPrevious"]);
    assert!(
        db.iter()
            .all(|(_, s)| !s.iter().any(|x| x == "MyPendingLabel")),
        "{db:?}"
    );
    let app_data = wait_for("app-cred follows", 60, || async {
        env.secret_data("app-cred")
            .await
            .filter(|d| d["password"] != bootstrap)
    })
    .await;
    assert_eq!(app_data["password"].len(), 32);
    let db_data = wait_for("db-cred follows", 60, || async {
        env.secret_data("db-cred-rotated")
            .await
            .filter(|d| d["password"] != first)
    })
    .await;
    assert_eq!(db_data["password-previous"], first);
    pg_login(&role, &db_data["password"])
        .await
        .expect("the database accepts the new password");
    assert!(
        pg_login(&role, &first).await.is_err(),
        "the database rejects the old password"
    );
}

/// Found by the fault episodes (tests/k8s_faults.rs): a refused put was written again in a loop,
/// a dozen times per reconcile, instead of ending the attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_over_https_is_trusted_only_through_its_ca_bundle() {
    let env = SyncEnv::start("rot-https").await;
    let (hook, ca) = https_hook(true).await;
    let (_, other_ca) = https_hook(true).await;
    env.apply(hook.key_secret()).await;
    let with_ca = |ca: &str| {
        let mut register = hook.register();
        register["webhook"]["caBundle"] = json!(ca);
        register
    };
    first_sync(
        &env,
        managed(json!({"strategy": "Staged", "register": with_ca(&other_ca)})),
    )
    .await;
    // A certificate from a CA the bundle does not name: refused at once, the value never sent.
    annotate(&env, "db", "kmsync.io/rotate", "1").await;
    let ms = wait_rotation(&env, "db", "RotationFailed").await;
    let (_, _, message) = rotation_condition(&ms).unwrap();
    assert!(message.contains("InvalidCertificate"), "{message}");
    assert!(
        hook.calls.lock().unwrap().is_empty(),
        "nothing reached the webhook"
    );
    assert_eq!(env.secret_data("db").await.unwrap()["password"], "first");

    // The right CA: registered and verified over HTTPS, then promoted.
    env.apply_managed_secret(
        "db",
        "db_cred",
        managed(json!({"strategy": "Staged", "minInterval": "1s", "register": with_ca(&ca)})),
    )
    .await;
    annotate(&env, "db", "kmsync.io/rotate", "2").await;
    wait_rotation(&env, "db", "RotationSucceeded").await;
    assert_eq!(hook.actions(), ["register", "verify"]);
    wait_for("the Secret to follow", 60, || async {
        env.secret_data("db")
            .await
            .filter(|d| d["password"] != "first")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_demanding_a_client_certificate_gets_the_one_from_its_secret() {
    let env = SyncEnv::start("rot-mtls").await;
    let (hook, server_ca, (certificate, key)) = mtls_hook(true).await;
    // The receiver really demands one: a client without a certificate gets no answer.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let anonymous = reqwest::Client::builder()
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(server_ca.as_bytes()).unwrap())
        .build()
        .unwrap();
    assert!(anonymous.post(&hook.url).body("{}").send().await.is_err());
    env.apply(hook.key_secret()).await;
    env.apply(
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hook-client"},
        "type": "kubernetes.io/tls", "stringData": {"tls.crt": certificate, "tls.key": key}}),
    )
    .await;
    let mut register = hook.register();
    register["webhook"]["caBundle"] = json!(server_ca);
    register["webhook"]["clientCertificateSecretRef"] = json!({"name": "hook-client"});
    first_sync(
        &env,
        managed(json!({"strategy": "Staged", "register": register})),
    )
    .await;
    annotate(&env, "db", "kmsync.io/rotate", "1").await;
    wait_rotation(&env, "db", "RotationSucceeded").await;
    assert_eq!(hook.actions(), ["register", "verify"]);
    assert_eq!(hook.rejected.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_rotation_write_ends_the_attempt() {
    let env = SyncEnv::start("rot-refused-put").await;
    first_sync(&env, managed(json!({"strategy": "Immediate"}))).await;
    env.emulator.set_faults(FaultConfig {
        errors: vec![ErrorRule {
            action: "PutSecretValue".into(),
            rate: 1.0,
            code: "Forbidden.NoPermission".into(),
            status: 403,
            message: None,
        }],
        ..FaultConfig::default()
    });
    annotate(&env, "db", "kmsync.io/rotate", "1").await;
    let ms = wait_for("the attempt to end", 60, || async {
        let ms = env.managed_secrets().get("db").await.ok()?;
        let rotation = ms.status.as_ref()?.rotation.as_ref()?;
        (rotation.pending_version_id.is_none() && rotation.sequence == Some(1)).then_some(ms)
    })
    .await;
    let (status, reason, message) = rotation_condition(&ms).unwrap();
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "RotationFailed")
    );
    assert!(
        message.contains("step put failed (AccessDenied)"),
        "{message}"
    );
    assert_eq!(ms.status.unwrap().rotation.unwrap().attempts, 1);
    // More reconciles do not write the failed attempt again (the next one waits a backoff).
    env.force_sync_and_wait("db").await;
    env.force_sync_and_wait("db").await;
    assert_eq!(env.calls("PutSecretValue"), 1, "one refused put");
    assert_eq!(versions(&env, "db_cred").await.len(), 1);
}
