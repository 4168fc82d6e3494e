//! HTTP for the KMS client: building the reqwest client (timeouts, CA bundle, ring provider) and
//! sending signed calls with retries under the policy and budget of [`super::retry`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::credentials::{CredentialProvider, Credentials};
use super::endpoint::{Endpoint, is_loopback_host};
use super::error::{ApiError, KmsError};
use super::request::{self, Params, PreparedRequest, SignatureStyle, Stamp};
use super::retry::{RetryBudget, RetryPolicy, retry_hint};

/// The code of a refused, expired STS token.
const EXPIRED_TOKEN: &str = "InvalidSecurityToken.Expired";

/// Timeouts and trust for one HTTP client.
#[derive(Clone)]
pub struct HttpOptions {
    pub connect_timeout: Duration,
    /// Whole-request timeout, per attempt.
    pub request_timeout: Duration,
    /// PEM bundle; when set, ONLY these roots are trusted.
    pub ca_bundle_pem: Option<Vec<u8>>,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            ca_bundle_pem: None,
        }
    }
}

impl std::fmt::Debug for HttpOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpOptions")
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("ca_bundle", &self.ca_bundle_pem.as_ref().map(|b| b.len()))
            .finish()
    }
}

/// Installs rustls' ring provider once per process (an already installed provider is kept).
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A reqwest client with the given options. Redirects are never followed; proxies are bypassed
/// for loopback targets.
pub fn http_client(options: &HttpOptions, target_host: &str) -> Result<reqwest::Client, KmsError> {
    install_crypto_provider();
    let mut builder = reqwest::Client::builder()
        .connect_timeout(options.connect_timeout)
        .timeout(options.request_timeout)
        .redirect(reqwest::redirect::Policy::none());
    let host = target_host
        .rsplit_once(':')
        .filter(|(h, port)| port.parse::<u16>().is_ok() && !h.is_empty())
        .map_or(target_host, |(h, _)| h);
    if is_loopback_host(host) {
        builder = builder.no_proxy();
    }
    if let Some(pem) = &options.ca_bundle_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|_| KmsError::Config("CA bundle is not valid PEM".into()))?;
        if certs.is_empty() {
            return Err(KmsError::Config("CA bundle contains no certificate".into()));
        }
        builder = builder.tls_certs_only(certs);
    }
    builder
        .build()
        .map_err(|e| KmsError::Config(format!("cannot build HTTP client: {}", e.without_url())))
}

/// A successful answer.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    pub body: Vec<u8>,
    pub request_id: Option<String>,
    /// Attempts this call took (1 = no retry).
    pub attempts: u32,
}

/// Counters for tests and metrics.
#[derive(Debug, Default)]
pub struct TransportStats {
    pub attempts: AtomicU64,
    pub retries: AtomicU64,
    pub budget_exhausted: AtomicU64,
}

/// Signs and sends calls to one endpoint with one credential provider.
#[derive(Debug)]
pub struct Transport {
    pub(crate) http: reqwest::Client,
    pub(crate) endpoint: Endpoint,
    pub(crate) style: SignatureStyle,
    pub(crate) credentials: Arc<dyn CredentialProvider>,
    pub(crate) retry: RetryPolicy,
    pub(crate) budget: Arc<RetryBudget>,
    pub(crate) fixed_stamp: Option<Stamp>,
    pub(crate) stats: Arc<TransportStats>,
}

impl Transport {
    /// Calls `action` (API version [`request::KMS_API_VERSION`]) with retries.
    pub async fn call(&self, action: &str, params: &Params) -> Result<RawResponse, KmsError> {
        let max_attempts = self.retry.max_attempts.max(1);
        let mut attempt = 1;
        let mut refreshed = false;
        loop {
            let (result, creds) = match self.credentials.credentials().await {
                Ok(creds) => (self.attempt(action, params, &creds).await, Some(creds)),
                Err(err) => (Err(err), None),
            };
            self.stats.attempts.fetch_add(1, Ordering::Relaxed);
            let err = match result {
                Ok(mut response) => {
                    self.budget.on_success();
                    response.attempts = attempt;
                    return Ok(response);
                }
                // Temporary credentials the service calls expired while we still trust them
                // (clock skew, a session cut short): fetch new ones once, right away. Without
                // this the cache would hand out the refused ones until its own refresh time.
                Err(err)
                    if !refreshed
                        && err.code() == Some(EXPIRED_TOKEN)
                        && match &creds {
                            Some(used) => self.credentials.invalidate(used).await,
                            None => false,
                        } =>
                {
                    refreshed = true;
                    tracing::info!(
                        action,
                        "credentials refused as expired; retrying with new ones"
                    );
                    continue;
                }
                Err(err) if !err.is_retryable() => return Err(err),
                Err(err) => err,
            };
            self.budget.on_failure();
            if attempt >= max_attempts {
                return Err(err);
            }
            if !self.budget.allows_retry() {
                self.stats.budget_exhausted.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    action,
                    reason = err.reason(),
                    "retry budget exhausted; not retrying"
                );
                return Err(err);
            }
            let hint = match &err {
                KmsError::Api(api) => api.retry_after,
                _ => None,
            };
            let delay = self.retry.backoff(attempt, hint);
            tracing::debug!(
                action,
                attempt,
                reason = err.reason(),
                ?delay,
                "retrying KMS call"
            );
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    async fn attempt(
        &self,
        action: &str,
        params: &Params,
        creds: &Credentials,
    ) -> Result<RawResponse, KmsError> {
        let stamp = self.fixed_stamp.clone().unwrap_or_else(Stamp::now);
        let prepared = request::prepare(
            self.style,
            &self.endpoint,
            action,
            request::KMS_API_VERSION,
            params,
            creds,
            &stamp,
        );
        send(&self.http, prepared).await
    }
}

/// Sends one prepared request; a non-2xx answer becomes [`KmsError::Api`].
pub async fn send(
    http: &reqwest::Client,
    prepared: PreparedRequest,
) -> Result<RawResponse, KmsError> {
    let mut builder = http.post(&prepared.url);
    for (name, value) in &prepared.headers {
        // reqwest derives `host` from the URL, which is exactly the signed value.
        if name != "host" {
            builder = builder.header(name.as_str(), value.as_str());
        }
    }
    let response = builder
        .body(prepared.body)
        .send()
        .await
        .map_err(KmsError::from_reqwest)?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let request_id = headers
        .get("x-acs-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = response
        .bytes()
        .await
        .map_err(KmsError::from_reqwest)?
        .to_vec();
    if (200..300).contains(&status) {
        return Ok(RawResponse {
            status,
            body,
            request_id,
            attempts: 1,
        });
    }
    let mut api = ApiError::parse(status, &body, request_id.as_deref());
    api.retry_after = retry_hint(&headers);
    Err(KmsError::Api(Box::new(api)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_ca_bundle_is_a_configuration_error() {
        for pem in [&b"not a certificate"[..], b""] {
            let options = HttpOptions {
                ca_bundle_pem: Some(pem.to_vec()),
                ..HttpOptions::default()
            };
            let err = http_client(&options, "kms.example.internal").unwrap_err();
            assert_eq!(err.reason(), "InvalidConfiguration");
        }
        assert!(http_client(&HttpOptions::default(), "127.0.0.1:8080").is_ok());
    }
}
