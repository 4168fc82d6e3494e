//! Credentials for signing (kms-api.md §6): the [`Credentials`] value, the async
//! [`CredentialProvider`] trait, and a cache shared by the providers that fetch temporary
//! credentials (refreshed 15 minutes before they expire).

pub mod assume_role;
pub mod chain;
pub mod ecs;
pub mod env;
pub mod profile;
pub mod rrsa;
pub mod static_ak;
pub mod uri;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::Deserialize;

use super::endpoint::{Endpoint, Network};
use super::error::KmsError;
use super::secret::SecretString;

pub use assume_role::AssumeRoleProvider;
pub use chain::DefaultChain;
pub use ecs::EcsRamRoleProvider;
pub use env::EnvProvider;
pub use rrsa::{OidcToken, RrsaProvider};
pub use static_ak::StaticProvider;
pub use uri::CredentialsUriProvider;

/// Temporary credentials are refetched this long before they expire.
pub const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(15 * 60);

/// An AccessKey pair, optionally with an STS token and its expiry. `Debug` redacts the secrets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub access_key_secret: SecretString,
    pub security_token: Option<SecretString>,
    pub expiration: Option<jiff::Timestamp>,
}

impl Credentials {
    /// Long-lived AccessKey credentials.
    pub fn access_key(id: impl Into<String>, secret: impl Into<SecretString>) -> Self {
        Self {
            access_key_id: id.into(),
            access_key_secret: secret.into(),
            security_token: None,
            expiration: None,
        }
    }

    pub fn with_security_token(mut self, token: impl Into<SecretString>) -> Self {
        self.security_token = Some(token.into());
        self
    }

    /// True when the credentials expire within [`REFRESH_BEFORE_EXPIRY`] of `now`.
    pub fn needs_refresh(&self, now: jiff::Timestamp) -> bool {
        self.expiration.is_some_and(|exp| {
            let margin = jiff::SignedDuration::try_from(REFRESH_BEFORE_EXPIRY)
                .unwrap_or(jiff::SignedDuration::ZERO);
            now.as_second().saturating_add(margin.as_secs()) >= exp.as_second()
        })
    }

    pub fn is_expired(&self, now: jiff::Timestamp) -> bool {
        self.expiration.is_some_and(|exp| now >= exp)
    }
}

/// A source of credentials. Implementations cache and refresh on their own.
pub trait CredentialProvider: Send + Sync + fmt::Debug {
    /// Current credentials (cached, or fetched when missing or close to expiry).
    fn credentials(&self) -> BoxFuture<'_, Result<Credentials, KmsError>>;
    /// Short provider name for errors and `x-acs-credentials-provider`-like diagnostics.
    fn name(&self) -> &'static str;
    /// The service refused `used` as expired (its clock runs ahead of ours, or the session was
    /// cut short): forget them if cached. True when the next [`credentials`](Self::credentials)
    /// call will bring other ones; providers of long-lived keys have nothing else to give.
    fn invalidate<'a>(&'a self, used: &'a Credentials) -> BoxFuture<'a, bool> {
        let _ = used;
        Box::pin(async { false })
    }
}

impl<P: CredentialProvider + ?Sized> CredentialProvider for Arc<P> {
    fn credentials(&self) -> BoxFuture<'_, Result<Credentials, KmsError>> {
        (**self).credentials()
    }
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn invalidate<'a>(&'a self, used: &'a Credentials) -> BoxFuture<'a, bool> {
        (**self).invalidate(used)
    }
}

/// Looks up an environment variable; injectable so tests never touch the process environment.
pub type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// The process environment (empty values count as unset).
pub fn system_env() -> EnvLookup {
    Arc::new(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
}

/// An environment from fixed pairs (tests, explicit configuration).
pub fn env_from_pairs(pairs: &[(&str, &str)]) -> EnvLookup {
    let map: std::collections::HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Arc::new(move |name| map.get(name).cloned())
}

pub(crate) fn env_flag(env: &EnvLookup, name: &str) -> bool {
    env(name).is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// Single-flight cache of temporary credentials.
#[derive(Debug, Default)]
pub(crate) struct CredentialCache {
    inner: tokio::sync::Mutex<Option<Credentials>>,
}

impl CredentialCache {
    /// Returns the cached credentials unless they need a refresh; otherwise fetches (one caller
    /// at a time). When a refresh fails but the old credentials have not expired yet, they are
    /// still returned.
    pub(crate) async fn get_or_fetch<F>(
        &self,
        provider: &'static str,
        fetch: F,
    ) -> Result<Credentials, KmsError>
    where
        F: std::future::Future<Output = Result<Credentials, KmsError>>,
    {
        let mut guard = self.inner.lock().await;
        let now = jiff::Timestamp::now();
        if let Some(cached) = guard.as_ref().filter(|c| !c.needs_refresh(now)) {
            return Ok(cached.clone());
        }
        match fetch.await {
            Ok(fresh) => {
                tracing::debug!(provider, expiration = ?fresh.expiration, "fetched credentials");
                *guard = Some(fresh.clone());
                Ok(fresh)
            }
            Err(err) => match guard.as_ref().filter(|c| !c.is_expired(now)) {
                Some(still_valid) => {
                    tracing::warn!(provider, error = %err, "credential refresh failed; using cached credentials until expiry");
                    Ok(still_valid.clone())
                }
                None => Err(err),
            },
        }
    }

    /// Forgets the cached credentials if they are `used` (a concurrent caller may have refreshed
    /// them already). The next [`get_or_fetch`](Self::get_or_fetch) then fetches.
    pub(crate) async fn invalidate(&self, provider: &'static str, used: &Credentials) -> bool {
        let mut guard = self.inner.lock().await;
        if guard
            .as_ref()
            .is_some_and(|c| c.access_key_id == used.access_key_id)
        {
            tracing::info!(
                provider,
                "cached credentials refused as expired; fetching new ones"
            );
            *guard = None;
        }
        true
    }
}

/// `{AccessKeyId, AccessKeySecret, SecurityToken, Expiration}` as STS, IMDS and credential URIs
/// return it.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct WireCredentials {
    access_key_id: String,
    access_key_secret: SecretString,
    security_token: Option<SecretString>,
    expiration: Option<String>,
}

impl WireCredentials {
    pub(crate) fn into_credentials(self, provider: &'static str) -> Result<Credentials, KmsError> {
        let expiration = match self.expiration.as_deref().filter(|s| !s.is_empty()) {
            Some(text) => {
                Some(
                    text.parse::<jiff::Timestamp>()
                        .map_err(|_| KmsError::Credentials {
                            provider,
                            message: format!("unparseable Expiration {text:?}"),
                            unreachable: false,
                        })?,
                )
            }
            None => None,
        };
        if self.access_key_id.is_empty() || self.access_key_secret.is_empty() {
            return Err(KmsError::Credentials {
                provider,
                message: "response carries an empty AccessKeyId or AccessKeySecret".into(),
                unreachable: false,
            });
        }
        Ok(Credentials {
            access_key_id: self.access_key_id,
            access_key_secret: self.access_key_secret,
            security_token: self.security_token.filter(|t| !t.is_empty()),
            expiration,
        })
    }
}

/// Maps a failure talking to a credential source into a `Credentials` error of that provider.
pub(crate) fn credentials_error(provider: &'static str, err: KmsError) -> KmsError {
    match err {
        KmsError::Credentials { .. } => err,
        KmsError::Transport { .. } | KmsError::Timeout => KmsError::Credentials {
            provider,
            message: err.to_string(),
            unreachable: true,
        },
        KmsError::Api(ref api) if api.http_status >= 500 => KmsError::Credentials {
            provider,
            message: err.to_string(),
            unreachable: true,
        },
        other => KmsError::Credentials {
            provider,
            message: other.to_string(),
            unreachable: false,
        },
    }
}

/// Parses an STS `{RequestId, Credentials:{…}}` answer.
pub(crate) fn parse_sts_body(provider: &'static str, body: &[u8]) -> Result<Credentials, KmsError> {
    #[derive(Deserialize)]
    struct StsAnswer {
        #[serde(rename = "Credentials")]
        credentials: WireCredentials,
    }
    let answer: StsAnswer = serde_json::from_slice(body).map_err(|e| KmsError::Credentials {
        provider,
        message: format!("unexpected STS response: {}", json_error_category(&e)),
        unreachable: false,
    })?;
    answer.credentials.into_credentials(provider)
}

/// STS endpoint from the environment: `ALIBABA_CLOUD_STS_ENDPOINT`, else
/// `sts[-vpc].<ALIBABA_CLOUD_STS_REGION>.aliyuncs.com` (`-vpc` with
/// `ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED=true`), else `sts.aliyuncs.com`.
pub fn sts_endpoint_from_env(env: &EnvLookup) -> Result<Endpoint, KmsError> {
    if let Some(explicit) = env("ALIBABA_CLOUD_STS_ENDPOINT") {
        return Endpoint::parse(&explicit);
    }
    if let Some(region) = env("ALIBABA_CLOUD_STS_REGION") {
        let network = if env_flag(env, "ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED") {
            Network::Vpc
        } else {
            Network::Public
        };
        return Endpoint::for_product("sts", &region, network);
    }
    Endpoint::parse("https://sts.aliyuncs.com")
}

/// STS API version.
pub const STS_API_VERSION: &str = "2015-04-01";

/// Default role session name: `kmsync-<unix seconds>`.
pub(crate) fn default_session_name() -> String {
    format!("kmsync-{}", jiff::Timestamp::now().as_second())
}

/// The category only: serde messages can quote parts of the (secret-bearing) input.
pub(crate) fn json_error_category(err: &serde_json::Error) -> &'static str {
    match err.classify() {
        serde_json::error::Category::Io => "I/O error",
        serde_json::error::Category::Syntax => "invalid JSON",
        serde_json::error::Category::Data => "missing or mistyped fields",
        serde_json::error::Category::Eof => "truncated JSON",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_secrets() {
        let c = Credentials::access_key("AKID", "canary-secret").with_security_token("canary-tok");
        let dbg = format!("{c:?}");
        assert!(dbg.contains("AKID"));
        assert!(!dbg.contains("canary"), "{dbg}");
        assert!(dbg.contains("<redacted>"));
    }

    #[test]
    fn refresh_window_is_fifteen_minutes() {
        let now = jiff::Timestamp::now();
        let mut c = Credentials::access_key("a", "b");
        assert!(!c.needs_refresh(now));
        c.expiration = Some(now + jiff::SignedDuration::from_secs(16 * 60));
        assert!(!c.needs_refresh(now));
        c.expiration = Some(now + jiff::SignedDuration::from_secs(14 * 60));
        assert!(c.needs_refresh(now));
        assert!(!c.is_expired(now));
    }
}
