//! `kmsync kms` end to end: the binary against a verifying loopback stub.

mod kms_support;

use std::sync::Arc;

use kms_support::{Behaviour, json, kms_error, spawn, verify_signature};

fn stub_behaviour() -> Behaviour {
    Arc::new(|req| {
        if let Err(why) = verify_signature(req, "testsecret") {
            return Some(kms_error(400, "SignatureDoesNotMatch", &why, req.n));
        }
        let action = req.header("x-acs-action").unwrap_or_default();
        let q = req.query();
        Some(match action.as_str() {
            "PutSecretValue" => json(
                200,
                serde_json::json!({
                    "RequestId": "r1", "SecretName": q["SecretName"], "VersionId": q["VersionId"],
                    "VersionStages": {"VersionStage": serde_json::from_str::<Vec<String>>(&q["VersionStages"]).unwrap()},
                }),
            ),
            "GetRandomPassword" => json(
                200,
                serde_json::json!({
                    "RequestId": "r2", "RandomPassword": format!("pw-{}", q["ExcludePunctuation"]),
                }),
            ),
            _ => kms_error(
                404,
                "Forbidden.ResourceNotFound",
                "The resource is not found.",
                req.n,
            ),
        })
    })
}

async fn kmsync(args: &[&str]) -> (i32, String, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_kmsync"))
        .env_clear()
        .args(args)
        .output()
        .await
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[tokio::test]
async fn aliyun_syntax_round_trips() {
    let stub = spawn(stub_behaviour()).await;
    let endpoint = stub.url();
    for signature in ["v3", "rpc"] {
        let (code, stdout, stderr) = kmsync(&[
            "kms",
            "--endpoint",
            &endpoint,
            "--access-key-id",
            "testid",
            "--access-key-secret",
            "testsecret",
            "--signature",
            signature,
            "PutSecretValue",
            "--SecretName",
            "db_cred",
            "--SecretData",
            r#"{"uname":"alice","pwd":"x y*~"}"#,
            "--VersionId",
            "v2",
            "--VersionStages",
            r#"["MyPendingLabel"]"#,
        ])
        .await;
        assert_eq!(code, 0, "{stderr}");
        let value: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(value["VersionStages"]["VersionStage"][0], "MyPendingLabel");
        assert!(stdout.contains("\n    \"RequestId\""));
        assert_eq!(
            stub.last().form()["SecretData"],
            r#"{"uname":"alice","pwd":"x y*~"}"#
        );
    }

    let (code, stdout, _) = kmsync(&[
        "kms",
        "GetRandomPassword",
        "--ExcludePunctuation",
        "true",
        "--endpoint",
        &endpoint,
        "--access-key-id",
        "testid",
        "--access-key-secret",
        "testsecret",
    ])
    .await;
    assert_eq!(code, 0);
    assert!(stdout.contains("pw-true"));
}

#[tokio::test]
async fn failures_go_to_stderr_with_non_zero_exit() {
    let stub = spawn(stub_behaviour()).await;
    let (code, stdout, stderr) = kmsync(&[
        "kms",
        "--endpoint",
        &stub.url(),
        "--access-key-id",
        "testid",
        "--access-key-secret",
        "testsecret",
        "UpdateSecretVersionStage",
        "--SecretName",
        "db_cred",
        "--VersionStage",
        "ACSCurrent",
        "--MoveToVersion",
        "v9",
    ])
    .await;
    assert_eq!(code, 1);
    assert!(stdout.is_empty());
    assert!(
        stderr.contains("Forbidden.ResourceNotFound (HTTP 404): The resource is not found."),
        "{stderr}"
    );
    assert!(stderr.contains("RequestId: req-1"));

    // Wrong secret: the signature error never echoes the secret value.
    let (code, _, stderr) = kmsync(&[
        "kms",
        "--endpoint",
        &stub.url(),
        "--access-key-id",
        "testid",
        "--access-key-secret",
        "wrong-canary",
        "PutSecretValue",
        "--SecretName",
        "a",
        "--VersionId",
        "v1",
        "--SecretData",
        "value-canary",
    ])
    .await;
    assert_eq!(code, 1);
    assert!(stderr.contains("SignatureDoesNotMatch"));
    assert!(!stderr.contains("canary"), "{stderr}");

    // Usage and configuration errors exit 2.
    let (code, _, stderr) = kmsync(&["kms", "--endpoint", "http://10.0.0.1", "ListSecrets"]).await;
    assert_eq!(code, 2);
    assert!(stderr.contains("loopback"), "{stderr}");
    let (code, _, stderr) = kmsync(&[
        "kms",
        "--endpoint",
        &stub.url(),
        "GetSecretValue",
        "--SecretName",
    ])
    .await;
    assert_eq!(code, 2);
    assert!(stderr.contains("--SecretName needs a value"));
}
