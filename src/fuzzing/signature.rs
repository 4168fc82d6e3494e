//! Target `signature`: the emulator's verifier (`emulator::auth`) against the client's signer
//! (`kms::request`), for classic RPC HMAC-SHA1 and V3 ACS3-HMAC-SHA256.
//!
//! Flags bit 0 clear — round trip. Fields: secret name, secret data (form body when not empty),
//! version stage, security token, mutation (`[part, position low, position high, xor]`). A request
//! signed by our client (bit 1: RPC instead of V3; bit 2: with the token) verifies, its replay is
//! refused as a reused nonce, and one changed byte in anything signed makes it fail.
//!
//! Flags bit 0 set — raw request. Fields: query string, body, headers (`name: value` lines),
//! method. The verifier must not panic, and a `SecretData` canary never shows in its error.

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use jiff::Timestamp;

use super::{split, text};
use crate::emulator::api::{decode, is_form};
use crate::emulator::auth::{Keyring, RawRequest, authenticate};
use crate::emulator::{AccessKey, AuthConfig};
use crate::kms::credentials::Credentials;
use crate::kms::endpoint::Endpoint;
use crate::kms::request::{self, Params, PreparedRequest, SignatureStyle, Stamp};
use crate::kms::secret::SecretString;
use crate::kms::sign;

const KEY_ID: &str = "fuzzAccessKeyId";
const KEY_SECRET: &str = "fuzzAccessKeySecret";
const DATE: &str = "2024-05-01T08:00:00Z";
const NONCE: &str = "0123456789abcdef0123456789abcdef";
const CANARY: &str = "KmsyncFuzzCanary7f3a";

/// The fuzz target.
pub fn signature(data: &[u8]) {
    if data.first().is_some_and(|f| f & 1 == 1) {
        raw_request(data);
    } else {
        round_trip(data);
    }
}

fn now() -> Timestamp {
    DATE.parse().expect("a valid timestamp")
}

fn keyring(token: Option<&str>) -> Keyring {
    Keyring::new(&[AccessKey {
        id: KEY_ID.into(),
        secret: KEY_SECRET.into(),
        security_token: token.map(Into::into),
    }])
}

/// What the emulator's HTTP layer would see of a prepared request.
struct Wire {
    path: String,
    query: Vec<(String, String)>,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Wire {
    fn from_prepared(prepared: &PreparedRequest) -> Option<Self> {
        let url = reqwest::Url::parse(&prepared.url).ok()?;
        let mut headers = HeaderMap::new();
        for (name, value) in &prepared.headers {
            // A value the HTTP stack would refuse never reaches the verifier.
            let value = HeaderValue::from_str(value).ok()?;
            headers.append(HeaderName::from_bytes(name.as_bytes()).ok()?, value);
        }
        Some(Self {
            path: url.path().to_string(),
            query: decode(url.query().unwrap_or("").as_bytes()),
            headers,
            body: prepared.body.clone(),
        })
    }

    fn verify(&self, form: Vec<(String, String)>, keyring: &mut Keyring) -> Result<String, String> {
        let req = RawRequest {
            method: "POST",
            path: &self.path,
            query: self.query.clone(),
            form,
            headers: &self.headers,
            body: &self.body,
        };
        authenticate(&req, keyring, &AuthConfig::default(), now()).map_err(|e| e.code)
    }

    fn form(&self) -> Vec<(String, String)> {
        if is_form(&self.headers) {
            decode(&self.body)
        } else {
            Vec::new()
        }
    }
}

fn round_trip(data: &[u8]) {
    let (flags, fields) = split(data, 5);
    let style = if flags & 2 == 0 {
        SignatureStyle::V3
    } else {
        SignatureStyle::Rpc
    };
    let token = (flags & 4 != 0).then(|| text(fields[3]));
    let mut params = Params::new();
    params.set("SecretName", text(fields[0]));
    let secret_data = text(fields[1]);
    if !secret_data.is_empty() {
        params.set_form("SecretData", SecretString::new(secret_data));
    }
    if !fields[2].is_empty() {
        params.set("VersionStage", text(fields[2]));
    }
    let mut creds = Credentials::access_key(KEY_ID, KEY_SECRET);
    if let Some(token) = &token {
        // An empty token is no token; one with surrounding blanks is not a header value a
        // server sees intact (HTTP trims them), so neither makes a meaningful case.
        if token.is_empty() || token.trim() != token {
            return;
        }
        creds = creds.with_security_token(token.clone());
    }
    let action = if params.form().is_empty() {
        "GetSecretValue"
    } else {
        "PutSecretValue"
    };
    let endpoint = Endpoint::parse("http://127.0.0.1:8443").expect("a valid endpoint");
    let stamp = Stamp::fixed(DATE, NONCE);
    let prepared = request::prepare(
        style,
        &endpoint,
        action,
        request::KMS_API_VERSION,
        &params,
        &creds,
        &stamp,
    );
    let Some(wire) = Wire::from_prepared(&prepared) else {
        return;
    };
    let mut ring = keyring(token.as_deref());
    let verdict = wire.verify(wire.form(), &mut ring);
    assert_eq!(
        verdict.as_deref(),
        Ok(KEY_ID),
        "{style:?}: a request signed by the client must verify"
    );
    assert_eq!(
        wire.verify(wire.form(), &mut ring),
        Err("SignatureNonceUsed".to_string()),
        "{style:?}: a replay must be refused"
    );
    let mutation = fields[4];
    if mutation.len() >= 4 && mutation[3] != 0 {
        let position = usize::from(u16::from_le_bytes([mutation[1], mutation[2]]));
        mutate_and_verify(&wire, style, mutation[0], position, mutation[3], token);
    }
}

/// XORs one byte of a string; `None` when that leaves invalid UTF-8.
fn flip(value: &str, position: usize, xor: u8) -> Option<String> {
    if value.is_empty() {
        return None;
    }
    let mut bytes = value.as_bytes().to_vec();
    let i = position % bytes.len();
    bytes[i] ^= xor;
    String::from_utf8(bytes).ok()
}

/// Changes one byte of one signed part (chosen by `part`) and checks the result is refused.
fn mutate_and_verify(
    wire: &Wire,
    style: SignatureStyle,
    part: u8,
    position: usize,
    xor: u8,
    token: Option<String>,
) {
    let mut changed = Wire {
        path: wire.path.clone(),
        query: wire.query.clone(),
        headers: wire.headers.clone(),
        body: wire.body.clone(),
    };
    let mut form = wire.form();
    let pick = |n: usize| usize::from(part / 4) % n.max(1);
    // `what` names the mutated part for the assertion message (never a value).
    let what = match (style, part % 4) {
        // A query parameter's name or value (both signed in either style).
        (_, 0 | 1) if !changed.query.is_empty() => {
            let i = pick(changed.query.len());
            let pair = &mut changed.query[i];
            let slot = if part.is_multiple_of(4) {
                &mut pair.0
            } else {
                &mut pair.1
            };
            let Some(new) = flip(slot, position, xor) else {
                return;
            };
            *slot = new;
            format!("query parameter #{i}")
        }
        // RPC signs the decoded form parameters; V3 signs the raw body bytes.
        (SignatureStyle::Rpc, 2) if !form.is_empty() => {
            let i = pick(form.len());
            let Some(new) = flip(&form[i].1, position, xor) else {
                return;
            };
            form[i].1 = new;
            format!("form parameter #{i}")
        }
        (SignatureStyle::V3, 2) if !changed.body.is_empty() => {
            let i = position % changed.body.len();
            changed.body[i] ^= xor;
            form = if is_form(&changed.headers) {
                decode(&changed.body)
            } else {
                Vec::new()
            };
            "body".to_string()
        }
        // V3: one signed header's value, or the Authorization header itself.
        (SignatureStyle::V3, 3) => {
            let original = wire
                .headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let parsed = sign::parse_v3_authorization(&original).expect("the client's header");
            let names = &parsed.signed_headers;
            let i = usize::from(part / 4) % (names.len() + 1);
            let name = names.get(i).map_or("authorization", String::as_str);
            let value = wire
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let Some(new) = flip(value, position, xor) else {
                return;
            };
            let Ok(new_value) = HeaderValue::from_str(&new) else {
                return;
            };
            if name == "authorization"
                && sign::parse_v3_authorization(&new).as_ref() == Some(&parsed)
            {
                // Same parts (header names are case-insensitive, blanks around them are not
                // content): the same signed request, so it may verify.
                return;
            }
            changed.headers.insert(
                HeaderName::from_bytes(name.as_bytes()).expect("a signed header name"),
                new_value,
            );
            format!("header {name}")
        }
        _ => return,
    };
    let verdict = changed.verify(form, &mut keyring(token.as_deref()));
    assert!(
        verdict.is_err(),
        "{style:?}: one changed byte in the {what} must not verify"
    );
}

fn raw_request(data: &[u8]) {
    let (_, fields) = split(data, 4);
    let mut headers = HeaderMap::new();
    for line in text(fields[2]).lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.trim().as_bytes()),
            HeaderValue::from_str(value.trim()),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    let method = text(fields[3]);
    let mut form = if is_form(&headers) {
        decode(fields[1])
    } else {
        Vec::new()
    };
    // The form wins over the query, so this canary is the SecretData the verifier sees.
    form.push(("SecretData".into(), CANARY.into()));
    let req = RawRequest {
        method: if method.is_empty() { "POST" } else { &method },
        path: "/",
        query: decode(fields[0]),
        form,
        headers: &headers,
        body: fields[1],
    };
    let mut ring = keyring(None);
    match authenticate(&req, &mut ring, &AuthConfig::default(), now()) {
        Ok(id) => assert_eq!(id, KEY_ID),
        Err(e) => {
            let leaked = e.message.contains(CANARY) || e.code.contains(CANARY);
            let in_input = data.windows(CANARY.len()).any(|w| w == CANARY.as_bytes());
            assert!(
                !leaked || in_input,
                "the verifier's {} error echoes SecretData",
                e.code
            );
            assert!((400..600).contains(&e.status), "status {}", e.status);
        }
    }
}
