//! Register/verify through a webhook: the pending credential is POSTed only to the configured
//! endpoint (HTTPS with an optional CA bundle, or plain HTTP on loopback), with `action`
//! `register` then `verify`. 2xx accepts; 4xx refuses (the attempt fails); 5xx, timeouts and
//! transport errors are retried.

use std::time::Duration;

use serde_json::json;

use crate::crd::rotation::WebhookRegister;
use crate::kms::SecretString;
use crate::kms::endpoint::is_loopback_host;

use super::StepError;

/// Who and what the call is about (the value is sent in the body, never logged).
#[derive(Debug)]
pub struct Call<'a> {
    pub action: &'static str,
    pub namespace: &'a str,
    pub managed_secret: &'a str,
    pub secret_name: &'a str,
    pub version_id: &'a str,
    pub value: &'a SecretString,
}

fn client(hook: &WebhookRegister, step: &'static str) -> Result<reqwest::Client, StepError> {
    let url = reqwest::Url::parse(&hook.url).map_err(|_| {
        StepError::permanent(step, "InvalidSpec", "webhook url is not a URL".into())
    })?;
    let loopback = url.host_str().is_some_and(is_loopback_host);
    if url.scheme() != "https" && !(url.scheme() == "http" && loopback) {
        return Err(StepError::permanent(
            step,
            "InvalidSpec",
            "webhook url must be https:// (plain http:// only for loopback)".into(),
        ));
    }
    let timeout = match &hook.timeout {
        Some(text) => crate::crd::duration::parse_non_negative(text).map_err(|_| {
            StepError::permanent(
                step,
                "InvalidSpec",
                format!("webhook timeout {text:?} is not a duration"),
            )
        })?,
        None => Duration::from_secs(10),
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none());
    if let Some(pem) = &hook.ca_bundle {
        let certificates = reqwest::Certificate::from_pem_bundle(pem.as_bytes()).map_err(|_| {
            StepError::permanent(step, "InvalidSpec", "webhook caBundle is not PEM".into())
        })?;
        builder = builder.tls_certs_only(certificates);
    }
    builder
        .build()
        .map_err(|e| StepError::permanent(step, "InvalidSpec", format!("webhook client: {e}")))
}

/// One POST; `step` names the rotation step for errors.
pub async fn call(
    hook: &WebhookRegister,
    step: &'static str,
    call: &Call<'_>,
) -> Result<(), StepError> {
    let http = client(hook, step)?;
    let body = json!({
        "action": call.action,
        "namespace": call.namespace,
        "managedSecret": call.managed_secret,
        "secretName": call.secret_name,
        "versionId": call.version_id,
        "value": call.value.expose(),
    });
    let response = http.post(&hook.url).json(&body).send().await.map_err(|e| {
        let kind = if e.is_timeout() {
            "timed out"
        } else {
            "could not be reached"
        };
        StepError::transient(step, "WebhookUnavailable", format!("webhook {kind}"))
    })?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else if status.is_server_error() || status.as_u16() == 429 {
        Err(StepError::transient(
            step,
            "WebhookUnavailable",
            format!("webhook answered HTTP {}", status.as_u16()),
        ))
    } else {
        Err(StepError::permanent(
            step,
            "WebhookRefused",
            format!(
                "webhook refused the {} with HTTP {}",
                call.action,
                status.as_u16()
            ),
        ))
    }
}
