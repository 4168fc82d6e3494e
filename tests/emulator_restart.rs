//! The emulator as a subprocess (`kmsync emulator`): seed preload, `--port-file`, and a
//! SIGTERM + restart with `--state-file` that loses no version or stage.

mod emulator_support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use emulator_support::{Signer, Style};
use serde_json::Value;

const SEED: &str = r#"
secrets:
  - name: prod/db
    description: seeded
    tags: {team: core}
    versions:
      - {id: v1, data: old, stages: [ACSPrevious]}
      - {id: v2, data: '{"pwd":"s3cret"}', stages: [ACSCurrent]}
"#;

/// Starts the binary and returns it with its base URL (read from the ready line).
fn spawn(dir: &Path) -> (Child, String) {
    let port_file = dir.join("url");
    let _ = std::fs::remove_file(&port_file);
    let mut child = Command::new(env!("CARGO_BIN_EXE_kmsync"))
        .args([
            "emulator",
            "--listen",
            "127.0.0.1:0",
            "--access-key",
            "testid:testsecret",
        ])
        .arg("--seed")
        .arg(dir.join("seed.yaml"))
        .arg("--state-file")
        .arg(dir.join("state.json"))
        .arg("--port-file")
        .arg(&port_file)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn kmsync emulator");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = std::fs::read_to_string(&port_file).expect("port file written before the ready line");
    assert_eq!(line.trim(), format!("kmsync emulator listening on {url}"));
    (child, url)
}

/// SIGTERM by PID (the child we started), then wait.
fn stop(mut child: Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(child.wait().unwrap().success());
}

async fn versions(s: &Signer) -> Value {
    let (st, body) = s
        .call(
            "ListSecretVersionIds",
            &[("SecretName", "prod/db"), ("IncludeDeprecated", "true")],
            &[],
        )
        .await;
    assert_eq!(st, 200, "{body}");
    body["VersionIds"]["VersionId"].clone()
}

#[tokio::test]
async fn restart_with_state_file_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("seed.yaml"), SEED).unwrap();
    let (child, url) = spawn(dir.path());
    let s = Signer::new(&url, "testid", "testsecret", Style::V3);
    let (_, cur) = s
        .call("GetSecretValue", &[("SecretName", "prod/db")], &[])
        .await;
    assert_eq!(cur["VersionId"], "v2");
    let put = s
        .call(
            "PutSecretValue",
            &[
                ("SecretName", "prod/db"),
                ("VersionId", "v3"),
                ("VersionStages", r#"["Pending"]"#),
            ],
            &[("SecretData", "next")],
        )
        .await;
    assert_eq!(put.0, 200);
    s.call(
        "CreateSecret",
        &[("SecretName", "other"), ("VersionId", "a")],
        &[("SecretData", "x")],
    )
    .await;
    let before = versions(&s).await;
    stop(child);

    let (child, url) = spawn(dir.path());
    let s = Signer::new(&url, "testid", "testsecret", Style::Classic);
    assert_eq!(versions(&s).await, before);
    let (_, pending) = s
        .call(
            "GetSecretValue",
            &[("SecretName", "prod/db"), ("VersionStage", "Pending")],
            &[],
        )
        .await;
    assert_eq!(pending["SecretData"], "next");
    let (_, other) = s
        .call("GetSecretValue", &[("SecretName", "other")], &[])
        .await;
    assert_eq!(other["SecretData"], "x");
    let (_, desc) = s
        .call(
            "DescribeSecret",
            &[("SecretName", "prod/db"), ("FetchTags", "true")],
            &[],
        )
        .await;
    assert_eq!(desc["Tags"]["Tag"][0]["TagKey"], "team");
    stop(child);
}
