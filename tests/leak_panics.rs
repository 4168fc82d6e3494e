//! Leak canaries through panics: the commonest panic is `unwrap()` on an `Err`, which prints the
//! error's `Debug`. Every error a canary value can travel through — a KMS answer spoiled in each
//! way the emulator can spoil it, each KMS error class, rendering, extraction and rotation
//! templates — is unwrapped inside `catch_unwind`, and the panic message, `Display`, `Debug` and
//! the condition message built from it must not contain the canary.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Duration;

use kmsync::controller::error::Error;
use kmsync::controller::kms_source::source_error;
use kmsync::crd::ManagedSecretSpec;
use kmsync::emulator::{
    AccessKey, Emulator, EmulatorConfig, ErrorRule, FaultConfig, Mutation, MutationRule,
};
use kmsync::kms::actions::{CreateSecretRequest, GetSecretValueRequest};
use kmsync::kms::credentials::StaticProvider;
use kmsync::kms::{Credentials, Endpoint, KmsClient, KmsClientConfig, RetryPolicy, SecretString};
use kmsync::render::{FetchedVersion, VersionSelector, render};
use serde_json::json;

const CANARY: &str = "canary-panic-5e0c71";
const CREDENTIAL: &str = "canary-credential-a91f";

/// Unwraps `result` in a caught panic and returns everything a user could see of the failure.
fn panic_and_messages<T, E: std::fmt::Debug + std::fmt::Display>(
    result: Result<T, E>,
) -> Vec<String> {
    let mut seen = Vec::new();
    if let Err(error) = &result {
        seen.push(error.to_string());
        seen.push(format!("{error:?}"));
    }
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let caught = catch_unwind(AssertUnwindSafe(|| {
        result.unwrap();
    }));
    std::panic::set_hook(hook);
    let payload = caught.expect_err("the result was an error, so unwrap panicked");
    let message = payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .expect("a panic message");
    seen.push(message);
    seen
}

fn assert_clean(case: &str, texts: &[String]) {
    assert!(!texts.is_empty(), "{case}: nothing was checked");
    for text in texts {
        assert!(
            !text.contains(CANARY) && !text.contains(CREDENTIAL),
            "{case}: a secret leaked into {text:?}"
        );
    }
}

async fn emulator_and_client() -> (kmsync::emulator::RunningEmulator, KmsClient) {
    let emulator = Emulator::start(EmulatorConfig {
        access_keys: vec![AccessKey {
            id: "leak-test".into(),
            secret: CREDENTIAL.into(),
            security_token: None,
        }],
        ..EmulatorConfig::default()
    })
    .await
    .expect("start emulator");
    let provider = Arc::new(StaticProvider::new(Credentials::access_key(
        "leak-test",
        CREDENTIAL,
    )));
    let mut config = KmsClientConfig::new(Endpoint::parse(&emulator.base_url()).unwrap(), provider);
    // One attempt: each fault is seen once, not five times with backoff.
    config.retry = RetryPolicy {
        max_attempts: 1,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(1),
        max_retry_after: Duration::from_millis(1),
    };
    let client = KmsClient::new(config).unwrap();
    client
        .create_secret(&CreateSecretRequest {
            secret_name: "db".into(),
            version_id: "v1".into(),
            secret_data: SecretString::new(format!(r#"{{"pwd":"{CANARY}"}}"#)),
            ..CreateSecretRequest::default()
        })
        .await
        .expect("CreateSecret");
    (emulator, client)
}

fn get(name: &str) -> GetSecretValueRequest {
    GetSecretValueRequest {
        secret_name: name.into(),
        ..GetSecretValueRequest::default()
    }
}

#[tokio::test]
async fn spoiled_kms_answers_and_kms_errors_panic_without_the_value() {
    let (emulator, client) = emulator_and_client().await;
    let mut failures = 0;
    for kind in Mutation::ALL {
        emulator.set_faults(FaultConfig {
            mutations: vec![MutationRule {
                action: "GetSecretValue".into(),
                rate: 1.0,
                kind,
                key: None,
            }],
            ..FaultConfig::default()
        });
        let result = client.get_secret_value(&get("db")).await;
        if let Err(error) = &result {
            failures += 1;
            let selector = VersionSelector::Stage("ACSCurrent".into());
            let condition = Error::from(source_error(error, Some(&selector)));
            let mut texts = panic_and_messages(Err::<(), _>(condition));
            texts.extend(panic_and_messages(result));
            assert_clean(&format!("{kind:?}"), &texts);
        } else {
            // A spoiled answer that still parses (an older or empty version) is data, not an
            // error: its Debug must be redacted too.
            let response = result.unwrap();
            assert_clean(&format!("{kind:?} (parsed)"), &[format!("{response:?}")]);
        }
    }
    assert!(
        failures >= 3,
        "reset, malformed and truncated answers are errors"
    );

    for (code, status) in [
        ("Forbidden.NoPermission", 403),
        ("Forbidden.ResourceNotFound", 404),
        ("Throttling", 429),
        ("InternalFailure", 500),
        ("InvalidAccessKeyId.NotFound", 404),
        ("SignatureDoesNotMatch", 400),
        ("Rejected.Throttling", 503),
    ] {
        emulator.set_faults(FaultConfig {
            errors: vec![ErrorRule {
                action: "*".into(),
                rate: 1.0,
                code: code.into(),
                status,
                message: None,
            }],
            ..FaultConfig::default()
        });
        let result = client.get_secret_value(&get("db")).await;
        let error = result.as_ref().expect_err("the fault applies");
        let condition = Error::from(source_error(error, None));
        let mut texts = panic_and_messages(Err::<(), _>(condition));
        texts.extend(panic_and_messages(result));
        assert_clean(code, &texts);
    }
}

fn spec(value: serde_json::Value) -> ManagedSecretSpec {
    let mut spec = json!({"storeRef": {"name": "kms"}, "secretName": "db"});
    for (k, v) in value.as_object().unwrap() {
        spec[k] = v.clone();
    }
    serde_json::from_value(spec).unwrap()
}

fn fetched(data: &str) -> BTreeMap<VersionSelector, FetchedVersion> {
    BTreeMap::from([(
        VersionSelector::Stage("ACSCurrent".into()),
        FetchedVersion {
            version_id: "v1".into(),
            stages: vec!["ACSCurrent".into()],
            data: data.as_bytes().to_vec(),
            create_time: None,
        },
    )])
}

#[test]
fn rendering_and_template_errors_panic_without_the_value() {
    let json_value = format!(r#"{{"pwd":"{CANARY}","nested":{{"a":"{CANARY}"}}}}"#);
    let cases = [
        (
            "property missing",
            spec(json!({"data": [{"key": "k", "property": "nope"}]})),
            json_value.clone(),
        ),
        (
            "value not JSON",
            spec(json!({"data": [{"key": "k", "property": "pwd"}]})),
            format!("not json {CANARY}"),
        ),
        (
            "extract from non-JSON",
            spec(json!({"dataFrom": {"extract": true}})),
            CANARY.to_string(),
        ),
        (
            "extracted key invalid",
            spec(json!({"dataFrom": {"extract": true}})),
            format!(r#"{{"bad/key":"{CANARY}"}}"#),
        ),
        (
            "stage not fetched",
            spec(json!({"data": [{"key": "k", "property": "pwd", "versionStage": "ACSPrevious"}]})),
            json_value.clone(),
        ),
    ];
    for (case, spec, value) in cases {
        let result = render(&spec, &fetched(&value));
        assert!(result.is_err(), "{case}: expected a render error");
        let condition = Error::from(result.clone().unwrap_err());
        let mut texts = panic_and_messages(result);
        texts.extend(panic_and_messages(Err::<(), _>(condition)));
        assert_clean(case, &texts);
    }

    let current = json_value.as_bytes();
    for (case, template) in [
        ("unknown placeholder", r#"{"p":"{{ secret }}"}"#),
        ("missing field", r#"{"p":"{{ current.user }}"}"#),
        ("unclosed", r#"{"p":"{{ password"#),
        ("broken JSON", r#"{"p": {{ password }} }"#),
    ] {
        let result = kmsync::rotation::template::render(Some(template), CANARY, Some(current));
        assert!(result.is_err(), "{case}: expected a template error");
        assert_clean(case, &panic_and_messages(result));
    }
    let not_json = format!("plain {CANARY}");
    let result = kmsync::rotation::template::render(
        Some(r#"{"u":"{{ current.uname }}"}"#),
        CANARY,
        Some(not_json.as_bytes()),
    );
    assert_clean("current not JSON", &panic_and_messages(result));
}
