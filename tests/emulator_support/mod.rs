//! Test helper: signs KMS/STS requests by hand with `kmsync::kms::sign` (V3 or classic) and
//! sends them with reqwest to an emulator on loopback.
#![allow(dead_code)]

use std::collections::BTreeMap;

use kmsync::kms::sign;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    V3,
    Classic,
}

#[derive(Debug, Clone)]
pub struct Signer {
    pub base: String,
    pub ak: String,
    pub secret: String,
    pub token: Option<String>,
    pub style: Style,
    pub version: String,
    http: reqwest::Client,
}

pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().build().expect("reqwest client")
}

fn encode_pairs(pairs: &BTreeMap<String, String>) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", sign::percent_encode(k), sign::percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn now_iso() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

impl Signer {
    pub fn new(base: &str, ak: &str, secret: &str, style: Style) -> Self {
        Self {
            base: base.to_string(),
            ak: ak.to_string(),
            secret: secret.to_string(),
            token: None,
            style,
            version: "2016-01-20".to_string(),
            http: http_client(),
        }
    }

    pub fn with_token(mut self, token: &str) -> Self {
        self.token = Some(token.to_string());
        self
    }

    pub fn sts(mut self) -> Self {
        self.version = "2015-04-01".to_string();
        self
    }

    /// Calls `action`; returns (HTTP status, JSON body).
    pub async fn call(
        &self,
        action: &str,
        query: &[(&str, &str)],
        form: &[(&str, &str)],
    ) -> (u16, Value) {
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        self.call_with(action, query, form, &nonce, &now_iso())
            .await
    }

    pub async fn call_with(
        &self,
        action: &str,
        query: &[(&str, &str)],
        form: &[(&str, &str)],
        nonce: &str,
        date: &str,
    ) -> (u16, Value) {
        let mut q: BTreeMap<String, String> = query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let f: BTreeMap<String, String> = form
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let body = encode_pairs(&f);
        let host = self.base.trim_start_matches("http://").to_string();
        let mut send_headers: Vec<(String, String)> = Vec::new();
        if !f.is_empty() {
            send_headers.push((
                "content-type".into(),
                "application/x-www-form-urlencoded".into(),
            ));
        }
        match self.style {
            Style::V3 => {
                let mut headers: BTreeMap<String, String> = [
                    ("host", host.as_str()),
                    ("x-acs-action", action),
                    ("x-acs-version", self.version.as_str()),
                    ("x-acs-date", date),
                    ("x-acs-signature-nonce", nonce),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
                let hash = sign::sha256_hex(body.as_bytes());
                headers.insert("x-acs-content-sha256".into(), hash.clone());
                if !f.is_empty() {
                    headers.insert(
                        "content-type".into(),
                        "application/x-www-form-urlencoded".into(),
                    );
                }
                if let Some(t) = &self.token {
                    headers.insert("x-acs-security-token".into(), t.clone());
                }
                let canonical = sign::v3_canonical_request("POST", "/", &q, &headers, &hash);
                let signature =
                    sign::v3_signature(&self.secret, &sign::v3_string_to_sign(&canonical));
                let auth = sign::v3_authorization(
                    &self.ak,
                    &sign::v3_signed_headers(&headers),
                    &signature,
                );
                send_headers.extend(
                    headers
                        .into_iter()
                        .filter(|(k, _)| k != "host" && k != "content-type"),
                );
                send_headers.push(("authorization".into(), auth));
            }
            Style::Classic => {
                for (k, v) in [
                    ("Action", action),
                    ("Version", self.version.as_str()),
                    ("Format", "json"),
                    ("Timestamp", date),
                    ("SignatureNonce", nonce),
                    ("SignatureMethod", "HMAC-SHA1"),
                    ("SignatureVersion", "1.0"),
                    ("AccessKeyId", self.ak.as_str()),
                ] {
                    q.insert(k.into(), v.into());
                }
                if let Some(t) = &self.token {
                    q.insert("SecurityToken".into(), t.clone());
                }
                let mut all = q.clone();
                all.extend(f.clone());
                let signature =
                    sign::rpc_signature(&self.secret, &sign::rpc_string_to_sign("POST", &all));
                q.insert("Signature".into(), signature);
            }
        }
        let mut req = self
            .http
            .post(format!("{}/?{}", self.base, encode_pairs(&q)))
            .body(body);
        for (k, v) in send_headers {
            req = req.header(k, v);
        }
        let resp = req.send().await.expect("emulator reachable");
        let status = resp.status().as_u16();
        let json = resp.json::<Value>().await.unwrap_or(Value::Null);
        (status, json)
    }
}
