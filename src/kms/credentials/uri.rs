//! Credentials from `ALIBABA_CLOUD_CREDENTIALS_URI` (last step of the default chain): a GET that
//! returns `{Code:"Success", AccessKeyId, AccessKeySecret, SecurityToken, Expiration}`.

use futures::future::BoxFuture;
use serde::Deserialize;

use super::{CredentialCache, CredentialProvider, Credentials, WireCredentials, credentials_error};
use crate::kms::endpoint::is_loopback_host;
use crate::kms::error::KmsError;
use crate::kms::transport::{HttpOptions, http_client};

const NAME: &str = "credentials_uri";

#[derive(Debug)]
pub struct CredentialsUriProvider {
    uri: reqwest::Url,
    http: reqwest::Client,
    cache: CredentialCache,
}

impl CredentialsUriProvider {
    /// `https://…`, or `http://` to a loopback host (a local credentials agent).
    pub fn new(uri: &str, http: &HttpOptions) -> Result<Self, KmsError> {
        let url = reqwest::Url::parse(uri)
            .map_err(|_| KmsError::Config("invalid credentials URI".into()))?;
        let host = url.host_str().unwrap_or_default().to_string();
        match url.scheme() {
            "https" => {}
            "http" if is_loopback_host(&host) => {}
            _ => {
                return Err(KmsError::Config(
                    "credentials URI must be https:// or http:// to a loopback host".into(),
                ));
            }
        }
        Ok(Self {
            http: http_client(http, &host)?,
            uri: url,
            cache: CredentialCache::default(),
        })
    }

    async fn fetch(&self) -> Result<Credentials, KmsError> {
        #[derive(Deserialize)]
        struct Answer {
            #[serde(rename = "Code")]
            code: Option<String>,
            #[serde(flatten)]
            credentials: WireCredentials,
        }
        let response = self
            .http
            .get(self.uri.clone())
            .send()
            .await
            .map_err(|e| credentials_error(NAME, KmsError::from_reqwest(e)))?;
        let status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(|e| credentials_error(NAME, KmsError::from_reqwest(e)))?;
        if !(200..300).contains(&status) {
            return Err(KmsError::Credentials {
                provider: NAME,
                message: format!("credentials URI answered HTTP {status}"),
                unreachable: status >= 500,
            });
        }
        let answer: Answer = serde_json::from_slice(&body).map_err(|e| KmsError::Credentials {
            provider: NAME,
            message: format!("unexpected response: {}", super::json_error_category(&e)),
            unreachable: false,
        })?;
        if answer.code.as_deref() != Some("Success") {
            return Err(KmsError::Credentials {
                provider: NAME,
                message: format!("Code is {:?}, not Success", answer.code.unwrap_or_default()),
                unreachable: false,
            });
        }
        answer.credentials.into_credentials(NAME)
    }
}

impl CredentialProvider for CredentialsUriProvider {
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
