//! Request signing for the KMS RPC API: classic RPC `HMAC-SHA1` and V3 `ACS3-HMAC-SHA256`.
//!
//! Pure functions shared by the client (which signs) and the emulator (which verifies the same way
//! a real gateway does). Every test vector of `docs/kms-api.md` §2.5 is reproduced below.

use std::collections::BTreeMap;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// The V3 algorithm name, first word of the `Authorization` header.
pub const V3_ALGORITHM: &str = "ACS3-HMAC-SHA256";
/// `x-acs-content-sha256` of an empty body.
pub const EMPTY_BODY_SHA256: &str =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Alibaba's percent-encoding: keep `A-Z a-z 0-9 - _ . ~`, everything else `%XY` (uppercase hex).
pub fn percent_encode(value: &str) -> String {
    const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(value, KEEP).to_string()
}

/// Lowercase hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// `name=value&…` with both sides percent-encoded, in byte order of the names.
pub fn canonical_query(params: &BTreeMap<String, String>) -> String {
    params
        .iter()
        .map(|(name, value)| format!("{}={}", percent_encode(name), percent_encode(value)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Classic RPC string-to-sign over every parameter except `Signature` (query and form merged).
pub fn rpc_string_to_sign(method: &str, params: &BTreeMap<String, String>) -> String {
    let query = params
        .iter()
        .filter(|(name, _)| name.as_str() != "Signature")
        .map(|(name, value)| format!("{}={}", percent_encode(name), percent_encode(value)))
        .collect::<Vec<_>>()
        .join("&");
    format!(
        "{}&{}&{}",
        method.to_ascii_uppercase(),
        percent_encode("/"),
        percent_encode(&query)
    )
}

/// Classic RPC signature: Base64(HMAC-SHA1(secret + "&", string_to_sign)).
pub fn rpc_signature(access_key_secret: &str, string_to_sign: &str) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(format!("{access_key_secret}&").as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(string_to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// V3 canonical request. `headers` maps lowercase names to values (repeated values already
/// sorted and joined with `,`); exactly these headers are signed, in name order.
pub fn v3_canonical_request(
    method: &str,
    canonical_uri: &str,
    query: &BTreeMap<String, String>,
    headers: &BTreeMap<String, String>,
    hashed_payload: &str,
) -> String {
    let canonical_headers: String = headers
        .iter()
        .map(|(name, value)| format!("{name}:{}\n", value.trim()))
        .collect();
    format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        method.to_ascii_uppercase(),
        canonical_uri,
        canonical_query(query),
        canonical_headers,
        v3_signed_headers(headers),
        hashed_payload
    )
}

/// `SignedHeaders`: the sorted lowercase header names joined with `;`.
pub fn v3_signed_headers(headers: &BTreeMap<String, String>) -> String {
    headers
        .keys()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(";")
}

/// `ACS3-HMAC-SHA256\n<hex sha256 of the canonical request>`.
pub fn v3_string_to_sign(canonical_request: &str) -> String {
    format!(
        "{V3_ALGORITHM}\n{}",
        sha256_hex(canonical_request.as_bytes())
    )
}

/// V3 signature: lowercase hex HMAC-SHA256 keyed with the raw secret (no `&`).
pub fn v3_signature(access_key_secret: &str, string_to_sign: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(access_key_secret.as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(string_to_sign.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The `Authorization` header value of a V3 request.
pub fn v3_authorization(access_key_id: &str, signed_headers: &str, signature: &str) -> String {
    format!(
        "{V3_ALGORITHM} Credential={access_key_id},SignedHeaders={signed_headers},Signature={signature}"
    )
}

/// The parts of a V3 `Authorization` header, as a verifier needs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V3Authorization {
    pub access_key_id: String,
    pub signed_headers: Vec<String>,
    pub signature: String,
}

/// Parses `ACS3-HMAC-SHA256 Credential=…,SignedHeaders=…,Signature=…`; `None` when malformed.
pub fn parse_v3_authorization(header: &str) -> Option<V3Authorization> {
    let rest = header.trim().strip_prefix(V3_ALGORITHM)?.trim_start();
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (key, value) = part.trim().split_once('=')?;
        match key {
            "Credential" => credential = Some(value.to_string()),
            "SignedHeaders" => signed = Some(value.to_string()),
            "Signature" => signature = Some(value.to_string()),
            _ => return None,
        }
    }
    let signed_headers: Vec<String> = signed?
        .split(';')
        .filter(|h| !h.is_empty())
        .map(|h| h.to_ascii_lowercase())
        .collect();
    let (access_key_id, signature) = (credential?, signature?);
    if access_key_id.is_empty() || signature.is_empty() || signed_headers.is_empty() {
        return None;
    }
    Some(V3Authorization {
        access_key_id,
        signed_headers,
        signature,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn tv1_params() -> BTreeMap<String, String> {
        map(&[
            ("Timestamp", "2016-02-23T12:46:24Z"),
            ("Format", "XML"),
            ("AccessKeyId", "testid"),
            ("Action", "DescribeRegions"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"),
            ("Version", "2014-05-26"),
            ("SignatureVersion", "1.0"),
        ])
    }

    #[test]
    fn tv1_classic_rpc_get_and_post() {
        let sts = rpc_string_to_sign("GET", &tv1_params());
        assert_eq!(
            sts,
            "GET&%2F&AccessKeyId%3Dtestid%26Action%3DDescribeRegions%26Format%3DXML%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf%26SignatureVersion%3D1.0%26Timestamp%3D2016-02-23T12%253A46%253A24Z%26Version%3D2014-05-26"
        );
        assert_eq!(
            rpc_signature("testsecret", &sts),
            "OLeaidS1JvxuMvnyHOwuJ+uX5qY="
        );
        let post = rpc_string_to_sign("POST", &tv1_params());
        assert_eq!(
            rpc_signature("testsecret", &post),
            "MxbnVAM4w6sft9xjVpe/GCKueuk="
        );
    }

    #[test]
    fn rpc_string_to_sign_ignores_signature_param() {
        let mut params = tv1_params();
        let without = rpc_string_to_sign("GET", &params);
        params.insert("Signature".into(), "whatever".into());
        assert_eq!(rpc_string_to_sign("GET", &params), without);
    }

    #[test]
    fn tv2_v3_official_example() {
        let query = map(&[
            (
                "ImageId",
                "win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd",
            ),
            ("RegionId", "cn-shanghai"),
        ]);
        let headers = map(&[
            ("host", "ecs.cn-shanghai.aliyuncs.com"),
            ("x-acs-action", "RunInstances"),
            ("x-acs-content-sha256", EMPTY_BODY_SHA256),
            ("x-acs-date", "2023-10-26T10:22:32Z"),
            ("x-acs-signature-nonce", "3156853299f313e23d1673dc12e1703d"),
            ("x-acs-version", "2014-05-26"),
        ]);
        let canonical = v3_canonical_request("POST", "/", &query, &headers, EMPTY_BODY_SHA256);
        assert_eq!(
            canonical,
            "POST\n/\nImageId=win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd&RegionId=cn-shanghai\nhost:ecs.cn-shanghai.aliyuncs.com\nx-acs-action:RunInstances\nx-acs-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\nx-acs-date:2023-10-26T10:22:32Z\nx-acs-signature-nonce:3156853299f313e23d1673dc12e1703d\nx-acs-version:2014-05-26\n\nhost;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let sts = v3_string_to_sign(&canonical);
        assert_eq!(
            sts,
            "ACS3-HMAC-SHA256\n7ea06492da5221eba5297e897ce16e55f964061054b7695beedaac1145b1e259"
        );
        let signature = v3_signature("YourAccessKeySecret", &sts);
        assert_eq!(
            signature,
            "06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0"
        );
        assert_eq!(
            v3_authorization("YourAccessKeyId", &v3_signed_headers(&headers), &signature),
            "ACS3-HMAC-SHA256 Credential=YourAccessKeyId,SignedHeaders=host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version,Signature=06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0"
        );
    }

    #[test]
    fn tv3_sha256() {
        assert_eq!(
            sha256_hex(b"test"),
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
        assert_eq!(sha256_hex(b""), EMPTY_BODY_SHA256);
    }

    fn tv4_headers(action: &str) -> BTreeMap<String, String> {
        map(&[
            ("host", "kms.cn-hangzhou.aliyuncs.com"),
            ("x-acs-action", action),
            ("x-acs-content-sha256", EMPTY_BODY_SHA256),
            ("x-acs-date", "2024-05-01T08:00:00Z"),
            ("x-acs-signature-nonce", "0123456789abcdef0123456789abcdef"),
            ("x-acs-version", "2016-01-20"),
        ])
    }

    fn tv4_query() -> BTreeMap<String, String> {
        map(&[
            ("SecretName", "prod/db-password"),
            ("VersionStage", "ACSCurrent"),
        ])
    }

    #[test]
    fn tv4_v3_get_secret_value_go_style() {
        let canonical = v3_canonical_request(
            "POST",
            "/",
            &tv4_query(),
            &tv4_headers("GetSecretValue"),
            EMPTY_BODY_SHA256,
        );
        assert!(canonical.contains("\nSecretName=prod%2Fdb-password&VersionStage=ACSCurrent\n"));
        let sts = v3_string_to_sign(&canonical);
        assert_eq!(
            sts,
            "ACS3-HMAC-SHA256\n9a9c43560aad0960550062f1e99c0a8ecf822cade454b547a62e3842609a7f47"
        );
        assert_eq!(
            v3_signature("testAccessKeySecret", &sts),
            "521aece0b0a04901e0d5e2d61cffe909dfa768bb97b3f196b015debca777f600"
        );
    }

    #[test]
    fn tv5_v3_python_style_signed_headers() {
        let mut headers = tv4_headers("GetSecretValue");
        headers.insert("accept".into(), "application/json".into());
        headers.insert(
            "user-agent".into(),
            "AlibabaCloud (Linux; x86_64) Python/3.11.9 Core/0.4.6 TeaDSL/2".into(),
        );
        assert_eq!(
            v3_signed_headers(&headers),
            "accept;host;user-agent;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version"
        );
        let sts = v3_string_to_sign(&v3_canonical_request(
            "POST",
            "/",
            &tv4_query(),
            &headers,
            EMPTY_BODY_SHA256,
        ));
        assert_eq!(
            sts,
            "ACS3-HMAC-SHA256\ncdb62f9e2870274c3a763c93af3ca2e2c0e00fc75325e9c2b7315279dbc18078"
        );
        assert_eq!(
            v3_signature("testAccessKeySecret", &sts),
            "d6bcaae14d0a4363a3fa2cef0669ce925801a60272adc3557a1f1d5bffe2f0f1"
        );
    }

    #[test]
    fn tv6_v3_put_secret_value_with_form_body() {
        let body = "SecretData=%7B%22user%22%3A%22admin%22%2C%22pass%22%3A%22p%40ss+w0rd~%2A%22%7D";
        let payload = sha256_hex(body.as_bytes());
        assert_eq!(
            payload,
            "96a2e57557122f6b095314aaa41ec767307a608411c598c46e750d35c66fb57b"
        );
        let query = map(&[
            ("SecretName", "prod/db-password"),
            ("VersionId", "v2"),
            ("VersionStages", "[\"ACSCurrent\"]"),
        ]);
        assert_eq!(
            canonical_query(&query),
            "SecretName=prod%2Fdb-password&VersionId=v2&VersionStages=%5B%22ACSCurrent%22%5D"
        );
        let mut headers = tv4_headers("PutSecretValue");
        headers.insert("x-acs-content-sha256".into(), payload.clone());
        headers.insert(
            "content-type".into(),
            "application/x-www-form-urlencoded".into(),
        );
        assert_eq!(
            v3_signed_headers(&headers),
            "content-type;host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version"
        );
        let sts = v3_string_to_sign(&v3_canonical_request(
            "POST", "/", &query, &headers, &payload,
        ));
        assert_eq!(
            sts,
            "ACS3-HMAC-SHA256\n6912ee710679d73a287a5c1f22751c80f972cf5e553866c2a1425c735c673763"
        );
        assert_eq!(
            v3_signature("testAccessKeySecret", &sts),
            "7cc5e903c910edbd3503b66a5e4275540b4ba2cbcf7659389230d4be714290e0"
        );
    }

    #[test]
    fn percent_encoding_matches_alibaba_rules() {
        assert_eq!(percent_encode("a b*c~d/é"), "a%20b%2Ac~d%2F%C3%A9");
        assert_eq!(percent_encode("AZaz09-_.~"), "AZaz09-_.~");
    }

    #[test]
    fn authorization_round_trips_and_rejects_malformed() {
        let header = v3_authorization("ak", "host;x-acs-date", "abc");
        let parsed = parse_v3_authorization(&header).expect("well-formed");
        assert_eq!(parsed.access_key_id, "ak");
        assert_eq!(parsed.signed_headers, vec!["host", "x-acs-date"]);
        assert_eq!(parsed.signature, "abc");
        assert!(parse_v3_authorization("ACS3-HMAC-SHA256 Credential=ak,Signature=abc").is_none());
        assert!(
            parse_v3_authorization("HMAC-SHA1 Credential=ak,SignedHeaders=host,Signature=x")
                .is_none()
        );
        assert!(
            parse_v3_authorization("ACS3-HMAC-SHA256 Credential=,SignedHeaders=host,Signature=x")
                .is_none()
        );
    }
}
