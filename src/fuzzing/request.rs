//! Target `request`: the emulator's request parsing and action dispatch — query and form decoding,
//! the merged [`Params`](crate::emulator::params::Params), the action name, then the KMS or STS
//! action on a store holding one secret.
//!
//! Flags bit 0: the body is a form (`content-type: application/x-www-form-urlencoded`); bit 1:
//! the action comes from an `x-acs-action` header (field 2) instead of the `Action` parameter.
//! Fields: query string, body, header action.
//!
//! Properties: decoding round-trips through the form encoder; errors carry a code and a 4xx/5xx
//! status and never echo the stored value or a `SecretData` sent; a store that took a change still
//! has one `ACSCurrent` per secret, no stage twice, and survives its state-file JSON round trip.

use std::collections::BTreeSet;

use axum::http::{HeaderMap, HeaderValue};
use jiff::Timestamp;

use super::{split, text};
use crate::emulator::api::{decode, is_form};
use crate::emulator::auth::{Keyring, RawRequest};
use crate::emulator::error::KmsError;
use crate::emulator::params::Params;
use crate::emulator::store::{ACS_CURRENT, CreateSecretReq, Semantics, Store};
use crate::emulator::{StsConfig, actions, sts};

/// The value stored before each call; no answer but a successful read may contain it.
const STORED: &str = "KmsyncFuzzStored9c1e";

/// The fuzz target.
pub fn request(data: &[u8]) {
    let (flags, fields) = split(data, 3);
    let query = decode(fields[0]);
    round_trips(&query);
    let mut headers = HeaderMap::new();
    if flags & 1 != 0 {
        headers.insert(
            "content-type",
            HeaderValue::from_static("application/x-www-form-urlencoded; charset=utf-8"),
        );
    }
    if flags & 2 != 0
        && let Ok(action) = HeaderValue::from_str(&text(fields[2]))
    {
        headers.insert("x-acs-action", action);
    }
    let form = if is_form(&headers) {
        decode(fields[1])
    } else {
        Vec::new()
    };
    round_trips(&form);
    let raw = RawRequest {
        method: "POST",
        path: "/",
        query,
        form,
        headers: &headers,
        body: fields[1],
    };
    let params = raw.params();
    let action = raw
        .header("x-acs-action")
        .or_else(|| params.opt("Action"))
        .unwrap_or("")
        .to_string();
    let (store, result) = run(&action, &params);
    let mentions = |needle: &str, skip: &str| {
        params
            .0
            .iter()
            .filter(|(k, _)| k.as_str() != skip)
            .any(|(k, v)| k.contains(needle) || v.contains(needle))
    };
    match &result {
        Ok(body) => {
            let reads = matches!(action.as_str(), "GetSecretValue" | "BatchGetSecretValue");
            if !reads && !mentions(STORED, "") {
                assert!(
                    !body.to_string().contains(STORED),
                    "{action} answers the value"
                );
            }
        }
        Err(e) => {
            assert!(!e.code.is_empty(), "an error without a code");
            assert!((400..600).contains(&e.status), "status {}", e.status);
            if !mentions(STORED, "") {
                assert!(!e.message.contains(STORED), "{} echoes the value", e.code);
            }
            let sent = params.opt("SecretData").unwrap_or_default();
            if !sent.is_empty() && e.message.contains(sent) && !mentions(sent, "SecretData") {
                // Text that merely matches the message's own words is no echo: the same call
                // with another value of the same length must then still contain it.
                let mut other = params.clone();
                other.0.insert("SecretData".into(), "Z".repeat(sent.len()));
                let again = run(&action, &other).1.err().map(|e| e.message);
                assert!(
                    again.is_some_and(|m| m.contains(sent)),
                    "{} echoes SecretData",
                    e.code
                );
            }
        }
    }
    if result.is_ok() && actions::is_mutating(&action) {
        check_store(&store);
    }
}

/// A store holding one secret, and the answer of `action` on it.
fn run(action: &str, params: &Params) -> (Store, Result<serde_json::Value, KmsError>) {
    let now: Timestamp = "2026-01-01T00:00:00Z".parse().expect("a valid timestamp");
    let mut store = Store::new("cn-hangzhou", Semantics::default());
    store
        .create_secret(
            CreateSecretReq {
                name: "fuzz/db".into(),
                data: STORED.into(),
                version_id: "v1".into(),
                ..Default::default()
            },
            now,
        )
        .expect("a fresh store takes one secret");
    let result = if sts::is_sts_action(action) {
        sts::dispatch(
            action,
            params,
            Some("fuzzAccessKeyId"),
            &mut Keyring::new(&[]),
            &StsConfig::default(),
            None,
            now,
        )
    } else {
        actions::dispatch(&mut store, action, params, now)
    };
    (store, result)
}

/// Decoded pairs encode and decode back to themselves.
fn round_trips(pairs: &[(String, String)]) {
    let encoded = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    assert_eq!(
        decode(encoded.as_bytes()),
        pairs,
        "form encoding round trip"
    );
}

fn check_store(store: &Store) {
    for (name, secret) in &store.secrets {
        let holders = secret
            .versions
            .iter()
            .filter(|v| v.stages.iter().any(|s| s == ACS_CURRENT))
            .count();
        assert_eq!(
            holders, 1,
            "secret {name}: ACSCurrent on {holders} versions"
        );
        let mut seen = BTreeSet::new();
        for stage in secret.versions.iter().flat_map(|v| &v.stages) {
            assert!(seen.insert(stage), "secret {name}: stage {stage} twice");
        }
    }
    let json = serde_json::to_string(store).expect("a store serializes");
    let back: Store = serde_json::from_str(&json).expect("the state file reads back");
    assert_eq!(
        serde_json::to_string(&back).expect("a store serializes"),
        json,
        "state file round trip"
    );
}
