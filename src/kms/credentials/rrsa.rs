//! RRSA on ACK: `AssumeRoleWithOIDC` (anonymous, unsigned) with a projected ServiceAccount token
//! read from a file, given as a string, or produced by a callback (TokenRequest per tenant).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use futures::future::BoxFuture;

use super::{
    CredentialCache, CredentialProvider, Credentials, EnvLookup, STS_API_VERSION,
    credentials_error, default_session_name, parse_sts_body, sts_endpoint_from_env,
};
use crate::kms::endpoint::Endpoint;
use crate::kms::error::KmsError;
use crate::kms::request::{FORM_CONTENT_TYPE, PreparedRequest, form_body, format_timestamp};
use crate::kms::secret::SecretString;
use crate::kms::transport::{HttpOptions, http_client, send};

const NAME: &str = "oidc_role_arn";

/// A callback producing a fresh OIDC token.
pub type OidcTokenFn =
    Arc<dyn Fn() -> BoxFuture<'static, Result<SecretString, KmsError>> + Send + Sync>;

/// Where the OIDC token comes from.
#[derive(Clone)]
pub enum OidcToken {
    /// Re-read at every fetch (the kubelet rotates the projected token).
    File(PathBuf),
    Token(SecretString),
    Callback(OidcTokenFn),
}

impl fmt::Debug for OidcToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => f.debug_tuple("File").field(path).finish(),
            Self::Token(_) => f.write_str("Token(<redacted>)"),
            Self::Callback(_) => f.write_str("Callback"),
        }
    }
}

impl OidcToken {
    async fn read(&self) -> Result<SecretString, KmsError> {
        let token = match self {
            Self::File(path) => tokio::fs::read_to_string(path)
                .await
                .map(|t| SecretString::new(t.trim().to_string()))
                .map_err(|e| KmsError::Credentials {
                    provider: NAME,
                    message: format!(
                        "cannot read OIDC token file {}: {}",
                        path.display(),
                        e.kind()
                    ),
                    unreachable: false,
                })?,
            Self::Token(token) => token.clone(),
            Self::Callback(callback) => callback().await?,
        };
        if token.is_empty() {
            return Err(KmsError::Credentials {
                provider: NAME,
                message: "OIDC token is empty".into(),
                unreachable: false,
            });
        }
        Ok(token)
    }
}

/// Settings of [`RrsaProvider`].
#[derive(Debug, Clone)]
pub struct RrsaOptions {
    pub role_arn: String,
    pub oidc_provider_arn: String,
    pub token: OidcToken,
    pub role_session_name: Option<String>,
    /// 900..=role max; 3600 by default.
    pub duration_seconds: Option<u32>,
    pub policy: Option<String>,
    pub sts_endpoint: Endpoint,
    pub http: HttpOptions,
}

#[derive(Debug)]
pub struct RrsaProvider {
    options: RrsaOptions,
    http: reqwest::Client,
    cache: CredentialCache,
}

impl RrsaProvider {
    pub fn new(options: RrsaOptions) -> Result<Self, KmsError> {
        if options.role_arn.is_empty() || options.oidc_provider_arn.is_empty() {
            return Err(KmsError::Config(
                "RRSA needs a role ARN and an OIDC provider ARN".into(),
            ));
        }
        Ok(Self {
            http: http_client(&options.http, options.sts_endpoint.host())?,
            options,
            cache: CredentialCache::default(),
        })
    }

    /// From `ALIBABA_CLOUD_ROLE_ARN`, `ALIBABA_CLOUD_OIDC_PROVIDER_ARN`,
    /// `ALIBABA_CLOUD_OIDC_TOKEN_FILE` (all three required, else `None`) and the optional
    /// `ALIBABA_CLOUD_ROLE_SESSION_NAME`; STS endpoint per [`sts_endpoint_from_env`] unless given.
    pub fn from_env(
        env: &EnvLookup,
        sts_endpoint: Option<Endpoint>,
        http: HttpOptions,
    ) -> Option<Result<Self, KmsError>> {
        let role_arn = env("ALIBABA_CLOUD_ROLE_ARN")?;
        let oidc_provider_arn = env("ALIBABA_CLOUD_OIDC_PROVIDER_ARN")?;
        let token_file = env("ALIBABA_CLOUD_OIDC_TOKEN_FILE")?;
        let endpoint = match sts_endpoint
            .map(Ok)
            .unwrap_or_else(|| sts_endpoint_from_env(env))
        {
            Ok(endpoint) => endpoint,
            Err(e) => return Some(Err(e)),
        };
        Some(Self::new(RrsaOptions {
            role_arn,
            oidc_provider_arn,
            token: OidcToken::File(token_file.into()),
            role_session_name: env("ALIBABA_CLOUD_ROLE_SESSION_NAME"),
            duration_seconds: None,
            policy: None,
            sts_endpoint: endpoint,
            http,
        }))
    }

    async fn fetch(&self) -> Result<Credentials, KmsError> {
        let o = &self.options;
        let token = o.token.read().await?;
        let mut form: BTreeMap<String, SecretString> = BTreeMap::new();
        form.insert("RoleArn".into(), o.role_arn.as_str().into());
        form.insert(
            "OIDCProviderArn".into(),
            o.oidc_provider_arn.as_str().into(),
        );
        form.insert("OIDCToken".into(), token);
        let session = o
            .role_session_name
            .clone()
            .unwrap_or_else(default_session_name);
        form.insert("RoleSessionName".into(), session.into());
        let duration = o.duration_seconds.unwrap_or(3600).to_string();
        form.insert("DurationSeconds".into(), duration.into());
        if let Some(policy) = &o.policy {
            form.insert("Policy".into(), policy.as_str().into());
        }
        let timestamp = format_timestamp(jiff::Timestamp::now());
        let query = format!(
            "/?Version={STS_API_VERSION}&Action=AssumeRoleWithOIDC&Format=JSON&Timestamp={}",
            crate::kms::sign::percent_encode(&timestamp)
        );
        let prepared = PreparedRequest {
            url: o.sts_endpoint.url_for(&query),
            headers: vec![
                ("content-type".into(), FORM_CONTENT_TYPE.into()),
                ("accept".into(), "application/json".into()),
            ],
            body: form_body(&form).into_bytes(),
        };
        let raw = send(&self.http, prepared)
            .await
            .map_err(|e| credentials_error(NAME, e))?;
        parse_sts_body(NAME, &raw.body)
    }
}

impl CredentialProvider for RrsaProvider {
    fn credentials(&self) -> BoxFuture<'_, Result<Credentials, KmsError>> {
        Box::pin(self.cache.get_or_fetch(NAME, self.fetch()))
    }

    fn invalidate<'a>(&'a self, used: &'a Credentials) -> BoxFuture<'a, bool> {
        Box::pin(self.cache.invalidate(NAME, used))
    }

    fn name(&self) -> &'static str {
        NAME
    }
}
