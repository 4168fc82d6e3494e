//! A sync environment for one test: a fresh namespace on the real apiserver, an in-process KMS
//! emulator on loopback, a SecretStore pointing at it, and the operator binary watching only that
//! namespace (so tests run side by side without seeing each other).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kmsync::crd::ManagedSecret;
use kmsync::emulator::{AccessKey, Emulator, EmulatorConfig, RunningEmulator};
use kmsync::kms::actions::{CreateSecretRequest, PutSecretValueRequest};
use kmsync::kms::credentials::StaticProvider;
use kmsync::kms::{Credentials, Endpoint, KmsClient, KmsClientConfig, SecretString};
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

use super::{client, fresh_namespace};

pub const ACCESS_KEY_ID: &str = "kmsync-test";
pub const ACCESS_KEY_SECRET: &str = "kmsync-test-secret-3f9a";

/// The operator binary, stopped (by its own PID) when dropped.
pub struct Operator {
    child: Child,
    pub log_path: PathBuf,
    pub admin: SocketAddr,
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

impl Operator {
    pub fn start(namespace: &str, log_level: &str) -> Self {
        Self::start_with(namespace, log_level, &[])
    }

    /// The process id, for signals a test sends on purpose.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits (bounded) for the process to exit after a signal; returns its exit status.
    pub fn wait_exit(&mut self, seconds: u64) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + Duration::from_secs(seconds);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }

    pub fn start_with(namespace: &str, log_level: &str, extra: &[&str]) -> Self {
        Self::start_with_env(namespace, log_level, extra, &[])
    }

    pub fn start_with_env(
        namespace: &str,
        log_level: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let log_path =
            std::env::temp_dir().join(format!("kmsync-operator-{namespace}-{}.log", free_port()));
        let log = std::fs::File::create(&log_path).expect("operator log file");
        let child = Command::new(env!("CARGO_BIN_EXE_kmsync"))
            .args([
                "run",
                "--namespace",
                namespace,
                "--admin-addr",
                &admin.to_string(),
            ])
            .args(["--backoff-base-ms", "200", "--backoff-max-ms", "2000"])
            .args(extra)
            .envs(env.iter().copied())
            .env("RUST_LOG", log_level)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log clone"))
            .stderr(log)
            .spawn()
            .expect("start kmsync run");
        Self {
            child,
            log_path,
            admin,
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.admin))
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("body")
    }
}

pub struct SyncEnv {
    pub client: kube::Client,
    pub namespace: String,
    pub emulator: RunningEmulator,
    pub kms: KmsClient,
    pub operator: Option<Operator>,
}

impl SyncEnv {
    /// Namespace + emulator + credentials Secret + SecretStore `kms` + a running operator.
    pub async fn start(prefix: &str) -> Self {
        Self::start_with_log_level(prefix, "info,kmsync=debug").await
    }

    pub async fn start_with_log_level(prefix: &str, log_level: &str) -> Self {
        let mut env = Self::without_operator(prefix).await;
        env.operator = Some(Operator::start(&env.namespace, log_level));
        env
    }

    /// Everything but the operator, for tests that run their own replicas.
    pub async fn without_operator(prefix: &str) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = client().await;
        let namespace = fresh_namespace(&client, prefix).await;
        let emulator = Emulator::start(EmulatorConfig {
            access_keys: vec![AccessKey {
                id: ACCESS_KEY_ID.into(),
                secret: ACCESS_KEY_SECRET.into(),
                security_token: None,
            }],
            ..EmulatorConfig::default()
        })
        .await
        .expect("start emulator");
        let provider = Arc::new(StaticProvider::new(Credentials::access_key(
            ACCESS_KEY_ID,
            ACCESS_KEY_SECRET,
        )));
        let endpoint = Endpoint::parse(&emulator.base_url()).expect("endpoint");
        let kms = KmsClient::new(KmsClientConfig::new(endpoint, provider)).expect("kms client");
        let env = Self {
            client,
            namespace,
            emulator,
            kms,
            operator: None,
        };
        env.apply(
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "kms-credentials"},
            "stringData": {"AccessKeyId": ACCESS_KEY_ID, "AccessKeySecret": ACCESS_KEY_SECRET}}),
        )
        .await;
        env.apply(json!({"apiVersion": "kmsync.io/v1alpha1", "kind": "SecretStore", "metadata": {"name": "kms"},
            "spec": {"regionId": "cn-hangzhou", "endpoint": env.emulator.base_url(),
                     "auth": {"accessKey": {"secretRef": {"name": "kms-credentials"}}}}}))
            .await;
        env
    }

    pub fn operator(&self) -> &Operator {
        self.operator.as_ref().expect("operator running")
    }

    /// Server-side apply of any namespaced object of ours or of core v1, as a test user.
    pub async fn apply(&self, object: Value) {
        self.apply_in(&self.namespace, object).await
    }

    /// The credentials Secret and the SecretStore `kms` in another namespace.
    pub async fn add_store_in(&self, namespace: &str) {
        self.apply_in(
            namespace,
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "kms-credentials"},
            "stringData": {"AccessKeyId": ACCESS_KEY_ID, "AccessKeySecret": ACCESS_KEY_SECRET}}),
        )
        .await;
        self.apply_in(namespace, json!({"apiVersion": "kmsync.io/v1alpha1", "kind": "SecretStore", "metadata": {"name": "kms"},
            "spec": {"regionId": "cn-hangzhou", "endpoint": self.emulator.base_url(),
                     "auth": {"accessKey": {"secretRef": {"name": "kms-credentials"}}}}}))
            .await;
    }

    /// Server-side apply into `namespace`.
    pub async fn apply_in(&self, namespace: &str, object: Value) {
        let kind = object["kind"].as_str().expect("kind").to_string();
        let name = object["metadata"]["name"]
            .as_str()
            .expect("name")
            .to_string();
        let (group, version) = if object["apiVersion"] == "v1" {
            ("", "v1")
        } else {
            ("kmsync.io", "v1alpha1")
        };
        let resource = kube::api::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
            group, version, &kind,
        ));
        let api: Api<kube::api::DynamicObject> =
            Api::namespaced_with(self.client.clone(), namespace, &resource);
        api.patch(
            &name,
            &PatchParams::apply("kmsync-test").force(),
            &Patch::Apply(&object),
        )
        .await
        .unwrap_or_else(|e| panic!("apply {kind}/{name}: {e}"));
    }

    pub async fn create_kms_secret(&self, name: &str, version: &str, value: &str) {
        let request = CreateSecretRequest {
            secret_name: name.into(),
            version_id: version.into(),
            secret_data: SecretString::new(value),
            ..CreateSecretRequest::default()
        };
        self.kms
            .create_secret(&request)
            .await
            .expect("CreateSecret");
    }

    pub async fn put_kms_value(
        &self,
        name: &str,
        version: &str,
        value: &str,
        stages: Option<Vec<String>>,
    ) {
        let request = PutSecretValueRequest {
            secret_name: name.into(),
            version_id: version.into(),
            secret_data: SecretString::new(value),
            secret_data_type: None,
            version_stages: stages,
        };
        self.kms
            .put_secret_value(&request)
            .await
            .expect("PutSecretValue");
    }

    pub fn managed_secrets(&self) -> Api<ManagedSecret> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    pub fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Applies a ManagedSecret `name` reading `secret_name` with the given extra spec fields.
    pub async fn apply_managed_secret(&self, name: &str, secret_name: &str, extra: Value) {
        let mut spec = json!({"storeRef": {"name": "kms"}, "secretName": secret_name, "refreshInterval": "1h"});
        for (k, v) in extra.as_object().expect("object") {
            spec[k] = v.clone();
        }
        self.apply(
            json!({"apiVersion": "kmsync.io/v1alpha1", "kind": "ManagedSecret",
            "metadata": {"name": name}, "spec": spec}),
        )
        .await;
    }

    /// Asks for one more sync through the force-sync annotation; returns the value used.
    pub async fn force_sync(&self, name: &str) -> String {
        let value = uuid::Uuid::new_v4().to_string();
        let patch = json!({"metadata": {"annotations": {"kmsync.io/force-sync": value}}});
        self.managed_secrets()
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("annotate");
        value
    }

    /// Forces a sync and waits until the operator has acted on it (status records the value).
    pub async fn force_sync_and_wait(&self, name: &str) {
        let value = self.force_sync(name).await;
        wait_for("the forced sync", 60, || async {
            let status = self.managed_secrets().get(name).await.ok()?.status?;
            (status.last_force_sync.as_deref() == Some(value.as_str())).then_some(())
        })
        .await;
    }

    /// Stops the operator and starts a fresh one (same namespace and log level).
    pub fn restart_operator(&mut self) {
        self.restart_operator_with_log_level("info,kmsync=debug");
    }

    /// Stops the operator and starts a fresh one logging at `log_level`.
    pub fn restart_operator_with_log_level(&mut self, log_level: &str) {
        self.operator = None;
        self.operator = Some(Operator::start(&self.namespace, log_level));
    }

    /// The Secret's data as UTF-8 strings, if it exists.
    pub async fn secret_data(
        &self,
        name: &str,
    ) -> Option<std::collections::BTreeMap<String, String>> {
        let secret = self.secrets().get_opt(name).await.expect("get Secret")?;
        Some(
            secret
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                .collect(),
        )
    }

    /// `(status, reason)` of the Ready condition once it was computed for the current generation.
    pub async fn ready(&self, name: &str) -> Option<(String, String)> {
        let ms = self
            .managed_secrets()
            .get_opt(name)
            .await
            .expect("get ManagedSecret")?;
        let status = ms.status?;
        let condition = status.conditions.iter().find(|c| c.type_ == "Ready")?;
        (condition.observed_generation == ms.metadata.generation)
            .then(|| (condition.status.clone(), condition.reason.clone()))
    }

    /// Number of successful + failed calls of `action` the emulator served.
    pub fn calls(&self, action: &str) -> u64 {
        let calls = self.emulator.calls();
        calls["calls"][action]
            .as_object()
            .map(|outcomes| outcomes.values().filter_map(Value::as_u64).sum())
            .unwrap_or(0)
    }
}

/// Polls `check` every 100 ms until it returns `Some`, for at most `seconds`.
pub async fn wait_for<T, F, Fut>(what: &str, seconds: u64, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {seconds}s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
