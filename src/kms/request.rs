//! Building and signing one RPC-style request (`POST /`): parameters, form body, headers.
//!
//! Pure: given parameters, credentials, endpoint and a [`Stamp`] (date + nonce) it returns the exact
//! bytes to send, so the signature vectors of kms-api.md §2.5 can be reproduced end to end.
//! API parameters go in the query, except the form-body ones (`SecretData`, `Recipient`), whose
//! body is encoded like Python's `urlencode` (`+` for space, `%2A` for `*`, `~` kept).

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use super::credentials::Credentials;
use super::endpoint::Endpoint;
use super::secret::SecretString;
use super::sign;

/// KMS API version.
pub const KMS_API_VERSION: &str = "2016-01-20";
/// `content-type` of a form body.
pub const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";
/// Parameters the current SDK sends in the form body.
pub const FORM_BODY_PARAMS: &[&str] = &["SecretData", "Recipient"];

/// Which signature to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SignatureStyle {
    /// `ACS3-HMAC-SHA256` (the default of the current SDKs).
    #[default]
    V3,
    /// Classic RPC `HMAC-SHA1` (`SignatureVersion=1.0`).
    Rpc,
}

/// Parameters of one action: query parameters and (secret) form-body parameters.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Params {
    query: BTreeMap<String, String>,
    form: BTreeMap<String, SecretString>,
}

impl Params {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a query parameter.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.query.insert(name.into(), value.into());
        self
    }

    /// Adds a query parameter when present.
    pub fn set_opt<V: ToString>(&mut self, name: &str, value: Option<V>) -> &mut Self {
        if let Some(value) = value {
            self.query.insert(name.to_string(), value.to_string());
        }
        self
    }

    /// Adds a boolean query parameter as `true`/`false` when present.
    pub fn set_bool(&mut self, name: &str, value: Option<bool>) -> &mut Self {
        self.set_opt(name, value.map(|b| if b { "true" } else { "false" }))
    }

    /// Adds a JSON-string parameter (`VersionStages`, `Tags`, `Filters`, …).
    pub fn set_json<T: Serialize + ?Sized>(&mut self, name: &str, value: &T) -> &mut Self {
        let json = serde_json::to_string(value).unwrap_or_else(|_| "null".to_string());
        self.set(name, json)
    }

    /// Flattens a list as `name.1=…&name.2=…` (1-based).
    pub fn set_list<V: AsRef<str>>(&mut self, name: &str, values: &[V]) -> &mut Self {
        for (i, value) in values.iter().enumerate() {
            self.set(format!("{name}.{}", i + 1), value.as_ref());
        }
        self
    }

    /// Adds a form-body parameter (secret material).
    pub fn set_form(&mut self, name: impl Into<String>, value: SecretString) -> &mut Self {
        self.form.insert(name.into(), value);
        self
    }

    /// Adds a parameter where the SDK puts it: form body for `SecretData`/`Recipient`, else query.
    pub fn set_auto(&mut self, name: &str, value: String) -> &mut Self {
        if FORM_BODY_PARAMS.contains(&name) {
            self.set_form(name, SecretString::new(value))
        } else {
            self.set(name, value)
        }
    }

    pub fn query(&self) -> &BTreeMap<String, String> {
        &self.query
    }

    pub fn form(&self) -> &BTreeMap<String, SecretString> {
        &self.form
    }
}

impl fmt::Debug for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Params")
            .field("query", &self.query)
            .field("form", &self.form)
            .finish()
    }
}

/// The request date and nonce; fixed in tests, fresh per attempt otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    /// UTC `yyyy-MM-ddTHH:mm:ssZ`.
    pub date: String,
    /// Unique per request (32 hex chars).
    pub nonce: String,
}

impl Stamp {
    pub fn now() -> Self {
        Self {
            date: format_timestamp(jiff::Timestamp::now()),
            nonce: uuid::Uuid::new_v4().simple().to_string(),
        }
    }

    pub fn fixed(date: &str, nonce: &str) -> Self {
        Self {
            date: date.to_string(),
            nonce: nonce.to_string(),
        }
    }
}

/// `yyyy-MM-ddTHH:mm:ssZ` in UTC.
pub fn format_timestamp(ts: jiff::Timestamp) -> String {
    ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A request ready to send. `Debug` shows no body and no header values (tokens, secrets).
#[derive(Clone)]
pub struct PreparedRequest {
    /// Full URL with the query.
    pub url: String,
    /// Lowercase header names and values (including `host`, which the HTTP stack sets itself).
    pub headers: Vec<(String, String)>,
    /// The exact body bytes.
    pub body: Vec<u8>,
}

impl PreparedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl fmt::Debug for PreparedRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.url.split('?').next().unwrap_or_default();
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("PreparedRequest")
            .field("url", &path)
            .field("headers", &names)
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// Python `urlencode` (quote_plus) of one value: `A-Za-z0-9-_.~` kept, space → `+`, rest `%XY`.
pub fn form_encode_value(value: &str) -> String {
    value
        .split(' ')
        .map(sign::percent_encode)
        .collect::<Vec<_>>()
        .join("+")
}

/// The form body: `name=value&…` in name order, Python-urlencode style.
pub fn form_body(form: &BTreeMap<String, SecretString>) -> String {
    form.iter()
        .map(|(name, value)| {
            format!(
                "{}={}",
                form_encode_value(name),
                form_encode_value(value.expose())
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn wire_query(params: &BTreeMap<String, String>) -> String {
    sign::canonical_query(params)
}

/// Builds and signs a request in the chosen style.
pub fn prepare(
    style: SignatureStyle,
    endpoint: &Endpoint,
    action: &str,
    version: &str,
    params: &Params,
    creds: &Credentials,
    stamp: &Stamp,
) -> PreparedRequest {
    match style {
        SignatureStyle::V3 => prepare_v3(endpoint, action, version, params, creds, stamp),
        SignatureStyle::Rpc => prepare_rpc(endpoint, action, version, params, creds, stamp),
    }
}

/// V3 `ACS3-HMAC-SHA256`: signs `host`, `content-type` (with a body) and every `x-acs-*` header.
pub fn prepare_v3(
    endpoint: &Endpoint,
    action: &str,
    version: &str,
    params: &Params,
    creds: &Credentials,
    stamp: &Stamp,
) -> PreparedRequest {
    let body = form_body(&params.form);
    let payload_hash = sign::sha256_hex(body.as_bytes());
    let mut signed: BTreeMap<String, String> = BTreeMap::new();
    signed.insert("host".into(), endpoint.host().to_string());
    signed.insert("x-acs-action".into(), action.to_string());
    signed.insert("x-acs-version".into(), version.to_string());
    signed.insert("x-acs-date".into(), stamp.date.clone());
    signed.insert("x-acs-signature-nonce".into(), stamp.nonce.clone());
    signed.insert("x-acs-content-sha256".into(), payload_hash.clone());
    if !body.is_empty() {
        signed.insert("content-type".into(), FORM_CONTENT_TYPE.to_string());
    }
    if let Some(token) = &creds.security_token {
        signed.insert("x-acs-security-token".into(), token.expose().to_string());
        signed.insert("x-acs-accesskey-id".into(), creds.access_key_id.clone());
    }
    let canonical = sign::v3_canonical_request("POST", "/", &params.query, &signed, &payload_hash);
    let signature = sign::v3_signature(
        creds.access_key_secret.expose(),
        &sign::v3_string_to_sign(&canonical),
    );
    let authorization = sign::v3_authorization(
        &creds.access_key_id,
        &sign::v3_signed_headers(&signed),
        &signature,
    );
    let mut headers: Vec<(String, String)> = signed.into_iter().collect();
    headers.push(("authorization".into(), authorization));
    headers.push(("accept".into(), "application/json".into()));
    headers.push(("user-agent".into(), user_agent()));
    let query = wire_query(&params.query);
    let url = if query.is_empty() {
        endpoint.url_for("/")
    } else {
        endpoint.url_for(&format!("/?{query}"))
    };
    PreparedRequest {
        url,
        headers,
        body: body.into_bytes(),
    }
}

/// Classic RPC `HMAC-SHA1`: common parameters in the query, signature over query ∪ form body.
pub fn prepare_rpc(
    endpoint: &Endpoint,
    action: &str,
    version: &str,
    params: &Params,
    creds: &Credentials,
    stamp: &Stamp,
) -> PreparedRequest {
    let mut query = params.query.clone();
    for (name, value) in [
        ("Action", action),
        ("Version", version),
        ("Format", "JSON"),
        ("Timestamp", stamp.date.as_str()),
        ("SignatureNonce", stamp.nonce.as_str()),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureVersion", "1.0"),
        ("AccessKeyId", creds.access_key_id.as_str()),
    ] {
        query.insert(name.to_string(), value.to_string());
    }
    if let Some(token) = &creds.security_token {
        query.insert("SecurityToken".into(), token.expose().to_string());
    }
    let mut all = query.clone();
    for (name, value) in &params.form {
        all.insert(name.clone(), value.expose().to_string());
    }
    let signature = sign::rpc_signature(
        creds.access_key_secret.expose(),
        &sign::rpc_string_to_sign("POST", &all),
    );
    query.insert("Signature".into(), signature);
    let body = form_body(&params.form);
    let mut headers = vec![
        ("host".to_string(), endpoint.host().to_string()),
        ("x-acs-action".to_string(), action.to_string()),
        ("x-acs-version".to_string(), version.to_string()),
        ("accept".to_string(), "application/json".to_string()),
        ("user-agent".to_string(), user_agent()),
    ];
    if !body.is_empty() {
        headers.push(("content-type".into(), FORM_CONTENT_TYPE.into()));
    }
    PreparedRequest {
        url: endpoint.url_for(&format!("/?{}", wire_query(&query))),
        headers,
        body: body.into_bytes(),
    }
}

fn user_agent() -> String {
    format!("kmsync/{} (Rust)", env!("CARGO_PKG_VERSION"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding_is_python_urlencode() {
        assert_eq!(form_encode_value("a b*c~d/é+"), "a+b%2Ac~d%2F%C3%A9%2B");
        let mut form = BTreeMap::new();
        form.insert(
            "SecretData".to_string(),
            SecretString::new(r#"{"user":"admin","pass":"p@ss w0rd~*"}"#),
        );
        assert_eq!(
            form_body(&form),
            "SecretData=%7B%22user%22%3A%22admin%22%2C%22pass%22%3A%22p%40ss+w0rd~%2A%22%7D"
        );
    }

    #[test]
    fn params_flatten_and_json() {
        let mut p = Params::new();
        p.set_list("ResourceId", &["a", "b"])
            .set_json("VersionStages", &["ACSCurrent"])
            .set_bool("FetchTags", Some(true))
            .set_opt::<u32>("PageSize", None)
            .set_auto("SecretData", "canary-9".into());
        assert_eq!(p.query()["ResourceId.1"], "a");
        assert_eq!(p.query()["ResourceId.2"], "b");
        assert_eq!(p.query()["VersionStages"], r#"["ACSCurrent"]"#);
        assert_eq!(p.query()["FetchTags"], "true");
        assert!(!p.query().contains_key("PageSize"));
        assert!(p.form().contains_key("SecretData"));
        assert!(!format!("{p:?}").contains("canary"));
    }

    #[test]
    fn stamp_format() {
        let ts: jiff::Timestamp = "2024-05-01T08:00:00.123Z".parse().unwrap();
        assert_eq!(format_timestamp(ts), "2024-05-01T08:00:00Z");
        let s = Stamp::now();
        assert_eq!(s.nonce.len(), 32);
        assert_eq!(s.date.len(), 20);
    }
}
