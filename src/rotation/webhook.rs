//! Register/verify through a webhook: the pending credential is POSTed only to the configured
//! endpoint (HTTPS with an optional CA bundle, or plain HTTP on loopback), with `action`
//! `register` then `verify`, signed with the key of `signingSecretRef` (see
//! [`super::webhook_signature`]). 2xx accepts; 4xx and an untrusted TLS certificate refuse (the
//! attempt fails); 5xx, timeouts and transport errors are retried.

use std::time::Duration;

use serde_json::json;

use crate::crd::rotation::WebhookRegister;
use crate::kms::endpoint::is_loopback_host;
use crate::kms::error::KmsError;
use crate::kms::{SecretBytes, SecretString};

use super::{StepError, secret_ref, webhook_signature};

/// Who and what the call is about (the value is sent in the body, never logged).
#[derive(Debug)]
pub struct Call<'a> {
    pub action: &'static str,
    pub namespace: &'a str,
    pub managed_secret: &'a str,
    pub secret_name: &'a str,
    pub version_id: &'a str,
    pub value: &'a SecretString,
    /// The signing key, read from `signingSecretRef`.
    pub signing_key: &'a SecretBytes,
    /// Client certificate and key (PEM) for mutual TLS, from `clientCertificateSecretRef`.
    pub client_identity: Option<&'a SecretBytes>,
}

fn client(
    hook: &WebhookRegister,
    step: &'static str,
    identity: Option<&SecretBytes>,
) -> Result<reqwest::Client, StepError> {
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
    if let Some(pem) = identity {
        // The message never quotes the key: only that it did not parse.
        let identity = reqwest::Identity::from_pem(pem.expose()).map_err(|_| {
            StepError::permanent(
                step,
                "InvalidCredentials",
                "the webhook client certificate Secret does not hold a PEM certificate and key"
                    .into(),
            )
        })?;
        builder = builder.identity(identity);
    }
    builder
        .build()
        .map_err(|e| StepError::permanent(step, "InvalidSpec", format!("webhook client: {e}")))
}

/// The key of `signingSecretRef`, from the ManagedSecret's namespace. Without it nothing is sent:
/// an unsigned call would hand the value to whoever answers.
pub async fn signing_key(
    client: &kube::Client,
    namespace: &str,
    hook: &WebhookRegister,
    step: &'static str,
) -> Result<SecretBytes, StepError> {
    let reference = &hook.signing_secret_ref;
    let mut keys =
        secret_ref::read(client, namespace, &reference.name, "webhook signing", step).await?;
    keys.bytes(reference.key.as_deref().unwrap_or("key"))
}

/// The client certificate and key (PEM, concatenated) of `clientCertificateSecretRef`, if set.
pub async fn client_identity(
    client: &kube::Client,
    namespace: &str,
    hook: &WebhookRegister,
    step: &'static str,
) -> Result<Option<SecretBytes>, StepError> {
    let Some(reference) = &hook.client_certificate_secret_ref else {
        return Ok(None);
    };
    let mut keys = secret_ref::read(
        client,
        namespace,
        &reference.name,
        "webhook client certificate",
        step,
    )
    .await?;
    let mut pem = keys.bytes("tls.crt")?.into_inner();
    pem.push(b'\n');
    pem.extend_from_slice(keys.bytes("tls.key")?.expose());
    Ok(Some(SecretBytes::new(pem)))
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
    let http = client(hook, step, call.client_identity)?;
    let body = json!({
        "action": call.action,
        "namespace": call.namespace,
        "managedSecret": call.managed_secret,
        "secretName": call.secret_name,
        "versionId": call.version_id,
        "value": call.value.expose(),
    });
    // Signed over exactly the bytes sent.
    let body = serde_json::to_vec(&body).expect("a JSON object serialises");
    let timestamp = jiff::Timestamp::now().as_second();
    let signature = webhook_signature::sign(call.signing_key, timestamp, &body);
    let response = http
        .post(&hook.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(webhook_signature::TIMESTAMP_HEADER, timestamp.to_string())
        .header(webhook_signature::SIGNATURE_HEADER, signature)
        .body(body)
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
