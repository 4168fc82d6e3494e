//! Replays the fuzz corpus under plain `cargo test`: every committed seed (`fuzz/seeds/<target>/`)
//! and every input a fuzzer found (`fuzz/regressions/<target>/`) through its target's body in
//! `kmsync::fuzzing` (which asserts the target's properties), then checks what each found input
//! must do now, beyond not panicking.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kmsync::controller::schedule::refresh_interval;
use kmsync::crd::duration::{self, DurationError};
use kmsync::crd::rotation::RotationSpec;
use kmsync::fuzzing::TARGETS;
use kmsync::rotation::schedule::{earliest_allowed, min_interval, next_scheduled};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The files of `fuzz/<kind>/<target>/`, sorted; none when the folder does not exist.
fn inputs(kind: &str, target: &str) -> Vec<(String, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(fuzz_dir().join(kind).join(target)) else {
        return Vec::new();
    };
    let mut files: Vec<(String, Vec<u8>)> = entries
        .map(|e| e.expect("a readable folder").path())
        .filter(|p| p.is_file())
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).expect("a readable input"))
        })
        .collect();
    files.sort();
    files
}

/// One found input by name.
fn regression(target: &str, name: &str) -> Vec<u8> {
    inputs("regressions", target)
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("fuzz/regressions/{target}/{name} is missing"))
        .1
}

#[test]
fn every_seed_and_found_input_passes_its_target() {
    for (target, run) in TARGETS {
        let seeds = inputs("seeds", target);
        assert!(
            seeds.len() >= 5,
            "fuzz/seeds/{target} has {} seeds",
            seeds.len()
        );
        for (name, data) in seeds.iter().chain(&inputs("regressions", target)) {
            eprintln!("{target}: {name}");
            run(data);
        }
    }
}

#[test]
fn every_fuzz_target_has_a_body_and_seeds() {
    let entries = std::fs::read_dir(fuzz_dir().join("fuzz_targets")).expect("fuzz/fuzz_targets");
    let mut files: Vec<String> = entries
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|n| n.strip_suffix(".rs").map(str::to_string))
        .collect();
    files.sort();
    let names: Vec<&str> = TARGETS.iter().map(|(n, _)| *n).collect();
    assert_eq!(files, names);
}

fn rotation(field: &str, value: &str) -> RotationSpec {
    serde_json::from_value(serde_json::json!({ field: value })).unwrap()
}

/// Found while writing the `schedule` target: kube's Go-duration parser panics on values out of range, and a
/// `minInterval` (no CEL bound) or a webhook `timeout` lets them reach the reconciler.
#[test]
fn durations_out_of_range_are_errors_not_panics() {
    let data = regression("schedule", "duration-overflow-hours");
    kmsync::fuzzing::schedule(&data);
    let text = std::str::from_utf8(&data[1..]).unwrap();
    assert_eq!(text, "9999999999999999h");
    assert_eq!(duration::parse(text), Err(DurationError::OutOfRange));
    assert_eq!(
        refresh_interval(Some(text)).unwrap_err(),
        format!(
            "refreshInterval {text:?} is not a duration: out of range (at most 2562047h47m16.854775807s)"
        )
    );
    let spec = rotation("minInterval", text);
    assert!(min_interval(&spec).unwrap_err().contains("out of range"));
    assert!(earliest_allowed(&spec, Some(jiff::Timestamp::UNIX_EPOCH)).is_err());
    let spec = rotation("interval", text);
    assert!(next_scheduled(&spec, jiff::Timestamp::UNIX_EPOCH).is_err());
    // The largest Go duration still parses, one nanosecond more does not.
    assert_eq!(
        duration::parse_non_negative("2562047h47m16.854775807s"),
        Ok(Duration::from_nanos(i64::MAX as u64))
    );
    assert_eq!(
        duration::parse("2562047h47m16.854775808s"),
        Err(DurationError::OutOfRange)
    );
}

/// Found while writing the `schedule` target: a negative term after the first one (`1s-1s`) made kube's
/// parser panic; Go reads `s-` as an unknown unit.
#[test]
fn a_negative_term_inside_a_duration_is_an_unknown_unit() {
    let data = regression("schedule", "duration-negative-term");
    kmsync::fuzzing::schedule(&data);
    let text = std::str::from_utf8(&data[1..]).unwrap();
    assert_eq!(text, "1s-1s");
    assert_eq!(
        duration::parse(text),
        Err(DurationError::UnknownUnit("s-".into()))
    );
    assert!(
        min_interval(&rotation("minInterval", text))
            .unwrap_err()
            .contains("unknown unit")
    );
}

/// Found by the `signature` target: a V3 request whose security token has non-ASCII characters
/// (legal in an HTTP header value) was refused as `SignatureDoesNotMatch`, because the emulator
/// read only visible-ASCII header values and signed the token as empty.
#[test]
fn a_v3_token_with_non_ascii_characters_verifies() {
    use axum::http::{HeaderMap, HeaderName, HeaderValue};
    use kmsync::emulator::auth::{Keyring, RawRequest, authenticate};
    use kmsync::emulator::{AccessKey, AuthConfig};
    use kmsync::kms::request::{self, Params, SignatureStyle, Stamp};
    use kmsync::kms::{Credentials, Endpoint};

    kmsync::fuzzing::signature(&regression("signature", "v3-non-ascii-token"));
    let token = "CAIS\u{fffd}sts+/=tök";
    let mut params = Params::new();
    params.set("SecretName", "prod/db");
    let prepared = request::prepare(
        SignatureStyle::V3,
        &Endpoint::parse("http://127.0.0.1:8443").unwrap(),
        "GetSecretValue",
        request::KMS_API_VERSION,
        &params,
        &Credentials::access_key("ak", "sk").with_security_token(token),
        &Stamp::fixed("2024-05-01T08:00:00Z", "n-1"),
    );
    let mut headers = HeaderMap::new();
    for (name, value) in &prepared.headers {
        headers.insert(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    let req = RawRequest {
        method: "POST",
        path: "/",
        query: vec![("SecretName".into(), "prod/db".into())],
        form: vec![],
        headers: &headers,
        body: b"",
    };
    let key = AccessKey {
        id: "ak".into(),
        secret: "sk".into(),
        security_token: Some(token.into()),
    };
    let now = "2024-05-01T08:00:00Z".parse().unwrap();
    let verified = authenticate(&req, &mut Keyring::new(&[key]), &AuthConfig::default(), now);
    assert_eq!(verified.map_err(|e| e.code), Ok("ak".to_string()));
    // A different non-ASCII token is still refused as not matching the key.
    let other = AccessKey {
        id: "ak".into(),
        secret: "sk".into(),
        security_token: Some("CAIS\u{fffd}sts+/=tok".into()),
    };
    let refused = authenticate(
        &req,
        &mut Keyring::new(&[other]),
        &AuthConfig::default(),
        now,
    );
    assert_eq!(
        refused.map_err(|e| e.code),
        Err("InvalidSecurityToken.MismatchWithAccessKey".to_string())
    );
}
