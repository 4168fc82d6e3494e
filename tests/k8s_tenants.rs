//! Tenant isolation, one test per class: what one namespace must never reach through kmsync. Each
//! attempt is refused with a clear condition (or admission message) and writes nothing.
#![cfg(feature = "integration")]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use kmsync::crd::{ClusterSecretStore, SecretStore};
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use support::rotation::{annotate, hook, rotation_condition, versions, wait_rotation};
use support::sync::{ACCESS_KEY_ID, ACCESS_KEY_SECRET, Operator, SyncEnv, wait_for};

/// One test at a time: every operator checks every ClusterSecretStore, and one without the
/// operator identity a store relies on would mark it failed for the test that owns it.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `(status, reason, message)` of the Ready condition of ManagedSecret `name`.
async fn ready(env: &SyncEnv, name: &str) -> Option<(String, String, String)> {
    let ms = env.managed_secrets().get(name).await.ok()?;
    let c = ms
        .status?
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")?;
    Some((c.status, c.reason, c.message))
}

/// Waits for the Ready condition of ManagedSecret `name`; returns its message.
async fn wait_ready(env: &SyncEnv, name: &str, status: &str, reason: &str) -> String {
    wait_for(&format!("{name} Ready={status} ({reason})"), 60, || async {
        let (s, r, message) = ready(env, name).await?;
        (s == status && r == reason).then_some(message)
    })
    .await
}

/// `kubectl apply` of `object` in `namespace`; returns stderr of the refusal.
fn kubectl_refuses(namespace: &str, object: &Value) -> String {
    let output = support::kubectl(
        &["apply", "-n", namespace, "-f", "-"],
        Some(&object.to_string()),
    );
    assert!(
        !output.status.success(),
        "kubectl accepted {object}: {}",
        support::describe(&output)
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn store(name: &str, endpoint: &str, auth: Value) -> Value {
    json!({"apiVersion": "kmsync.io/v1alpha1", "kind": "SecretStore", "metadata": {"name": name},
        "spec": {"regionId": "cn-hangzhou", "endpoint": endpoint, "auth": auth}})
}

fn access_key(secret: &str) -> Value {
    json!({"accessKey": {"secretRef": {"name": secret}}})
}

/// A ClusterSecretStore admitting `namespaces` and the KMS secret `allowed` only.
async fn cluster_store(env: &SyncEnv, name: &str, namespaces: Vec<String>) {
    let object = json!({"apiVersion": "kmsync.io/v1alpha1", "kind": "ClusterSecretStore", "metadata": {"name": name},
        "spec": {"regionId": "cn-hangzhou", "endpoint": env.emulator.base_url(),
                 "auth": {"accessKey": {"secretRef": {"name": "kms-credentials", "namespace": env.namespace}}},
                 "conditions": [{"namespaces": namespaces}], "allowedSecrets": ["allowed"]}});
    Api::<ClusterSecretStore>::all(env.client.clone())
        .patch(
            name,
            &PatchParams::apply("kmsync-test").force(),
            &Patch::Apply(&object),
        )
        .await
        .unwrap();
}

fn suffix(env: &SyncEnv) -> &str {
    &env.namespace[env.namespace.len() - 8..]
}

#[tokio::test]
async fn a_store_of_another_namespace_is_invisible() {
    let _turn = TURN.lock().await;
    let env = SyncEnv::start("tenant-store").await;
    env.create_kms_secret("allowed", "v1", "ok").await;
    let other = support::fresh_namespace(&env.client, "tenant-store-other").await;
    Api::<SecretStore>::namespaced(env.client.clone(), &other)
        .patch(
            "theirs",
            &PatchParams::apply("kmsync-test"),
            &Patch::Apply(&store(
                "theirs",
                &env.emulator.base_url(),
                access_key("kms-credentials"),
            )),
        )
        .await
        .unwrap();
    env.apply_managed_secret("cross", "allowed", json!({"storeRef": {"name": "theirs"}}))
        .await;
    let message = wait_ready(&env, "cross", "False", "StoreNotFound").await;
    assert!(message.contains("theirs"), "{message}");
    assert!(env.secret_data("cross").await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_and_service_accounts_of_another_namespace_are_refused_at_admission() {
    let _turn = TURN.lock().await;
    let env = SyncEnv::start("tenant-creds").await;
    let url = env.emulator.base_url();
    let stderr = kubectl_refuses(
        &env.namespace,
        &store(
            "borrowed",
            &url,
            json!({"accessKey": {"secretRef": {"name": "kms-credentials", "namespace": "kube-system"}}}),
        ),
    );
    assert!(
        stderr.contains("a SecretStore reads its credentials Secret from its own namespace: remove auth.accessKey.secretRef.namespace"),
        "{stderr}"
    );
    let stderr = kubectl_refuses(
        &env.namespace,
        &store(
            "borrowed-rrsa",
            &url,
            json!({"rrsa": {"roleArn": "acs:ram::1:role/x", "oidcProviderArn": "acs:ram::1:oidc-provider/y",
                "serviceAccountRef": {"name": "admin", "namespace": "kube-system"}}}),
        ),
    );
    assert!(
        stderr.contains(
            "a SecretStore uses a ServiceAccount of its own namespace: remove auth.rrsa.serviceAccountRef.namespace"
        ),
        "{stderr}"
    );
    let stores: Api<SecretStore> = Api::namespaced(env.client.clone(), &env.namespace);
    assert!(stores.get_opt("borrowed").await.unwrap().is_none());
    assert!(stores.get_opt("borrowed-rrsa").await.unwrap().is_none());
}

#[tokio::test]
async fn a_namespace_outside_a_cluster_store_conditions_is_refused() {
    let _turn = TURN.lock().await;
    let env = SyncEnv::start("tenant-conditions").await;
    env.create_kms_secret("allowed", "v1", "ok").await;
    let closed = format!("closed-{}", suffix(&env));
    cluster_store(&env, &closed, vec!["nobody".to_string()]).await;
    env.apply_managed_secret(
        "via-closed",
        "allowed",
        json!({"storeRef": {"name": closed, "kind": "ClusterSecretStore"}}),
    )
    .await;
    let message = wait_ready(&env, "via-closed", "False", "StoreNotAllowed").await;
    assert!(message.contains(&env.namespace), "{message}");
    assert!(env.secret_data("via-closed").await.is_none());
}

#[tokio::test]
async fn a_secret_name_outside_a_cluster_store_allow_list_is_refused() {
    let _turn = TURN.lock().await;
    let env = SyncEnv::start("tenant-allowlist").await;
    env.create_kms_secret("allowed", "v1", "ok").await;
    env.create_kms_secret("forbidden", "v1", "no").await;
    let open = format!("open-{}", suffix(&env));
    cluster_store(&env, &open, vec![env.namespace.clone()]).await;
    let store_ref = json!({"storeRef": {"name": open, "kind": "ClusterSecretStore"}});
    env.apply_managed_secret("listed", "allowed", store_ref.clone())
        .await;
    env.apply_managed_secret("not-listed", "forbidden", store_ref)
        .await;
    wait_ready(&env, "listed", "True", "Synced").await;
    let message = wait_ready(&env, "not-listed", "False", "SecretNotAllowed").await;
    assert!(message.contains("forbidden"), "{message}");
    assert!(env.secret_data("not-listed").await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_account_tokens_are_never_written() {
    let _turn = TURN.lock().await;
    let env = SyncEnv::start("tenant-sa-token").await;
    env.create_kms_secret("db", "v1", "value").await;
    let spec = json!({"apiVersion": "kmsync.io/v1alpha1", "kind": "ManagedSecret", "metadata": {"name": "as-token"},
        "spec": {"storeRef": {"name": "kms"}, "secretName": "db",
                 "target": {"type": "kubernetes.io/service-account-token"}}});
    let stderr = kubectl_refuses(&env.namespace, &spec);
    assert!(
        stderr.contains("kmsync never writes service account tokens"),
        "{stderr}"
    );

    // An existing token Secret of that name, even with Adopt.
    env.apply(json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "app"}}))
        .await;
    env.apply(
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "app-token",
        "annotations": {"kubernetes.io/service-account.name": "app"}},
        "type": "kubernetes.io/service-account-token"}),
    )
    .await;
    let before = env.secrets().get("app-token").await.unwrap();
    env.apply_managed_secret(
        "adopt-token",
        "db",
        json!({"target": {"name": "app-token", "creationPolicy": "Merge"}}),
    )
    .await;
    let message = wait_ready(&env, "adopt-token", "False", "TargetConflict").await;
    assert!(message.contains("service account token"), "{message}");
    let after = env.secrets().get("app-token").await.unwrap();
    assert_eq!(
        before.metadata.resource_version,
        after.metadata.resource_version
    );
}

#[tokio::test]
async fn the_operators_own_secrets_are_never_written() {
    let _turn = TURN.lock().await;
    let env = SyncEnv::start("tenant-own").await;
    env.create_kms_secret("db", "v1", "attacker-chosen").await;
    // A second store's credentials, a rotation's database admin login, Helm's release state.
    env.apply(
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "other-credentials"},
        "stringData": {"AccessKeyId": ACCESS_KEY_ID, "AccessKeySecret": ACCESS_KEY_SECRET}}),
    )
    .await;
    env.apply(store(
        "other",
        &env.emulator.base_url(),
        access_key("other-credentials"),
    ))
    .await;
    env.apply(
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "pg-admin"},
        "stringData": {"username": "postgres", "password": "admin-password"}}),
    )
    .await;
    env.apply(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "sh.helm.release.v1.app.v1"},
        "type": "helm.sh/release.v1", "stringData": {"release": "state"}}))
        .await;
    let cases = [
        (
            "own-store",
            "kms-credentials",
            json!({}),
            "credentials kmsync uses",
        ),
        (
            "other-store",
            "other-credentials",
            json!({}),
            "credentials kmsync uses",
        ),
        (
            "admin-login",
            "pg-admin",
            json!({"rotation": {"interval": "720h", "strategy": "Staged",
                "register": {"postgres": {"host": "127.0.0.1", "sslMode": "disable", "adminSecretRef": {"name": "pg-admin"}}}}}),
            "credentials kmsync uses",
        ),
        (
            "helm-state",
            "sh.helm.release.v1.app.v1",
            json!({}),
            "Helm's release state",
        ),
    ];
    let mut before = Vec::new();
    for (_, target, _, _) in &cases {
        before.push(env.secrets().get(target).await.unwrap());
    }
    for (name, target, extra, _) in &cases {
        let mut spec = json!({"target": {"name": target, "creationPolicy": "Adopt"}});
        for (k, v) in extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        env.apply_managed_secret(name, "db", spec).await;
    }
    for ((name, target, _, why), before) in cases.iter().zip(before) {
        let message = wait_ready(&env, name, "False", "TargetConflict").await;
        assert!(
            message.contains(why) && message.contains(target),
            "{name}: {message}"
        );
        let after = env.secrets().get(target).await.unwrap();
        assert_eq!(before.data, after.data, "{name}: {target} was not written");
        assert_eq!(
            before.metadata.resource_version, after.metadata.resource_version,
            "{name}: {target} untouched"
        );
    }
}

/// A loopback listener that counts the connections it accepts (and answers none).
async fn counting_listener() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(socket);
        }
    });
    (format!("https://{address}"), accepted)
}

async fn store_ready_reason(env: &SyncEnv, name: &str) -> Option<(String, String)> {
    let store = Api::<SecretStore>::namespaced(env.client.clone(), &env.namespace)
        .get(name)
        .await
        .ok()?;
    let c = store
        .status?
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")?;
    Some((c.reason, c.message))
}

#[tokio::test]
async fn an_endpoint_outside_the_allow_list_gets_no_request() {
    let _turn = TURN.lock().await;
    let mut env = SyncEnv::without_operator("tenant-endpoint").await;
    env.create_kms_secret("db", "v1", "value").await;
    // This operator allows Alibaba Cloud only, so even a loopback endpoint is off limits; the
    // listener proves that not a single connection is attempted.
    env.operator = Some(Operator::start_with(
        &env.namespace,
        "info,kmsync=debug",
        &["--allowed-endpoint-hosts", "*.aliyuncs.com"],
    ));
    let (url, accepted) = counting_listener().await;
    env.apply(store("elsewhere", &url, access_key("kms-credentials")))
        .await;
    env.apply(store(
        "far-away",
        "https://kms.attacker.example",
        access_key("kms-credentials"),
    ))
    .await;
    for (name, store_name) in [("to-loopback", "elsewhere"), ("to-internet", "far-away")] {
        env.apply_managed_secret(name, "db", json!({"storeRef": {"name": store_name}}))
            .await;
        let (reason, message) = wait_for(&format!("store {store_name} refused"), 60, || async {
            store_ready_reason(&env, store_name)
                .await
                .filter(|(reason, _)| reason == "EndpointNotAllowed")
        })
        .await;
        assert!(
            message.contains("--allowed-endpoint-hosts"),
            "{reason}: {message}"
        );
        let message = wait_for(&format!("{name} refused"), 60, || async {
            let (status, reason, message) = ready(&env, name).await?;
            (status == "False" && message.contains("EndpointNotAllowed")
                || reason == "EndpointNotAllowed")
                .then_some(message)
        })
        .await;
        assert!(
            message.contains("EndpointNotAllowed") || message.contains("--allowed-endpoint-hosts"),
            "{message}"
        );
        assert!(env.secret_data(name).await.is_none());
    }
    // The environment's own store (the emulator on loopback) is refused too, unasked.
    wait_for("store kms refused", 60, || async {
        store_ready_reason(&env, "kms")
            .await
            .filter(|(reason, _)| reason == "EndpointNotAllowed")
    })
    .await;
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        0,
        "a connection was attempted"
    );
    assert_eq!(env.calls("ListSecrets") + env.calls("GetSecretValue"), 0);
}

#[tokio::test]
async fn templates_and_properties_cannot_reach_other_objects() {
    let _turn = TURN.lock().await;
    let env = SyncEnv::start("tenant-template").await;
    env.create_kms_secret("mine", "v1", r#"{"pwd":"mine"}"#)
        .await;
    env.create_kms_secret("theirs", "v1", r#"{"pwd":"theirs"}"#)
        .await;
    // A property is a key inside this secret's own JSON value, never a path to anything else.
    env.apply_managed_secret(
        "escape",
        "mine",
        json!({"data": [{"key": "k", "property": "../theirs.pwd"}]}),
    )
    .await;
    let message = wait_ready(&env, "escape", "False", "PropertyNotFound").await;
    assert!(message.contains("../theirs.pwd"), "{message}");
    assert!(env.secret_data("escape").await.is_none());

    // A rotation template knows the new password and the current value's fields, nothing else.
    env.apply_managed_secret(
        "template",
        "mine",
        json!({"data": [{"key": "pwd", "property": "pwd"}],
            "rotation": {"interval": "720h", "strategy": "Immediate",
                "generate": {"template": "{\"pwd\":\"{{ secrets.theirs.pwd }}\"}"}}}),
    )
    .await;
    // Refused as soon as it is applied, not at the first rotation.
    let message = wait_ready(&env, "template", "False", "InvalidTemplate").await;
    assert!(
        message.contains("secrets.theirs.pwd") && message.contains("unknown"),
        "{message}"
    );
    annotate(&env, "template", "kmsync.io/rotate", "now").await;
    env.force_sync("template").await;
    wait_ready(&env, "template", "False", "InvalidTemplate").await;
    assert_eq!(
        versions(&env, "mine").await.len(),
        1,
        "no version was written"
    );
    assert!(
        env.secret_data("template").await.is_none(),
        "nothing synced"
    );
}

/// A JWT-shaped projected ServiceAccount token for the audience STS expects (the emulator checks
/// shape, audience and expiry without a JWKS), as the operator's own RRSA token file.
fn operator_token_file(dir: &std::path::Path) -> std::path::PathBuf {
    use base64::Engine as _;
    let enc = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let now = jiff::Timestamp::now().as_second();
    let token = format!(
        "{}.{}.c2lnbmF0dXJl",
        enc(json!({"alg": "RS256", "kid": "test"})),
        enc(
            json!({"aud": ["sts.aliyuncs.com"], "exp": now + 3600, "iat": now,
                   "iss": "https://oidc.example/c0ffee",
                   "sub": "system:serviceaccount:kmsync-system:kmsync"})
        )
    );
    let path = dir.join("operator-token");
    std::fs::write(&path, token).expect("write token");
    path
}

/// The three ways a store can use the operator's own identity, and AssumeRole chained on one.
fn operator_identities() -> Vec<(&'static str, Value)> {
    let rrsa = json!({"roleArn": "acs:ram::1234567890:role/operator",
                      "oidcProviderArn": "acs:ram::1234567890:oidc-provider/ack-rrsa"});
    vec![
        ("default", json!({"default": {}})),
        ("ecs", json!({"ecsRamRole": {}})),
        ("rrsa", json!({"rrsa": rrsa})),
        (
            "ecs-assume",
            json!({"ecsRamRole": {}, "assumeRole": {"roleArn": "acs:ram::1234567890:role/other"}}),
        ),
    ]
}

/// An operator whose environment carries an identity of its own, three ways: AccessKey variables
/// for the default chain, the emulator as metadata service, and an RRSA token file.
fn operator_with_identity(env: &SyncEnv, token: &std::path::Path, extra: &[&str]) -> Operator {
    let base = env.emulator.base_url();
    let mut args = vec!["--metadata-base", base.as_str()];
    args.extend_from_slice(extra);
    Operator::start_with_env(
        &env.namespace,
        "info,kmsync=debug",
        &args,
        &[
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", ACCESS_KEY_ID),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", ACCESS_KEY_SECRET),
            (
                "ALIBABA_CLOUD_OIDC_TOKEN_FILE",
                token.to_str().expect("utf-8 path"),
            ),
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_cluster_stores_act_as_the_operator_unless_the_operator_allows_it() {
    let _turn = TURN.lock().await;
    let mut env = SyncEnv::without_operator("tenant-identity").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let token = operator_token_file(dir.path());
    env.operator = Some(operator_with_identity(&env, &token, &[]));
    env.create_kms_secret("db", "v1", "operator-readable").await;
    for (name, auth) in operator_identities() {
        env.apply(store(
            &format!("own-{name}"),
            &env.emulator.base_url(),
            auth,
        ))
        .await;
        env.apply_managed_secret(
            &format!("via-{name}"),
            "db",
            json!({"storeRef": {"name": format!("own-{name}")}}),
        )
        .await;
    }
    for (name, _) in operator_identities() {
        let (_, message) = wait_for(&format!("store own-{name} refused"), 60, || async {
            store_ready_reason(&env, &format!("own-{name}"))
                .await
                .filter(|(reason, _)| reason == "OperatorIdentityNotAllowed")
        })
        .await;
        assert!(
            message.contains("ClusterSecretStore")
                && message.contains("--allow-namespaced-operator-identity"),
            "{message}"
        );
        let (status, _, _) = wait_for(&format!("via-{name} refused"), 60, || async {
            ready(&env, &format!("via-{name}"))
                .await
                .filter(|(status, _, _)| status == "False")
        })
        .await;
        assert_eq!(status, "False");
        assert!(env.secret_data(&format!("via-{name}")).await.is_none());
    }
    // Refused before a single request: no credentials were fetched, no secret was read.
    assert_eq!(env.calls("GetSecretValue"), 0);
    assert_eq!(env.calls("AssumeRoleWithOIDC") + env.calls("AssumeRole"), 0);

    // A cluster admin's ClusterSecretStore may act as the operator (bounded by its conditions).
    let clusters: Api<ClusterSecretStore> = Api::all(env.client.clone());
    for (name, auth) in operator_identities() {
        let store_name = format!("operator-{name}-{}", suffix(&env));
        let object = json!({"apiVersion": "kmsync.io/v1alpha1", "kind": "ClusterSecretStore",
            "metadata": {"name": store_name},
            "spec": {"regionId": "cn-hangzhou", "endpoint": env.emulator.base_url(), "auth": auth,
                     "conditions": [{"namespaces": [env.namespace]}]}});
        clusters
            .patch(
                &store_name,
                &PatchParams::apply("kmsync-test").force(),
                &Patch::Apply(&object),
            )
            .await
            .unwrap();
        env.apply_managed_secret(
            &format!("cluster-{name}"),
            "db",
            json!({"storeRef": {"name": store_name, "kind": "ClusterSecretStore"}}),
        )
        .await;
    }
    for (name, _) in operator_identities() {
        wait_ready(&env, &format!("cluster-{name}"), "True", "Synced").await;
    }

    // With the flag (a single-tenant cluster), the namespaced stores are accepted too.
    env.operator = None;
    env.operator = Some(operator_with_identity(
        &env,
        &token,
        &["--allow-namespaced-operator-identity"],
    ));
    for (name, _) in operator_identities() {
        env.force_sync(&format!("via-{name}")).await;
        wait_ready(&env, &format!("via-{name}"), "True", "Synced").await;
    }
    assert_eq!(
        env.secret_data("via-default").await.unwrap()["value"],
        "operator-readable"
    );
    for (name, _) in operator_identities() {
        let _ = clusters
            .delete(
                &format!("operator-{name}-{}", suffix(&env)),
                &Default::default(),
            )
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_backend_outside_the_allow_list_gets_no_connection() {
    let _turn = TURN.lock().await;
    let mut env = SyncEnv::without_operator("tenant-backend").await;
    // This operator allows in-cluster Services only, so even loopback is off limits; the
    // listener proves that not a single connection is attempted, rotation asked for or not.
    env.operator = Some(Operator::start_with(
        &env.namespace,
        "info,kmsync=debug",
        &["--allowed-backend-hosts", "*.svc,*.svc.cluster.local"],
    ));
    let (url, accepted) = counting_listener().await;
    let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
    env.create_kms_secret("db", "v1", r#"{"uname":"app","pwd":"first"}"#)
        .await;
    let rotation = |register: Value| {
        json!({"data": [{"key": "password", "property": "pwd"}],
            "rotation": {"interval": "720h", "strategy": "Staged",
                "generate": {"template": "{\"uname\":\"app\",\"pwd\":\"{{ password }}\"}"},
                "register": register}})
    };
    let backends = [
        (
            "via-webhook",
            json!({"webhook": {"url": format!("{url}/rotate"),
                "signingSecretRef": {"name": "webhook-key"}}}),
            "webhook.url",
        ),
        (
            "via-postgres",
            json!({"postgres": {"host": "127.0.0.1", "port": port, "sslMode": "disable",
                               "adminSecretRef": {"name": "pg-admin"}}}),
            "postgres.host",
        ),
    ];
    for (name, register, _) in &backends {
        env.apply_managed_secret(name, "db", rotation(register.clone()))
            .await;
    }
    for (name, _, field) in &backends {
        let message = wait_ready(&env, name, "False", "BackendNotAllowed").await;
        assert!(
            message.contains(field) && message.contains("--allowed-backend-hosts"),
            "{message}"
        );
        annotate(&env, name, "kmsync.io/rotate", "1").await;
    }
    for (name, _, _) in &backends {
        env.force_sync(name).await;
        wait_ready(&env, name, "False", "BackendNotAllowed").await;
        assert!(env.secret_data(name).await.is_none());
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        0,
        "a connection was attempted"
    );
    assert_eq!(env.calls("PutSecretValue") + env.calls("GetSecretValue"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_call_without_a_valid_signature_is_rejected_by_the_receiver() {
    let _turn = TURN.lock().await;
    let env = SyncEnv::start("tenant-signature").await;
    let hook = hook(true).await;
    // The ManagedSecret's signing Secret holds a key the receiver does not share.
    let mut wrong = hook.key_secret();
    wrong["stringData"]["key"] = json!("not-the-receivers-key");
    env.apply(wrong).await;
    env.create_kms_secret("db", "v1", r#"{"uname":"app","pwd":"first"}"#)
        .await;
    env.apply_managed_secret(
        "signed",
        "db",
        json!({"data": [{"key": "password", "property": "pwd"}],
            "rotation": {"interval": "720h", "strategy": "Staged",
                "generate": {"template": "{\"uname\":\"app\",\"pwd\":\"{{ password }}\"}"},
                "register": hook.register()}}),
    )
    .await;
    wait_ready(&env, "signed", "True", "Synced").await;
    annotate(&env, "signed", "kmsync.io/rotate", "1").await;
    let ms = wait_rotation(&env, "signed", "RotationFailed").await;
    let (_, _, message) = rotation_condition(&ms).unwrap();
    assert!(message.contains("register"), "{message}");
    assert!(
        hook.rejected.load(Ordering::SeqCst) >= 1,
        "the receiver saw a bad signature"
    );
    assert!(
        hook.calls.lock().unwrap().is_empty(),
        "no call was accepted"
    );
    assert_eq!(
        env.secret_data("signed").await.unwrap()["password"],
        "first"
    );
}
