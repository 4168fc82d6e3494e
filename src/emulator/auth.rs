//! Server-side request authentication exactly as the shared gateway does it (kms-api.md §2.4):
//! classic RPC HMAC-SHA1 and V3 ACS3-HMAC-SHA256 verified with `kms::sign`, clock skew, nonce
//! replay, unknown AccessKeys and STS tokens (static or issued by the emulator's STS).

use std::collections::{BTreeMap, HashMap};

use axum::http::{HeaderMap, HeaderValue};
use jiff::{SignedDuration, Timestamp};

use super::config::{AccessKey, AuthConfig};
use super::error::KmsError;
use super::params::Params;
use crate::kms::sign;

/// Keyring size beyond which expired STS credentials are forgotten.
pub const MAX_KEYS: usize = 4096;

/// A known credential: its secret, the STS token it requires and when it expires.
#[derive(Clone)]
pub struct KnownKey {
    pub secret: String,
    pub token: Option<String>,
    pub expires: Option<Timestamp>,
}

impl std::fmt::Debug for KnownKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KnownKey")
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

/// Static keys from the config plus credentials issued by STS/metadata; nonces seen recently.
#[derive(Debug, Default)]
pub struct Keyring {
    keys: HashMap<String, KnownKey>,
    nonces: HashMap<String, Timestamp>,
}

impl Keyring {
    pub fn new(keys: &[AccessKey]) -> Self {
        let keys = keys
            .iter()
            .map(|k| {
                let known = KnownKey {
                    secret: k.secret.clone(),
                    token: k.security_token.clone(),
                    expires: None,
                };
                (k.id.clone(), known)
            })
            .collect();
        Self {
            keys,
            nonces: HashMap::new(),
        }
    }

    /// Registers issued credentials. Expired ones are remembered (so a caller still holding one
    /// gets `InvalidSecurityToken.Expired`, not `InvalidAccessKeyId.NotFound`) and forgotten only
    /// once the keyring grows past [`MAX_KEYS`].
    pub fn issue(&mut self, id: String, key: KnownKey, now: Timestamp) {
        if self.keys.len() >= MAX_KEYS {
            self.keys.retain(|_, k| k.expires.is_none_or(|e| e > now));
        }
        self.keys.insert(id, key);
    }

    /// Ends every issued credential still valid at `now` (an STS session cut short, or a server
    /// clock ahead of the client's): callers holding one get `InvalidSecurityToken.Expired` and
    /// must fetch new credentials. Static keys are untouched. Returns how many were ended.
    pub fn expire_issued(&mut self, now: Timestamp) -> usize {
        let mut ended = 0;
        for key in self.keys.values_mut() {
            if key.expires.is_some_and(|e| e > now) {
                key.expires = Some(now);
                ended += 1;
            }
        }
        ended
    }

    fn lookup(&self, id: &str, now: Timestamp) -> Result<&KnownKey, KmsError> {
        let key = self.keys.get(id).ok_or_else(|| {
            KmsError::new(
                "InvalidAccessKeyId.NotFound",
                404,
                "Specified access key is not found.",
            )
        })?;
        if key.expires.is_some_and(|e| e <= now) {
            return Err(KmsError::new(
                "InvalidSecurityToken.Expired",
                400,
                "Specified SecurityToken is expired.",
            ));
        }
        Ok(key)
    }

    /// Records a nonce; `SignatureNonceUsed` on replay inside the window.
    fn use_nonce(
        &mut self,
        id: &str,
        nonce: &str,
        now: Timestamp,
        window: i64,
    ) -> Result<(), KmsError> {
        if self.nonces.len() >= 4096 {
            let cutoff = now - SignedDuration::from_secs(2 * window);
            self.nonces.retain(|_, seen| *seen > cutoff);
        }
        if self.nonces.insert(format!("{id}\n{nonce}"), now).is_some() {
            return Err(KmsError::new(
                "SignatureNonceUsed",
                400,
                "Specified signature nonce was used already.",
            ));
        }
        Ok(())
    }
}

/// The raw parts of a request that signatures cover.
#[derive(Debug)]
pub struct RawRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: Vec<(String, String)>,
    pub form: Vec<(String, String)>,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

impl RawRequest<'_> {
    /// Query and form merged (form wins).
    pub fn params(&self) -> Params {
        Params(self.query.iter().chain(&self.form).cloned().collect())
    }

    /// A header value as UTF-8: the bytes a client signed, not only visible ASCII (`to_str`),
    /// so a value with other characters fails as a mismatch of what was signed, not silently.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(header_text)
    }

    pub fn is_v3(&self) -> bool {
        self.header("authorization").is_some()
    }

    /// True when the request carries no signature at all (anonymous STS calls).
    pub fn is_anonymous(&self) -> bool {
        !self.is_v3()
            && !self
                .query
                .iter()
                .chain(&self.form)
                .any(|(k, _)| k == "Signature")
    }
}

fn incomplete() -> KmsError {
    KmsError::new(
        "IncompleteSignature",
        400,
        "The request signature does not conform to Aliyun standards.",
    )
}

fn mismatch(cfg: &AuthConfig, string_to_sign: &str) -> KmsError {
    KmsError::new(
        "SignatureDoesNotMatch",
        cfg.signature_mismatch_status,
        format!(
            "Specified signature is not matched with our calculation. server string to sign is:{string_to_sign}"
        ),
    )
}

fn check_time(value: Option<&str>, now: Timestamp, cfg: &AuthConfig) -> Result<(), KmsError> {
    let illegal = || {
        KmsError::new(
            "IllegalTimestamp",
            400,
            "The input parameter \"Timestamp\" that is mandatory for processing this request is not supplied.",
        )
    };
    let ts: Timestamp = value.ok_or_else(illegal)?.parse().map_err(|_| illegal())?;
    if now.duration_since(ts).as_secs().abs() > cfg.max_skew_secs {
        return Err(KmsError::new(
            "InvalidTimeStamp.Expired",
            400,
            "Specified time stamp or date value is expired.",
        ));
    }
    Ok(())
}

fn check_token(key: &KnownKey, given: Option<&str>) -> Result<(), KmsError> {
    if key.token.as_deref() != given.filter(|t| !t.is_empty()) {
        return Err(KmsError::new(
            "InvalidSecurityToken.MismatchWithAccessKey",
            400,
            "Specified SecurityToken mismatch with the AccessKey.",
        ));
    }
    Ok(())
}

/// Verifies the request; returns the AccessKey id that signed it.
pub fn authenticate(
    req: &RawRequest<'_>,
    keyring: &mut Keyring,
    cfg: &AuthConfig,
    now: Timestamp,
) -> Result<String, KmsError> {
    if req.is_v3() {
        verify_v3(req, keyring, cfg, now)
    } else {
        verify_v1(req, keyring, cfg, now)
    }
}

fn verify_v1(
    req: &RawRequest<'_>,
    keyring: &mut Keyring,
    cfg: &AuthConfig,
    now: Timestamp,
) -> Result<String, KmsError> {
    let params = req.params();
    let (Some(id), Some(signature), Some(nonce)) = (
        params.opt("AccessKeyId"),
        params.opt("Signature"),
        params.opt("SignatureNonce"),
    ) else {
        return Err(incomplete());
    };
    let method_ok = params.opt("SignatureMethod") == Some("HMAC-SHA1");
    if !method_ok || params.opt("SignatureVersion") != Some("1.0") {
        return Err(incomplete());
    }
    check_time(params.opt("Timestamp"), now, cfg)?;
    let key = keyring.lookup(id, now)?.clone();
    let string_to_sign = sign::rpc_string_to_sign(req.method, &params.0);
    if sign::rpc_signature(&key.secret, &string_to_sign) != signature {
        // The gateway echoes its string-to-sign; secret values are redacted from the echo.
        let mut shown = params.0.clone();
        if let Some(v) = shown.get_mut("SecretData") {
            *v = "<redacted>".to_string();
        }
        return Err(mismatch(cfg, &sign::rpc_string_to_sign(req.method, &shown)));
    }
    check_token(&key, params.opt("SecurityToken"))?;
    if cfg.check_nonce {
        keyring.use_nonce(id, nonce, now, cfg.max_skew_secs)?;
    }
    Ok(id.to_string())
}

fn header_text(value: &HeaderValue) -> Option<&str> {
    std::str::from_utf8(value.as_bytes()).ok()
}

/// The value of one signed header: all occurrences trimmed, sorted and joined with `,`.
fn header_value(headers: &HeaderMap, name: &str) -> String {
    let mut values: Vec<&str> = headers
        .get_all(name)
        .iter()
        .filter_map(header_text)
        .map(str::trim)
        .collect();
    values.sort_unstable();
    values.join(",")
}

fn verify_v3(
    req: &RawRequest<'_>,
    keyring: &mut Keyring,
    cfg: &AuthConfig,
    now: Timestamp,
) -> Result<String, KmsError> {
    let auth = req
        .header("authorization")
        .and_then(sign::parse_v3_authorization)
        .ok_or_else(incomplete)?;
    if cfg
        .required_v3_headers
        .iter()
        .any(|h| !auth.signed_headers.contains(h))
    {
        return Err(incomplete());
    }
    check_time(req.header("x-acs-date"), now, cfg)?;
    let key = keyring.lookup(&auth.access_key_id, now)?.clone();
    let payload_hash = sign::sha256_hex(req.body);
    let headers: BTreeMap<String, String> = auth
        .signed_headers
        .iter()
        .map(|h| (h.clone(), header_value(req.headers, h)))
        .collect();
    let query: BTreeMap<String, String> = req.query.iter().cloned().collect();
    let canonical =
        sign::v3_canonical_request(req.method, req.path, &query, &headers, &payload_hash);
    let string_to_sign = sign::v3_string_to_sign(&canonical);
    let claimed_hash = req.header("x-acs-content-sha256").unwrap_or(&payload_hash);
    if claimed_hash != payload_hash
        || sign::v3_signature(&key.secret, &string_to_sign) != auth.signature
    {
        return Err(mismatch(cfg, &string_to_sign));
    }
    check_token(&key, req.header("x-acs-security-token"))?;
    if cfg.check_nonce {
        let nonce = req.header("x-acs-signature-nonce").ok_or_else(incomplete)?;
        keyring.use_nonce(&auth.access_key_id, nonce, now, cfg.max_skew_secs)?;
    }
    Ok(auth.access_key_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyring() -> Keyring {
        Keyring::new(&[AccessKey::parse("testid:testsecret").unwrap()])
    }

    fn v1_request(now: Timestamp, nonce: &str, secret: &str) -> Vec<(String, String)> {
        let mut p: BTreeMap<String, String> = [
            ("Action", "GetSecretValue"),
            ("Version", "2016-01-20"),
            ("Format", "json"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureVersion", "1.0"),
            ("AccessKeyId", "testid"),
            ("SecretName", "a b+c"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        p.insert(
            "Timestamp".into(),
            now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        );
        p.insert("SignatureNonce".into(), nonce.into());
        let sig = sign::rpc_signature(secret, &sign::rpc_string_to_sign("POST", &p));
        p.insert("Signature".into(), sig);
        p.into_iter().collect()
    }

    fn run(
        query: Vec<(String, String)>,
        kr: &mut Keyring,
        now: Timestamp,
    ) -> Result<String, KmsError> {
        let headers = HeaderMap::new();
        let req = RawRequest {
            method: "POST",
            path: "/",
            query,
            form: vec![],
            headers: &headers,
            body: b"",
        };
        authenticate(&req, kr, &AuthConfig::default(), now)
    }

    #[test]
    fn v1_accepts_then_rejects_replay_skew_and_bad_signature() {
        let now = Timestamp::now();
        let mut kr = keyring();
        assert_eq!(
            run(v1_request(now, "n1", "testsecret"), &mut kr, now).unwrap(),
            "testid"
        );
        let replay = run(v1_request(now, "n1", "testsecret"), &mut kr, now).unwrap_err();
        assert_eq!(replay.code, "SignatureNonceUsed");
        let mut q = v1_request(now, "n2", "wrong");
        q.push(("SecretData".into(), "hunter2".into()));
        let bad = run(q, &mut kr, now).unwrap_err();
        assert!(
            bad.message.contains("SecretData%3D%253Credacted%253E")
                && !bad.message.contains("hunter2")
        );
        assert_eq!(
            (bad.code.as_str(), bad.status),
            ("SignatureDoesNotMatch", 400)
        );
        let old = now - SignedDuration::from_mins(16);
        let skew = run(v1_request(old, "n3", "testsecret"), &mut kr, now).unwrap_err();
        assert_eq!(skew.code, "InvalidTimeStamp.Expired");
        let mut q = v1_request(now, "n4", "testsecret");
        q.retain(|(k, _)| k != "SignatureNonce");
        assert_eq!(
            run(q, &mut kr, now).unwrap_err().code,
            "IncompleteSignature"
        );
    }

    #[test]
    fn v3_tv5_python_style_signed_headers() {
        let mut headers = HeaderMap::new();
        for (k, v) in [
            ("accept", "application/json"),
            ("host", "kms.cn-hangzhou.aliyuncs.com"),
            (
                "user-agent",
                "AlibabaCloud (Linux; x86_64) Python/3.11.9 Core/0.4.6 TeaDSL/2",
            ),
            ("x-acs-action", "GetSecretValue"),
            ("x-acs-content-sha256", sign::EMPTY_BODY_SHA256),
            ("x-acs-date", "2024-05-01T08:00:00Z"),
            ("x-acs-signature-nonce", "0123456789abcdef0123456789abcdef"),
            ("x-acs-version", "2016-01-20"),
        ] {
            headers.insert(k, HeaderValue::from_static(v));
        }
        let signed = "accept;host;user-agent;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version";
        let sig = "d6bcaae14d0a4363a3fa2cef0669ce925801a60272adc3557a1f1d5bffe2f0f1";
        let auth = sign::v3_authorization("testAccessKeyId", signed, sig);
        headers.insert("authorization", HeaderValue::from_str(&auth).unwrap());
        let query = vec![
            ("SecretName".to_string(), "prod/db-password".to_string()),
            ("VersionStage".to_string(), "ACSCurrent".to_string()),
        ];
        let req = RawRequest {
            method: "POST",
            path: "/",
            query,
            form: vec![],
            headers: &headers,
            body: b"",
        };
        let mut kr =
            Keyring::new(&[AccessKey::parse("testAccessKeyId:testAccessKeySecret").unwrap()]);
        let now: Timestamp = "2024-05-01T08:05:00Z".parse().unwrap();
        assert_eq!(
            authenticate(&req, &mut kr, &AuthConfig::default(), now).unwrap(),
            "testAccessKeyId"
        );
        let err = authenticate(&req, &mut kr, &AuthConfig::default(), now).unwrap_err();
        assert_eq!(err.code, "SignatureNonceUsed");
        let mut unknown = Keyring::new(&[]);
        let err = authenticate(&req, &mut unknown, &AuthConfig::default(), now).unwrap_err();
        assert_eq!(
            (err.code.as_str(), err.status),
            ("InvalidAccessKeyId.NotFound", 404)
        );
        headers.insert(
            "authorization",
            HeaderValue::from_static("ACS3-HMAC-SHA256 Credential=x"),
        );
        let req = RawRequest {
            method: "POST",
            path: "/",
            query: vec![],
            form: vec![],
            headers: &headers,
            body: b"",
        };
        assert_eq!(
            authenticate(&req, &mut kr, &AuthConfig::default(), now)
                .unwrap_err()
                .code,
            "IncompleteSignature"
        );
    }

    #[test]
    fn sts_keys_need_their_token_and_expire() {
        let now = Timestamp::now();
        let mut kr = Keyring::new(&[]);
        let key = KnownKey {
            secret: "testsecret".into(),
            token: Some("tok".into()),
            expires: Some(now + SignedDuration::from_secs(60)),
        };
        kr.issue("testid".into(), key, now);
        let err = run(v1_request(now, "a", "testsecret"), &mut kr, now).unwrap_err();
        assert_eq!(err.code, "InvalidSecurityToken.MismatchWithAccessKey");
        let later = now + SignedDuration::from_secs(61);
        let err = run(v1_request(later, "b", "testsecret"), &mut kr, later).unwrap_err();
        assert_eq!(err.code, "InvalidSecurityToken.Expired");
    }

    #[test]
    fn issued_keys_can_be_expired_early_and_static_ones_stay() {
        let now = Timestamp::now();
        let mut kr = Keyring::new(&[]);
        let issued = KnownKey {
            secret: "testsecret".into(),
            token: None,
            expires: Some(now + SignedDuration::from_secs(3600)),
        };
        kr.issue("testid".into(), issued, now);
        assert!(run(v1_request(now, "d", "testsecret"), &mut kr, now).is_ok());
        assert_eq!(kr.expire_issued(now), 1);
        assert_eq!(kr.expire_issued(now), 0, "already ended");
        let err = run(v1_request(now, "e", "testsecret"), &mut kr, now).unwrap_err();
        assert_eq!(err.code, "InvalidSecurityToken.Expired");
        let mut static_keys = keyring();
        assert_eq!(static_keys.expire_issued(now), 0);
        assert!(run(v1_request(now, "f", "testsecret"), &mut static_keys, now).is_ok());
    }

    #[test]
    fn expired_keys_stay_expired_after_newer_ones_are_issued() {
        let now = Timestamp::now();
        let mut kr = Keyring::new(&[]);
        let key = |secs| KnownKey {
            secret: "testsecret".into(),
            token: None,
            expires: Some(now + SignedDuration::from_secs(secs)),
        };
        kr.issue("testid".into(), key(60), now);
        let later = now + SignedDuration::from_secs(61);
        kr.issue("newer".into(), key(3600), later);
        let err = run(v1_request(later, "c", "testsecret"), &mut kr, later).unwrap_err();
        assert_eq!(err.code, "InvalidSecurityToken.Expired");
        // Bounded: past MAX_KEYS, expired keys are dropped on the next issue.
        for i in 0..MAX_KEYS - 1 {
            kr.issue(format!("k{i}"), key(3600), later);
        }
        assert_eq!(kr.keys.len(), MAX_KEYS);
        assert!(!kr.keys.contains_key("testid"));
        assert!(kr.keys.contains_key("newer"));
    }
}
