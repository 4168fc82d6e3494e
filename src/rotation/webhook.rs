//! Register/verify through a webhook: the pending credential is POSTed only to the configured
//! endpoint (HTTPS with an optional CA bundle, or plain HTTP on loopback), with `action`
//! `register` then `verify`. 2xx accepts; 4xx and an untrusted TLS certificate refuse (the
//! attempt fails); 5xx, timeouts and transport errors are retried.

use std::time::Duration;

use serde_json::json;

use crate::crd::rotation::WebhookRegister;
use crate::kms::SecretString;
use crate::kms::endpoint::is_loopback_host;
use crate::kms::error::KmsError;

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

/// Why a POST got no answer. An untrusted certificate ends the attempt: the next one would meet
/// the same certificate, and the value must never reach a server we cannot authenticate.
fn send_error(step: &'static str, error: reqwest::Error) -> StepError {
    match KmsError::from_reqwest(error) {
        KmsError::Certificate { .. } => StepError::permanent(
            step,
            "InvalidCertificate",
            "the webhook's TLS certificate is not trusted (check rotation.register.webhook.caBundle); nothing was sent".into(),
        ),
        KmsError::Timeout => {
            StepError::transient(step, "WebhookUnavailable", "webhook timed out".into())
        }
        _ => StepError::transient(
            step,
            "WebhookUnavailable",
            "webhook could not be reached".into(),
        ),
    }
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
    let response = http
        .post(&hook.url)
        .json(&body)
        .send()
        .await
        .map_err(|e| send_error(step, e))?;
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
