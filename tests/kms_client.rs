//! The client over real HTTP on loopback: both signature styles verified by a stub with
//! `kmsync::kms::sign`, form-body decoding, STS headers, error parsing, and the secret canary.

mod kms_support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kms_support::{Behaviour, json, kms_error, spawn, verify_signature};
use kmsync::kms::actions::*;
use kmsync::kms::credentials::StaticProvider;
use kmsync::kms::request::Params;
use kmsync::kms::{
    Credentials, Endpoint, KmsClient, KmsClientConfig, RetryPolicy, SecretString, SignatureStyle,
};

const SECRET: &str = "testsecret";

fn client(url: &str, style: SignatureStyle, creds: Credentials) -> KmsClient {
    let mut config = KmsClientConfig::new(
        Endpoint::parse(url).unwrap(),
        Arc::new(StaticProvider::new(creds)),
    );
    config.signature = style;
    config.retry = RetryPolicy::none();
    KmsClient::new(config).unwrap()
}

/// A KMS-like stub: verifies the signature, then answers by action.
fn verifying_stub() -> Behaviour {
    Arc::new(|req| {
        if let Err(why) = verify_signature(req, SECRET) {
            return Some(kms_error(400, "SignatureDoesNotMatch", &why, req.n));
        }
        let action = req
            .header("x-acs-action")
            .or_else(|| req.query().get("Action").cloned())
            .unwrap_or_default();
        let q = req.query();
        let body = match action.as_str() {
            "PutSecretValue" => serde_json::json!({
                "RequestId": "r", "SecretName": q["SecretName"], "VersionId": q["VersionId"],
                // Echo the decoded secret length so the test can check the form decoding.
                "VersionStages": {"VersionStage": [req.form()["SecretData"].len().to_string()]},
            }),
            "GetSecretValue" => serde_json::json!({
                "RequestId": "r", "SecretName": q["SecretName"], "VersionId": "v1",
                "SecretData": "aGVsbG8=", "SecretDataType": "binary",
                "VersionStages": {"VersionStage": ["ACSCurrent", "ACSPrevious"]},
            }),
            _ => {
                return Some(kms_error(
                    404,
                    "InvalidAction.NotFound",
                    "Specified api is not found",
                    req.n,
                ));
            }
        };
        Some(json(200, body))
    })
}

#[tokio::test]
async fn both_signature_styles_are_accepted_by_a_verifying_server() {
    let stub = spawn(verifying_stub()).await;
    let data = r#"{"user":"admin","pass":"p@ss w0rd~*"}"#;
    for style in [SignatureStyle::V3, SignatureStyle::Rpc] {
        for creds in [
            Credentials::access_key("testid", SECRET),
            Credentials::access_key("STS.testid", SECRET).with_security_token("CAI+tok/="),
        ] {
            let kms = client(&stub.url(), style, creds.clone());
            let put = kms
                .put_secret_value(&PutSecretValueRequest {
                    secret_name: "prod/db-password".into(),
                    version_id: "v2".into(),
                    secret_data: data.into(),
                    version_stages: Some(vec!["MyPendingLabel".into()]),
                    ..Default::default()
                })
                .await
                .unwrap_or_else(|e| panic!("{style:?}: {e}"));
            assert_eq!(put.version_stages, vec![data.len().to_string()]);
            let last = stub.last();
            assert_eq!(last.query()["VersionStages"], r#"["MyPendingLabel"]"#);
            assert_eq!(last.form()["SecretData"], data);
            assert_eq!(
                last.header("content-type").as_deref(),
                Some("application/x-www-form-urlencoded")
            );
            if creds.security_token.is_some() {
                match style {
                    SignatureStyle::V3 => {
                        assert_eq!(
                            last.header("x-acs-security-token").as_deref(),
                            Some("CAI+tok/=")
                        );
                        assert_eq!(
                            last.header("x-acs-accesskey-id").as_deref(),
                            Some("STS.testid")
                        );
                    }
                    SignatureStyle::Rpc => {
                        assert_eq!(last.query()["SecurityToken"], "CAI+tok/=");
                    }
                }
            }
            let value = kms
                .get_secret_value(&GetSecretValueRequest::current("prod/db-password"))
                .await
                .unwrap();
            assert_eq!(value.value_bytes().unwrap().expose(), b"hello");
            assert_eq!(value.version_stages, vec!["ACSCurrent", "ACSPrevious"]);
            let last = stub.last();
            assert!(last.body.is_empty());
            assert_eq!(last.header("content-type"), None);
            assert_eq!(last.header("host").unwrap(), stub.addr.to_string());
        }
    }
}

#[tokio::test]
async fn a_wrong_secret_is_rejected_and_mapped() {
    let stub = spawn(verifying_stub()).await;
    let kms = client(
        &stub.url(),
        SignatureStyle::V3,
        Credentials::access_key("testid", "wrong"),
    );
    let err = kms
        .get_secret_value(&GetSecretValueRequest::current("a"))
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "InvalidCredentials");
    assert_eq!(err.code(), Some("SignatureDoesNotMatch"));
}

#[tokio::test]
async fn raw_calls_pass_parameters_through() {
    let stub = spawn(verifying_stub()).await;
    let kms = client(
        &stub.url(),
        SignatureStyle::V3,
        Credentials::access_key("testid", SECRET),
    );
    let mut params = Params::new();
    params.set_auto("SecretName", "db".into());
    params.set_auto("VersionId", "v9".into());
    params.set_auto("SecretData", "abc def".into());
    let value = kms.call_raw("PutSecretValue", &params).await.unwrap();
    assert_eq!(value["VersionId"], "v9");
    assert_eq!(stub.last().form()["SecretData"], "abc def");
    let err = kms.call_raw("Nope", &Params::new()).await.unwrap_err();
    assert_eq!(err.reason(), "UnsupportedOperation");
    assert!(kms.call_raw("Bad Action", &Params::new()).await.is_err());
}

/// Collects everything `tracing` writes while the test runs.
#[derive(Clone, Default)]
struct LogSink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn canary_value_never_leaks_into_errors_debug_or_logs() {
    const CANARY: &str = "CANARY-7f3a9c";
    let sink = LogSink::default();
    let writer = sink.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    // A server that echoes the whole request (string-to-sign style) in its error message.
    let echo: Behaviour = Arc::new(|req| {
        let echoed = format!(
            "Specified signature is not matched with our calculation. server string to sign is:POST&%2F&{}{}",
            req.uri.query().unwrap_or_default(),
            String::from_utf8_lossy(&req.body)
        );
        Some(kms_error(400, "SignatureDoesNotMatch", &echoed, req.n))
    });
    let stub = spawn(echo).await;
    let throttle: Behaviour = Arc::new(|req| {
        Some(kms_error(
            429,
            "Rejected.Throttling",
            "QPS Limit Exceeded",
            req.n,
        ))
    });
    let throttled = spawn(throttle).await;

    let creds = Credentials::access_key("testid", CANARY).with_security_token(CANARY);
    let req = PutSecretValueRequest {
        secret_name: "db".into(),
        version_id: "v1".into(),
        secret_data: SecretString::new(format!("{{\"pwd\":\"{CANARY}\"}}")),
        ..Default::default()
    };
    let mut outputs = vec![
        format!("{req:?}"),
        format!("{creds:?}"),
        format!("{:?}", req.params().unwrap()),
    ];
    for style in [SignatureStyle::V3, SignatureStyle::Rpc] {
        let kms = client(&stub.url(), style, creds.clone());
        let prepared = kms
            .prepare(&req, &creds, &kmsync::kms::request::Stamp::now())
            .unwrap();
        outputs.push(format!("{prepared:?}"));
        let err = kms.put_secret_value(&req).await.unwrap_err();
        outputs.push(format!("{err}"));
        outputs.push(format!("{err:?}"));
        // Retry path (logs at debug/warn) with the same request.
        let mut config = KmsClientConfig::new(
            Endpoint::parse(&throttled.url()).unwrap(),
            Arc::new(StaticProvider::new(creds.clone())),
        );
        config.signature = style;
        config.retry = RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
            max_retry_after: Duration::from_millis(2),
        };
        let kms = KmsClient::new(config).unwrap();
        let err = kms.put_secret_value(&req).await.unwrap_err();
        outputs.push(format!("{err} {err:?}"));
    }
    // Connection refused: the URL (with the RPC SecurityToken) must not appear either.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let kms = client(&closed, SignatureStyle::Rpc, creds.clone());
    let err = kms.put_secret_value(&req).await.unwrap_err();
    outputs.push(format!("{err} {err:?}"));
    // A response holding the secret, and a too-large secret.
    let value = GetSecretValueResponse {
        secret_data: CANARY.into(),
        ..Default::default()
    };
    outputs.push(format!("{value:?}"));
    let too_big = PutSecretValueRequest {
        secret_data: SecretString::new(CANARY.repeat(5000)),
        ..req.clone()
    };
    outputs.push(format!("{:?}", too_big.params().unwrap_err()));

    drop(_guard);
    outputs.push(String::from_utf8_lossy(&sink.0.lock().unwrap()).to_string());
    for (i, output) in outputs.iter().enumerate() {
        assert!(
            !output.contains(CANARY),
            "output {i} leaks the canary: {output}"
        );
    }
    assert!(outputs.iter().any(|o| o.contains("<redacted>")));
    assert!(
        !outputs.last().unwrap().is_empty(),
        "the retry path should have logged something"
    );
}
