//! Target `kms_response`: the client's parsing of KMS answers — the success body of every action
//! (`kms::actions` through the client's decoder) and error bodies (`ApiError::parse`).
//!
//! Flags: bits 0–1 pick what the body is tried as (0: every success type; 1: an error body;
//! 2: a gateway `SignatureDoesNotMatch` whose message is field 0 followed by the echoed
//! string-to-sign with a canary `SecretData`; 3: the list/number shape round trip).
//! Fields: body (or message, or list items separated by the later fields), HTTP status (2 bytes).
//!
//! Properties: a body that does not decode is `InvalidResponse` with a fixed category, never the
//! body; `Debug` of a decoded value and its Base64 errors do not depend on the secret value; error
//! messages are bounded, cut before any echoed string-to-sign and never hold the request id.

use super::{split, text};
use crate::kms::actions::*;
use crate::kms::client::decode;
use crate::kms::error::{ApiError, KmsError};
use crate::kms::secret::SecretString;
use crate::kms::transport::RawResponse;

const CANARY: &str = "KmsyncFuzzCanary51d0";

/// Categories the decoder may report, nothing of the body.
const CATEGORIES: &[&str] = &[
    "I/O error",
    "invalid JSON",
    "missing or mistyped fields",
    "truncated JSON",
];

/// The fuzz target.
pub fn kms_response(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    match flags & 3 {
        0 => success_bodies(rest),
        1 => error_body(data),
        2 => signature_echo(data),
        _ => list_shapes(rest),
    }
}

fn raw(body: &[u8]) -> RawResponse {
    RawResponse {
        status: 200,
        body: body.to_vec(),
        request_id: None,
        attempts: 1,
    }
}

/// Decodes as `T`; a failure must be a bodiless `InvalidResponse`.
fn try_decode<T: serde::de::DeserializeOwned>(body: &[u8]) -> Option<T> {
    match decode::<T>(&raw(body)) {
        Ok(value) => Some(value),
        Err(KmsError::InvalidResponse { status, message }) => {
            assert_eq!(status, 200);
            assert!(CATEGORIES.contains(&message.as_str()), "{message:?}");
            None
        }
        Err(other) => panic!("decoding failed as {}", other.reason()),
    }
}

fn check_secret_value(value: &GetSecretValueResponse) {
    // Debug and the Base64 error do not depend on the value: compare with another one.
    let mut other = value.clone();
    other.secret_data = SecretString::new("@not base64@");
    assert_eq!(
        format!("{value:?}"),
        format!("{other:?}"),
        "Debug shows the value"
    );
    match value.value_bytes() {
        Ok(bytes) if !value.is_binary() => {
            assert_eq!(bytes.expose(), value.secret_data.expose().as_bytes());
        }
        Ok(_) => {}
        Err(e) => {
            assert!(value.is_binary(), "text values always convert");
            let expected = other.value_bytes().expect_err("not Base64");
            assert_eq!(e.to_string(), expected.to_string(), "error shows the value");
        }
    }
}

fn success_bodies(body: &[u8]) {
    if let Some(v) = try_decode::<GetSecretValueResponse>(body) {
        check_secret_value(&v);
    }
    if let Some(v) = try_decode::<BatchGetSecretValueResponse>(body) {
        v.secret_values.iter().for_each(check_secret_value);
    }
    if let Some(v) = try_decode::<GetRandomPasswordResponse>(body) {
        let other = GetRandomPasswordResponse {
            random_password: SecretString::new("other"),
            ..v.clone()
        };
        assert_eq!(
            format!("{v:?}"),
            format!("{other:?}"),
            "Debug shows the password"
        );
    }
    if let Some(v) = try_decode::<DeleteSecretResponse>(body) {
        let _ = v.planned_delete_at();
    }
    try_decode::<PutSecretValueResponse>(body);
    try_decode::<SecretNameResponse>(body);
    try_decode::<ListSecretVersionIdsResponse>(body);
    try_decode::<DescribeSecretResponse>(body);
    try_decode::<ListSecretsResponse>(body);
    try_decode::<CreateSecretResponse>(body);
    try_decode::<EmptyResponse>(body);
}

fn status(field: &[u8]) -> u16 {
    match field {
        [a, b, ..] => u16::from_le_bytes([*a, *b]),
        [a] => u16::from(*a),
        [] => 400,
    }
}

fn check_api_error(e: &ApiError) {
    assert!(e.message.chars().count() <= 513, "message not bounded");
    let lower = e.message.to_ascii_lowercase();
    for needle in ["string to sign", "stringtosign", "canonical request"] {
        assert!(!lower.contains(needle), "message keeps an echoed {needle}");
    }
    let _ = (e.reason(), e.is_retryable());
}

fn error_body(data: &[u8]) {
    let (_, fields) = split(data, 2);
    let code = status(fields[1]);
    let a = ApiError::parse(code, fields[0], Some("header-request-id-a"));
    let b = ApiError::parse(code, fields[0], Some("header-request-id-b"));
    check_api_error(&a);
    // What is shown depends on code, status and message only: never on the request id (kept
    // apart so messages do not churn) nor host or recommendation.
    let bare = ApiError {
        code: a.code.clone(),
        message: a.message.clone(),
        http_status: a.http_status,
        request_id: None,
        host_id: None,
        recommend: None,
        retry_after: None,
    };
    assert_eq!(a.to_string(), bare.to_string());
    assert_eq!(
        a.request_id,
        b.request_id.clone().map(|id| {
            if id == "header-request-id-b" {
                "header-request-id-a".to_string()
            } else {
                id
            }
        })
    );
}

fn signature_echo(data: &[u8]) {
    let (_, fields) = split(data, 2);
    let prefix = text(fields[0]);
    let message = format!(
        "{prefix} server string to sign is:POST&%2F&AccessKeyId%3Dak%26SecretData%3D{CANARY}"
    );
    let body = serde_json::json!({
        "RequestId": "r-1",
        "Code": "SignatureDoesNotMatch",
        "Message": message,
    })
    .to_string();
    let e = ApiError::parse(status(fields[1]), body.as_bytes(), None);
    check_api_error(&e);
    if !prefix.contains(CANARY) {
        let shown = KmsError::Api(Box::new(e)).to_string();
        assert!(!shown.contains(CANARY), "the echoed SecretData is shown");
    }
}

/// Lists in every shape the service uses decode to the same items; numbers as numbers or strings.
fn list_shapes(rest: &[u8]) {
    let items: Vec<String> = rest.split(|b| *b == 0).map(text).collect();
    let total = rest
        .iter()
        .fold(0u64, |n, b| n.wrapping_mul(31).wrapping_add(u64::from(*b)));
    let mut shapes = vec![
        serde_json::json!(items),
        serde_json::json!({ "VersionStage": items }),
    ];
    if let [single] = items.as_slice()
        && !single.is_empty()
    {
        shapes.push(serde_json::json!({ "VersionStage": single }));
        shapes.push(serde_json::json!(single));
    }
    for shape in shapes {
        let body = serde_json::json!({"SecretName": "s", "VersionStages": shape}).to_string();
        let r = try_decode::<PutSecretValueResponse>(body.as_bytes()).expect("a list shape");
        assert_eq!(r.version_stages, items);
    }
    for count in [
        serde_json::json!(total),
        serde_json::json!(total.to_string()),
    ] {
        let body = serde_json::json!({"TotalCount": count, "SecretList": {"Secret": []}});
        let r = try_decode::<ListSecretsResponse>(body.to_string().as_bytes()).expect("a count");
        assert_eq!(r.total_count, total);
        assert!(r.secret_list.is_empty());
    }
}
