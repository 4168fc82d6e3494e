//! The CRDs against a real kube-apiserver: they install with the real kubectl, the examples are
//! accepted and read back equal, every static rule rejects a bad object with its own message, and
//! the status subresource behaves (server-side apply of status, generation bumps on spec only).
#![cfg(feature = "integration")]

mod support;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kmsync::crd::{ManagedSecret, ManagedSecretStatus};
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use serde_json::{Value, json};
use support::{client, describe, fresh_namespace, kubectl, repo};

#[tokio::test]
async fn apiserver_reports_v1_34_10() {
    let version = client().await.apiserver_version().await.expect("/version");
    assert_eq!(version.git_version, "v1.34.10");
}

#[tokio::test]
async fn crds_apply_with_kubectl_and_become_established() {
    let crd_dir = repo("crds").display().to_string();
    let applied = kubectl(&["apply", "--server-side", "-f", &crd_dir], None);
    assert!(applied.status.success(), "{}", describe(&applied));
    let waited = kubectl(
        &[
            "wait",
            "--for=condition=Established",
            "crd/managedsecrets.kmsync.io",
            "crd/secretstores.kmsync.io",
            "crd/clustersecretstores.kmsync.io",
            "--timeout=60s",
        ],
        None,
    );
    assert!(waited.status.success(), "{}", describe(&waited));

    let crds = Api::<CustomResourceDefinition>::all(client().await);
    for generated in kmsync::crd::all() {
        let name = generated.metadata.name.clone().expect("crd name");
        let stored = crds.get(&name).await.expect("read CRD back");
        assert_eq!(stored.spec.names.kind, generated.spec.names.kind);
        assert_eq!(
            stored.spec.versions[0].schema, generated.spec.versions[0].schema,
            "{name}"
        );
    }
}

fn resource(kind: &str) -> ApiResource {
    let (group, version) = if kind == "Secret" {
        ("", "v1")
    } else {
        ("kmsync.io", "v1alpha1")
    };
    ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind))
}

fn api_for(client: &kube::Client, kind: &str, namespace: &str) -> Api<DynamicObject> {
    if kind == "ClusterSecretStore" {
        Api::all_with(client.clone(), &resource(kind))
    } else {
        Api::namespaced_with(client.clone(), namespace, &resource(kind))
    }
}

/// A spec normalised through its Rust type, so server-side defaults compare equal to omissions.
fn typed_spec(kind: &str, spec: &Value) -> Value {
    fn through<T: serde::de::DeserializeOwned + serde::Serialize>(spec: &Value) -> Value {
        serde_json::to_value(serde_json::from_value::<T>(spec.clone()).expect("typed spec"))
            .expect("json")
    }
    match kind {
        "ManagedSecret" => through::<kmsync::crd::ManagedSecretSpec>(spec),
        "SecretStore" => through::<kmsync::crd::SecretStoreSpec>(spec),
        "ClusterSecretStore" => through::<kmsync::crd::ClusterSecretStoreSpec>(spec),
        other => panic!("unexpected kind {other} in examples/"),
    }
}

#[tokio::test]
async fn examples_are_accepted_and_read_back_equal() {
    let client = client().await;
    let namespace = fresh_namespace(&client, "examples").await;
    let mut files: Vec<_> = std::fs::read_dir(repo("examples"))
        .expect("examples/")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 3,
        "expected the store and ManagedSecret examples, found {files:?}"
    );
    let mut kinds_seen = std::collections::BTreeSet::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read example");
        let applied = kubectl(
            &[
                "apply",
                "--server-side",
                "-n",
                &namespace,
                "-f",
                &file.display().to_string(),
            ],
            None,
        );
        assert!(
            applied.status.success(),
            "{}: {}",
            file.display(),
            describe(&applied)
        );
        for document in serde_norway::Deserializer::from_str(&text) {
            let expected: Value = serde::Deserialize::deserialize(document).expect("example YAML");
            let kind = expected["kind"].as_str().expect("kind").to_string();
            let name = expected["metadata"]["name"].as_str().expect("name");
            let stored = api_for(&client, &kind, &namespace)
                .get(name)
                .await
                .expect("read back");
            if kind == "Secret" {
                continue;
            }
            assert_eq!(
                typed_spec(&kind, &stored.data["spec"]),
                typed_spec(&kind, &expected["spec"]),
                "{} {kind}/{name}",
                file.display()
            );
            if kind == "ManagedSecret" {
                assert!(
                    stored.data["spec"]["storeRef"]["kind"].is_string(),
                    "schema default applied"
                );
            }
            kinds_seen.insert(kind);
        }
    }
    assert_eq!(
        kinds_seen.into_iter().collect::<Vec<_>>(),
        ["ClusterSecretStore", "ManagedSecret", "SecretStore"]
    );
}

// ---- one test per static rule -------------------------------------------------------------

fn managed_secret(spec_overrides: Value) -> Value {
    let mut spec = json!({"storeRef": {"name": "kms"}, "secretName": "db_cred"});
    merge(&mut spec, spec_overrides);
    json!({"apiVersion": "kmsync.io/v1alpha1", "kind": "ManagedSecret",
           "metadata": {"name": "bad"}, "spec": spec})
}

fn store(kind: &str, spec_overrides: Value) -> Value {
    let mut spec = json!({"regionId": "cn-hangzhou",
                          "auth": {"accessKey": {"secretRef": {"name": "creds"}}}});
    merge(&mut spec, spec_overrides);
    json!({"apiVersion": "kmsync.io/v1alpha1", "kind": kind,
           "metadata": {"name": format!("bad-{}", uuid::Uuid::new_v4().simple())}, "spec": spec})
}

/// JSON merge patch semantics: objects merge, `null` removes, everything else replaces.
fn merge(target: &mut Value, patch: Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    target.remove(&key);
                } else {
                    merge(target.entry(key).or_insert(Value::Null), value);
                }
            }
        }
        (target, patch) => *target = patch,
    }
}

/// Creates `object` and asserts the apiserver refuses it with `message` in its answer.
async fn assert_rejected(object: Value, message: &str) {
    let client = client().await;
    let namespace = fresh_namespace(&client, "cel").await;
    let kind = object["kind"].as_str().expect("kind").to_string();
    let dynamic: DynamicObject = serde_json::from_value(object).expect("dynamic object");
    match api_for(&client, &kind, &namespace)
        .create(&PostParams::default(), &dynamic)
        .await
    {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "{status:?}");
            assert!(
                status.message.contains(message),
                "expected {message:?} in {:?}",
                status.message
            );
        }
        other => panic!("{kind} was not rejected (wanted {message:?}): {other:?}"),
    }
}

#[tokio::test]
async fn rejects_version_stage_and_version_id_together() {
    assert_rejected(
        managed_secret(json!({"versionStage": "ACSCurrent", "versionId": "v1"})),
        "set versionStage or versionId, not both",
    )
    .await;
}

#[tokio::test]
async fn rejects_malformed_version_stage() {
    assert_rejected(
        managed_secret(json!({"versionStage": "ACS Current"})),
        "spec.versionStage",
    )
    .await;
}

#[tokio::test]
async fn rejects_malformed_version_id() {
    assert_rejected(
        managed_secret(json!({"versionId": "v1/../v2"})),
        "spec.versionId",
    )
    .await;
}

#[tokio::test]
async fn rejects_secret_key_with_slash() {
    assert_rejected(
        managed_secret(json!({"data": [{"key": "a/b"}]})),
        "spec.data[0].key",
    )
    .await;
}

#[tokio::test]
async fn rejects_dot_dot_secret_key() {
    assert_rejected(
        managed_secret(json!({"data": [{"key": "..data"}]})),
        "a Secret key may not be '.', '..' or start with '..'",
    )
    .await;
}

#[tokio::test]
async fn rejects_duplicate_secret_keys() {
    assert_rejected(
        managed_secret(json!({"data": [{"key": "password", "property": "a"},
                                       {"key": "password", "property": "b"}]})),
        "data keys must be unique",
    )
    .await;
}

#[tokio::test]
async fn rejects_data_entry_with_stage_and_id() {
    assert_rejected(
        managed_secret(
            json!({"data": [{"key": "k", "versionStage": "ACSPrevious", "versionId": "v1"}]}),
        ),
        "a data entry may set versionStage or versionId, not both",
    )
    .await;
}

#[tokio::test]
async fn rejects_refresh_interval_below_bound() {
    assert_rejected(
        managed_secret(json!({"refreshInterval": "5s"})),
        "refreshInterval must be 0 (no periodic refresh) or between 10s and 720h",
    )
    .await;
}

#[tokio::test]
async fn rejects_refresh_interval_above_bound() {
    assert_rejected(
        managed_secret(json!({"refreshInterval": "721h"})),
        "refreshInterval must be 0 (no periodic refresh) or between 10s and 720h",
    )
    .await;
}

#[tokio::test]
async fn rejects_refresh_interval_that_is_not_a_duration() {
    assert_rejected(
        managed_secret(json!({"refreshInterval": "hourly"})),
        "spec.refreshInterval",
    )
    .await;
}

#[tokio::test]
async fn rejects_service_account_token_target_type() {
    assert_rejected(
        managed_secret(json!({"target": {"type": "kubernetes.io/service-account-token"}})),
        "target.type kubernetes.io/service-account-token is not allowed",
    )
    .await;
}

fn rotation(overrides: Value) -> Value {
    let mut rotation = json!({"interval": "720h", "strategy": "Immediate"});
    merge(&mut rotation, overrides);
    managed_secret(json!({"rotation": rotation}))
}

#[tokio::test]
async fn rejects_rotation_with_interval_and_schedule() {
    assert_rejected(
        rotation(json!({"schedule": "0 3 * * 0"})),
        "rotation needs exactly one of interval or schedule",
    )
    .await;
}

#[tokio::test]
async fn rejects_rotation_without_interval_or_schedule() {
    assert_rejected(
        rotation(json!({"interval": null})),
        "rotation needs exactly one of interval or schedule",
    )
    .await;
}

#[tokio::test]
async fn rejects_rotation_interval_below_ten_minutes() {
    assert_rejected(
        rotation(json!({"interval": "5m"})),
        "rotation.interval must be at least 10m",
    )
    .await;
}

#[tokio::test]
async fn rejects_builtin_pending_stage() {
    assert_rejected(
        rotation(json!({"pendingStage": "ACSCurrent"})),
        "pendingStage must be a custom label, not ACSCurrent or ACSPrevious",
    )
    .await;
}

#[tokio::test]
async fn rejects_staged_rotation_without_register() {
    assert_rejected(
        rotation(json!({"strategy": "Staged"})),
        "the Staged strategy needs register",
    )
    .await;
}

#[tokio::test]
async fn rejects_register_on_immediate_rotation() {
    assert_rejected(
        rotation(json!({"register": {"manualApproval": {}}})),
        "register applies only to the Staged strategy",
    )
    .await;
}

#[tokio::test]
async fn rejects_two_register_backends() {
    assert_rejected(
        rotation(
            json!({"strategy": "Staged", "register": {"manualApproval": {},
            "webhook": {"url": "https://hooks.example.com/rotate", "signingSecretRef": {"name": "k"}}}}),
        ),
        "register must set exactly one of postgres, webhook or manualApproval",
    )
    .await;
}

#[tokio::test]
async fn rejects_plain_http_webhook_off_loopback() {
    assert_rejected(
        rotation(json!({"strategy": "Staged", "register": {"webhook": {"url": "http://hooks.example.com/rotate", "signingSecretRef": {"name": "k"}}}})),
        "webhook url must be https:// (plain http:// only for loopback)",
    )
    .await;
}

#[tokio::test]
async fn rejects_password_excluding_every_class() {
    assert_rejected(
        rotation(
            json!({"generate": {"password": {"excludeLowercase": true, "excludeUppercase": true,
            "excludeNumbers": true, "excludePunctuation": true}}}),
        ),
        "generate.password cannot exclude every character class",
    )
    .await;
}

#[tokio::test]
async fn rejects_store_without_auth_method() {
    assert_rejected(
        store("SecretStore", json!({"auth": {"accessKey": null}})),
        "auth must set exactly one of accessKey, rrsa, ecsRamRole or default",
    )
    .await;
}

#[tokio::test]
async fn rejects_store_with_two_auth_methods() {
    assert_rejected(
        store("SecretStore", json!({"auth": {"default": {}}})),
        "auth must set exactly one of accessKey, rrsa, ecsRamRole or default",
    )
    .await;
}

#[tokio::test]
async fn rejects_plain_http_endpoint_off_loopback() {
    assert_rejected(
        store(
            "SecretStore",
            json!({"endpoint": "http://kms.cn-hangzhou.aliyuncs.com"}),
        ),
        "endpoint must be an https:// URL; plain http:// is allowed only for loopback addresses",
    )
    .await;
}

#[tokio::test]
async fn rejects_secret_store_reading_credentials_from_another_namespace() {
    assert_rejected(
        store(
            "SecretStore",
            json!({"auth": {"accessKey": {"secretRef": {"namespace": "other"}}}}),
        ),
        "a SecretStore reads its credentials Secret from its own namespace",
    )
    .await;
}

#[tokio::test]
async fn rejects_cluster_store_without_credentials_namespace() {
    assert_rejected(
        store("ClusterSecretStore", json!({})),
        "a ClusterSecretStore must name the namespace of its credentials Secret",
    )
    .await;
}

#[tokio::test]
async fn rejects_burst_below_qps() {
    assert_rejected(
        store("SecretStore", json!({"rateLimit": {"qps": 10, "burst": 5}})),
        "rateLimit.burst must be at least rateLimit.qps",
    )
    .await;
}

#[tokio::test]
async fn rejects_empty_cluster_store_condition() {
    assert_rejected(
        store(
            "ClusterSecretStore",
            json!({"auth": {"accessKey": {"secretRef": {"namespace": "ops"}}},
            "conditions": [{}]}),
        ),
        "each condition needs namespaces or a namespaceSelector",
    )
    .await;
}

#[tokio::test]
async fn rejects_bad_object_through_kubectl_with_the_rule_message() {
    let client = client().await;
    let namespace = fresh_namespace(&client, "kubectl-cel").await;
    let bad = serde_json::to_string(&managed_secret(
        json!({"versionStage": "ACSCurrent", "versionId": "v1"}),
    ))
    .expect("json");
    let output = kubectl(&["apply", "-n", &namespace, "-f", "-"], Some(&bad));
    assert!(!output.status.success(), "{}", describe(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("set versionStage or versionId, not both"),
        "{}",
        describe(&output)
    );
}

// ---- status subresource ---------------------------------------------------------------------

#[tokio::test]
async fn status_is_applied_server_side_and_generation_follows_spec_only() {
    let client = client().await;
    let namespace = fresh_namespace(&client, "status").await;
    let api: Api<ManagedSecret> = Api::namespaced(client, &namespace);
    let object: ManagedSecret = serde_json::from_value(json!({
        "apiVersion": "kmsync.io/v1alpha1", "kind": "ManagedSecret",
        "metadata": {"name": "status-demo"},
        "spec": {"storeRef": {"name": "kms"}, "secretName": "db_cred"}
    }))
    .expect("ManagedSecret");
    let created = api
        .create(&PostParams::default(), &object)
        .await
        .expect("create");
    assert_eq!(created.metadata.generation, Some(1));

    let status = ManagedSecretStatus {
        observed_generation: Some(1),
        source: Some(kmsync::crd::managed_secret::SourceStatus {
            version_id: Some("v1".into()),
            version_stages: vec!["ACSCurrent".into()],
            create_time: None,
        }),
        ..Default::default()
    };
    let patch =
        json!({"apiVersion": "kmsync.io/v1alpha1", "kind": "ManagedSecret", "status": status});
    let params = PatchParams::apply("kmsync-test").force();
    let patched = api
        .patch_status("status-demo", &params, &Patch::Apply(&patch))
        .await
        .expect("apply status");
    assert_eq!(patched.status.as_ref(), Some(&status));
    assert_eq!(
        patched.metadata.generation,
        Some(1),
        "a status write must not bump generation"
    );

    let spec_change = json!({"spec": {"refreshInterval": "30m"}});
    let changed = api
        .patch(
            "status-demo",
            &PatchParams::default(),
            &Patch::Merge(&spec_change),
        )
        .await
        .expect("spec patch");
    assert_eq!(changed.metadata.generation, Some(2));
    assert_eq!(
        changed.status.as_ref(),
        Some(&status),
        "status survives a spec edit"
    );
}
