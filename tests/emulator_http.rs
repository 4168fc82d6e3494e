//! HTTP-level tests of the in-process emulator: both signature styles signed by hand with
//! `kms::sign`, gateway errors, STS and metadata credentials, admin faults and counters.

mod emulator_support;

use emulator_support::{Signer, Style, http_client};
use kmsync::emulator::{AccessKey, Emulator, EmulatorConfig, RunningEmulator};
use serde_json::{Value, json};

async fn start() -> RunningEmulator {
    let config = EmulatorConfig {
        access_keys: vec![AccessKey::parse("testid:testsecret").unwrap()],
        ..Default::default()
    };
    Emulator::start(config).await.expect("emulator starts")
}

async fn rotation(s: &Signer, name: &str) {
    let (st, body) = s
        .call(
            "CreateSecret",
            &[("SecretName", name), ("VersionId", "v1")],
            &[("SecretData", "one two+three")],
        )
        .await;
    assert_eq!(st, 200, "{body}");
    assert!(body["RequestId"].is_string());
    let (st, _) = s
        .call(
            "PutSecretValue",
            &[
                ("SecretName", name),
                ("VersionId", "v2"),
                ("VersionStages", r#"["Pending"]"#),
            ],
            &[("SecretData", "new ~*")],
        )
        .await;
    assert_eq!(st, 200);
    let (_, cur) = s.call("GetSecretValue", &[("SecretName", name)], &[]).await;
    assert_eq!(cur["SecretData"], "one two+three");
    let (st, _) = s
        .call(
            "UpdateSecretVersionStage",
            &[
                ("SecretName", name),
                ("VersionStage", "ACSCurrent"),
                ("MoveToVersion", "v2"),
            ],
            &[],
        )
        .await;
    assert_eq!(st, 200);
    let (_, cur) = s.call("GetSecretValue", &[("SecretName", name)], &[]).await;
    assert_eq!(
        (cur["VersionId"].as_str(), cur["SecretData"].as_str()),
        (Some("v2"), Some("new ~*"))
    );
    let (_, prev) = s
        .call(
            "GetSecretValue",
            &[("SecretName", name), ("VersionStage", "ACSPrevious")],
            &[],
        )
        .await;
    assert_eq!(prev["VersionId"], "v1");
}

#[tokio::test]
async fn both_signature_styles_rotate() {
    let emu = start().await;
    assert!(emu.base_url().starts_with("http://127.0.0.1:"));
    rotation(
        &Signer::new(&emu.base_url(), "testid", "testsecret", Style::V3),
        "v3/s",
    )
    .await;
    rotation(
        &Signer::new(&emu.base_url(), "testid", "testsecret", Style::Classic),
        "classic/s",
    )
    .await;
    assert_eq!(emu.calls()["calls"]["GetSecretValue"]["Success"], 6);
    emu.shutdown().await;
}

fn assert_error(resp: &(u16, Value), status: u16, code: &str) {
    assert_eq!(
        (resp.0, resp.1["Code"].as_str()),
        (status, Some(code)),
        "{}",
        resp.1
    );
    for field in ["RequestId", "HostId", "Message", "Recommend"] {
        assert!(resp.1[field].is_string(), "{field} missing in {}", resp.1);
    }
}

#[tokio::test]
async fn gateway_errors() {
    let emu = start().await;
    let base = emu.base_url();
    for style in [Style::V3, Style::Classic] {
        let good = Signer::new(&base, "testid", "testsecret", style);
        let r = good
            .call("GetSecretValue", &[("SecretName", "missing")], &[])
            .await;
        assert_error(&r, 404, "Forbidden.ResourceNotFound");
        let r = Signer::new(&base, "testid", "wrong", style)
            .call("ListSecrets", &[], &[])
            .await;
        assert_error(&r, 400, "SignatureDoesNotMatch");
        let r = Signer::new(&base, "nobody", "x", style)
            .call("ListSecrets", &[], &[])
            .await;
        assert_error(&r, 404, "InvalidAccessKeyId.NotFound");
        let old = (jiff::Timestamp::now() - jiff::SignedDuration::from_mins(20))
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        let r = good.call_with("ListSecrets", &[], &[], "n-old", &old).await;
        assert_error(&r, 400, "InvalidTimeStamp.Expired");
        let now = jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        let nonce = format!("replay-{style:?}");
        assert_eq!(
            good.call_with("ListSecrets", &[], &[], &nonce, &now)
                .await
                .0,
            200
        );
        let r = good.call_with("ListSecrets", &[], &[], &nonce, &now).await;
        assert_error(&r, 400, "SignatureNonceUsed");
        let r = good.call("NoSuchAction", &[], &[]).await;
        assert_error(&r, 404, "InvalidAction.NotFound");
    }
    let resp = http_client()
        .post(format!("{base}/?SecretName=x"))
        .header("x-acs-action", "GetSecretValue")
        .header("x-acs-version", "2016-01-20")
        .header("authorization", "ACS3-HMAC-SHA256 Credential=testid")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert!(resp.headers().contains_key("x-acs-request-id"));
    assert_eq!(
        resp.json::<Value>().await.unwrap()["Code"],
        "IncompleteSignature"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn sts_and_metadata_credentials_reach_kms() {
    let emu = start().await;
    let base = emu.base_url();
    let sts = Signer::new(&base, "testid", "testsecret", Style::Classic).sts();
    let (st, body) = sts
        .call(
            "AssumeRole",
            &[
                ("RoleArn", "acs:ram::123:role/app"),
                ("RoleSessionName", "t1"),
            ],
            &[],
        )
        .await;
    assert_eq!(st, 200, "{body}");
    let c = &body["Credentials"];
    let (id, secret, token) = (
        c["AccessKeyId"].as_str().unwrap(),
        c["AccessKeySecret"].as_str().unwrap(),
        c["SecurityToken"].as_str().unwrap(),
    );
    let kms = Signer::new(&base, id, secret, Style::V3).with_token(token);
    assert_eq!(kms.call("ListSecrets", &[], &[]).await.0, 200);
    let r = Signer::new(&base, id, secret, Style::V3)
        .call("ListSecrets", &[], &[])
        .await;
    assert_error(&r, 400, "InvalidSecurityToken.MismatchWithAccessKey");

    let http = http_client();
    let token = http
        .put(format!("{base}/latest/api/token"))
        .header("X-aliyun-ecs-metadata-token-ttl-seconds", "21600")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let get = |path: &str, t: &str| {
        http.get(format!("{base}{path}"))
            .header("X-aliyun-ecs-metadata-token", t.to_string())
            .send()
    };
    let role = get("/latest/meta-data/ram/security-credentials/", &token)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(role, "kmsync-emulator-role");
    let region = get("/latest/meta-data/region-id", &token)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(region, "cn-hangzhou");
    assert_eq!(
        get("/latest/meta-data/region-id", "bogus")
            .await
            .unwrap()
            .status()
            .as_u16(),
        403
    );
    let creds: Value = get(
        &format!("/latest/meta-data/ram/security-credentials/{role}"),
        &token,
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(creds["Code"], "Success");
    let kms = Signer::new(
        &base,
        creds["AccessKeyId"].as_str().unwrap(),
        creds["AccessKeySecret"].as_str().unwrap(),
        Style::Classic,
    )
    .with_token(creds["SecurityToken"].as_str().unwrap());
    assert_eq!(kms.call("ListSecrets", &[], &[]).await.0, 200);
    emu.shutdown().await;
}

#[tokio::test]
async fn admin_faults_throttling_and_counters() {
    let emu = start().await;
    let base = emu.base_url();
    let http = http_client();
    let s = Signer::new(&base, "testid", "testsecret", Style::V3);
    let faults = json!({
        "throttling": {"enabled": true, "groups": {"lowFrequency": {"qps": 0.001, "burst": 2}}},
        "errors": [{"action": "DescribeRegions", "rate": 1.0, "code": "InternalFailure", "status": 500}],
    });
    let put = http
        .put(format!("{base}/admin/faults"))
        .json(&faults)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status().as_u16(), 200);
    assert_eq!(s.call("ListSecrets", &[], &[]).await.0, 200);
    assert_eq!(s.call("ListSecrets", &[], &[]).await.0, 200);
    assert_error(
        &s.call("ListSecrets", &[], &[]).await,
        429,
        "Rejected.Throttling",
    );
    assert_error(
        &s.call("DescribeRegions", &[], &[]).await,
        500,
        "InternalFailure",
    );
    let current: Value = http
        .get(format!("{base}/admin/faults"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(current["throttling"]["enabled"], true);
    let calls: Value = http
        .get(format!("{base}/admin/calls"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(calls["calls"]["ListSecrets"]["Rejected.Throttling"], 1);
    let text = http
        .get(format!("{base}/admin/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("kms_emulator_calls_total{action=\"ListSecrets\",outcome=\"Success\"} 2"),
        "{text}"
    );
    http.delete(format!("{base}/admin/calls"))
        .send()
        .await
        .unwrap();
    assert_eq!(emu.calls()["total"], 0);
    emu.shutdown().await;
}

#[tokio::test]
async fn issued_credentials_expire_on_request_and_abandoned_calls_are_counted() {
    let emu = start().await;
    let base = emu.base_url();
    let http = http_client();
    let static_key = Signer::new(&base, "testid", "testsecret", Style::V3);
    let (st, body) = static_key
        .clone()
        .sts()
        .call(
            "AssumeRole",
            &[
                ("RoleArn", "acs:ram::123:role/app"),
                ("RoleSessionName", "t2"),
            ],
            &[],
        )
        .await;
    assert_eq!(st, 200, "{body}");
    let c = &body["Credentials"];
    let issued = Signer::new(
        &base,
        c["AccessKeyId"].as_str().unwrap(),
        c["AccessKeySecret"].as_str().unwrap(),
        Style::V3,
    )
    .with_token(c["SecurityToken"].as_str().unwrap());
    assert_eq!(issued.call("ListSecrets", &[], &[]).await.0, 200);
    let ended: Value = http
        .post(format!("{base}/admin/expire-credentials"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ended["expired"], 1);
    assert_error(
        &issued.call("ListSecrets", &[], &[]).await,
        400,
        "InvalidSecurityToken.Expired",
    );
    assert_eq!(static_key.call("ListSecrets", &[], &[]).await.0, 200);

    // A client whose timeout fires during injected latency hangs up; the call still counts.
    let faults = json!({"latencyMs": {"ListSecrets": 2000}});
    http.put(format!("{base}/admin/faults"))
        .json(&faults)
        .send()
        .await
        .unwrap();
    let provider = std::sync::Arc::new(kmsync::kms::credentials::StaticProvider::new(
        kmsync::kms::Credentials::access_key("testid", "testsecret"),
    ));
    let mut config =
        kmsync::kms::KmsClientConfig::new(kmsync::kms::Endpoint::parse(&base).unwrap(), provider);
    config.http.request_timeout = std::time::Duration::from_millis(200);
    config.retry = kmsync::kms::retry::RetryPolicy::none();
    let impatient = kmsync::kms::KmsClient::new(config).unwrap();
    let gave_up = impatient
        .list_secrets(&kmsync::kms::actions::ListSecretsRequest::default())
        .await;
    assert!(
        matches!(gave_up, Err(kmsync::kms::KmsError::Timeout)),
        "{gave_up:?}"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while emu.calls()["calls"]["ListSecrets"]["Abandoned"] != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "abandoned call not counted: {}",
            emu.calls()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    emu.shutdown().await;
}

#[tokio::test]
async fn clock_offset_expires_recovery_window() {
    let emu = start().await;
    let base = emu.base_url();
    let s = Signer::new(&base, "testid", "testsecret", Style::V3);
    s.call(
        "CreateSecret",
        &[("SecretName", "gone"), ("VersionId", "v1")],
        &[("SecretData", "x")],
    )
    .await;
    let (st, _) = s
        .call(
            "DeleteSecret",
            &[("SecretName", "gone"), ("RecoveryWindowInDays", "7")],
            &[],
        )
        .await;
    assert_eq!(st, 200);
    let r = s
        .call("GetSecretValue", &[("SecretName", "gone")], &[])
        .await;
    assert_error(&r, 409, "Rejected.ResourceInDeleteWindow");
    let clock = json!({"offsetSeconds": 8 * 86400});
    http_client()
        .put(format!("{base}/admin/clock"))
        .json(&clock)
        .send()
        .await
        .unwrap();
    let r = s
        .call("DescribeSecret", &[("SecretName", "gone")], &[])
        .await;
    assert_error(&r, 404, "Forbidden.ResourceNotFound");
    emu.shutdown().await;
}

#[tokio::test]
async fn refuses_non_loopback_by_default() {
    let config = EmulatorConfig {
        listen: "0.0.0.0:0".parse().unwrap(),
        ..Default::default()
    };
    let err = Emulator::start(config).await.unwrap_err();
    assert!(err.to_string().contains("non-loopback"), "{err}");
}
