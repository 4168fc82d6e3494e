//! ECS instance RAM role through the metadata service (kms-api.md §6.3): IMDSv2 token `PUT`, then
//! role name and credentials `GET`s. If the token request fails the provider falls back to IMDSv1
//! (no token header) unless `imdsv1_disabled`, in which case the error propagates.

use futures::future::BoxFuture;
use serde::Deserialize;

use super::{CredentialCache, CredentialProvider, Credentials, WireCredentials, credentials_error};
use crate::kms::endpoint::is_loopback_host;
use crate::kms::error::KmsError;
use crate::kms::transport::{HttpOptions, http_client};

const NAME: &str = "ecs_ram_role";
/// The metadata service.
pub const DEFAULT_METADATA_BASE: &str = "http://100.100.100.200";
const TOKEN_PATH: &str = "/latest/api/token";
const CREDENTIALS_PATH: &str = "/latest/meta-data/ram/security-credentials/";
const TOKEN_TTL_HEADER: &str = "X-aliyun-ecs-metadata-token-ttl-seconds";
const TOKEN_HEADER: &str = "X-aliyun-ecs-metadata-token";

/// Settings of [`EcsRamRoleProvider`].
#[derive(Debug, Clone)]
pub struct EcsOptions {
    /// Role name; discovered from the metadata service when `None`.
    pub role_name: Option<String>,
    /// Fail instead of falling back to IMDSv1 (`ALIBABA_CLOUD_IMDSV1_DISABLED=true`).
    pub imdsv1_disabled: bool,
    /// `http://100.100.100.200` by default; tests use a loopback address.
    pub metadata_base: String,
    pub token_ttl_seconds: u32,
    /// 1 s connect and 1 s read by default, like the Python SDK.
    pub http: HttpOptions,
}

impl Default for EcsOptions {
    fn default() -> Self {
        Self {
            role_name: None,
            imdsv1_disabled: false,
            metadata_base: DEFAULT_METADATA_BASE.to_string(),
            token_ttl_seconds: 21600,
            http: HttpOptions {
                connect_timeout: std::time::Duration::from_secs(1),
                request_timeout: std::time::Duration::from_secs(2),
                ca_bundle_pem: None,
            },
        }
    }
}

#[derive(Debug)]
pub struct EcsRamRoleProvider {
    options: EcsOptions,
    http: reqwest::Client,
    cache: CredentialCache,
}

impl EcsRamRoleProvider {
    pub fn new(options: EcsOptions) -> Result<Self, KmsError> {
        let url = reqwest::Url::parse(&options.metadata_base)
            .map_err(|_| KmsError::Config("invalid metadata service address".into()))?;
        let host = url.host_str().unwrap_or_default().to_string();
        if url.scheme() != "http" || !(host == "100.100.100.200" || is_loopback_host(&host)) {
            return Err(KmsError::Config(
                "metadata service must be http://100.100.100.200 or a loopback address".into(),
            ));
        }
        Ok(Self {
            http: http_client(&options.http, &host)?,
            options,
            cache: CredentialCache::default(),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.options.metadata_base.trim_end_matches('/'))
    }

    fn refusal(message: String) -> KmsError {
        KmsError::Credentials {
            provider: NAME,
            message,
            unreachable: false,
        }
    }

    async fn metadata_token(&self) -> Result<Option<String>, KmsError> {
        let result = self
            .http
            .put(self.url(TOKEN_PATH))
            .header(TOKEN_TTL_HEADER, self.options.token_ttl_seconds.to_string())
            .send()
            .await;
        let failure = match result {
            Ok(response) if response.status().is_success() => match response.text().await {
                Ok(token) if !token.trim().is_empty() => {
                    return Ok(Some(token.trim().to_string()));
                }
                Ok(_) => Self::refusal("metadata token is empty".into()),
                Err(e) => credentials_error(NAME, KmsError::from_reqwest(e)),
            },
            Ok(response) => Self::refusal(format!(
                "metadata token request answered HTTP {}",
                response.status().as_u16()
            )),
            Err(e) => credentials_error(NAME, KmsError::from_reqwest(e)),
        };
        if self.options.imdsv1_disabled {
            return Err(failure);
        }
        tracing::debug!(error = %failure, "IMDSv2 token unavailable; falling back to IMDSv1");
        Ok(None)
    }

    async fn get_text(&self, path: &str, token: Option<&str>) -> Result<String, KmsError> {
        let mut request = self.http.get(self.url(path));
        if let Some(token) = token {
            request = request.header(TOKEN_HEADER, token);
        }
        let response = request
            .send()
            .await
            .map_err(|e| credentials_error(NAME, KmsError::from_reqwest(e)))?;
        let status = response.status().as_u16();
        let text = response
            .text()
            .await
            .map_err(|e| credentials_error(NAME, KmsError::from_reqwest(e)))?;
        match status {
            200..=299 => Ok(text),
            404 => Err(Self::refusal(
                "no RAM role is attached to this instance (or the role name is wrong)".into(),
            )),
            _ => Err(KmsError::Credentials {
                provider: NAME,
                message: format!("metadata service answered HTTP {status}"),
                unreachable: status >= 500,
            }),
        }
    }

    async fn fetch(&self) -> Result<Credentials, KmsError> {
        let token = self.metadata_token().await?;
        let role = match &self.options.role_name {
            Some(role) => role.clone(),
            None => {
                let listing = self.get_text(CREDENTIALS_PATH, token.as_deref()).await?;
                listing
                    .lines()
                    .map(str::trim)
                    .find(|l| !l.is_empty())
                    .map(str::to_string)
                    .ok_or_else(|| {
                        Self::refusal("no RAM role is attached to this instance".into())
                    })?
            }
        };
        let body = self
            .get_text(&format!("{CREDENTIALS_PATH}{role}"), token.as_deref())
            .await?;
        #[derive(Deserialize)]
        struct Answer {
            #[serde(rename = "Code")]
            code: Option<String>,
            #[serde(flatten)]
            credentials: WireCredentials,
        }
        let answer: Answer = serde_json::from_str(&body).map_err(|e| {
            Self::refusal(format!(
                "unexpected metadata response: {}",
                super::json_error_category(&e)
            ))
        })?;
        if answer.code.as_deref() != Some("Success") {
            return Err(Self::refusal(format!(
                "metadata credentials Code is {:?}, not Success",
                answer.code.unwrap_or_default()
            )));
        }
        answer.credentials.into_credentials(NAME)
    }
}

impl CredentialProvider for EcsRamRoleProvider {
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
