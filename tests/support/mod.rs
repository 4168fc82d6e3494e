//! Shared helpers for tests against the real kube-apiserver started by `scripts/controlplane.sh run`
//! (`make test`): a client from `KUBECONFIG`, a fresh namespace per test, the real kubectl.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};

/// The repository root.
pub fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A client for the local control plane. Panics with the way to get one when absent.
pub async fn client() -> Client {
    assert!(
        std::env::var_os("KUBECONFIG").is_some(),
        "KUBECONFIG is not set: run these tests through `make test` (scripts/controlplane.sh run …)"
    );
    Client::try_default()
        .await
        .expect("a client for the local control plane")
}

/// Creates and returns a namespace unique to one test (never reused; the control plane is
/// thrown away after the run, so nothing needs deleting).
pub async fn fresh_namespace(client: &Client, prefix: &str) -> String {
    let name = format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .expect("create test namespace");
    name
}

/// The real kubectl (`KUBECTL`, set by scripts/controlplane.sh).
pub fn kubectl_path() -> String {
    std::env::var("KUBECTL").unwrap_or_else(|_| "/usr/lib/google-cloud-sdk/bin/kubectl.1.33".into())
}

/// Runs kubectl with `args`, feeding `stdin` when given.
pub fn kubectl(args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write as _;
    let mut child = Command::new(kubectl_path())
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kubectl");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
    }
    child.wait_with_output().expect("kubectl output")
}

/// Text of a kubectl run, for assertion messages.
pub fn describe(output: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Runs `kubectl kmsync ARGS` with the plugin linked into a private PATH entry.
pub fn kubectl_kmsync(args: &[&str]) -> Output {
    let dir = std::env::temp_dir().join(format!("kmsync-plugin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let link = dir.join("kubectl-kmsync");
    if !link.exists() {
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_kmsync"), &link).unwrap();
    }
    let path = format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Command::new(kubectl_path())
        .arg("kmsync")
        .args(args)
        .env("PATH", path)
        .output()
        .expect("run kubectl kmsync")
}

pub mod helm;
pub mod rotation;
pub mod sync;
