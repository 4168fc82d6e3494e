//! Credentials from `ALIBABA_CLOUD_ACCESS_KEY_ID`, `ALIBABA_CLOUD_ACCESS_KEY_SECRET` and the
//! optional `ALIBABA_CLOUD_SECURITY_TOKEN` (first step of the default chain).

use std::fmt;

use futures::future::BoxFuture;

use super::{CredentialProvider, Credentials, EnvLookup, system_env};
use crate::kms::error::KmsError;

pub const ENV_ACCESS_KEY_ID: &str = "ALIBABA_CLOUD_ACCESS_KEY_ID";
pub const ENV_ACCESS_KEY_SECRET: &str = "ALIBABA_CLOUD_ACCESS_KEY_SECRET";
pub const ENV_SECURITY_TOKEN: &str = "ALIBABA_CLOUD_SECURITY_TOKEN";

/// Reads the environment on every call (cheap; picks up changes).
#[derive(Clone)]
pub struct EnvProvider {
    env: EnvLookup,
}

impl fmt::Debug for EnvProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EnvProvider")
    }
}

impl Default for EnvProvider {
    fn default() -> Self {
        Self::new(system_env())
    }
}

impl EnvProvider {
    pub fn new(env: EnvLookup) -> Self {
        Self { env }
    }

    /// Whether the AccessKey variables are set at all.
    pub fn is_configured(&self) -> bool {
        (self.env)(ENV_ACCESS_KEY_ID).is_some() && (self.env)(ENV_ACCESS_KEY_SECRET).is_some()
    }

    fn read(&self) -> Result<Credentials, KmsError> {
        let missing = |name: &str| KmsError::Credentials {
            provider: "env",
            message: format!("{name} is not set"),
            unreachable: false,
        };
        let id = (self.env)(ENV_ACCESS_KEY_ID).ok_or_else(|| missing(ENV_ACCESS_KEY_ID))?;
        let secret =
            (self.env)(ENV_ACCESS_KEY_SECRET).ok_or_else(|| missing(ENV_ACCESS_KEY_SECRET))?;
        let mut creds = Credentials::access_key(id, secret);
        if let Some(token) = (self.env)(ENV_SECURITY_TOKEN) {
            creds = creds.with_security_token(token);
        }
        Ok(creds)
    }
}

impl CredentialProvider for EnvProvider {
    fn credentials(&self) -> BoxFuture<'_, Result<Credentials, KmsError>> {
        let result = self.read();
        Box::pin(async move { result })
    }

    fn name(&self) -> &'static str {
        "env"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kms::credentials::env_from_pairs;

    #[tokio::test]
    async fn reads_ak_and_optional_token() {
        let p = EnvProvider::new(env_from_pairs(&[
            (ENV_ACCESS_KEY_ID, "id"),
            (ENV_ACCESS_KEY_SECRET, "secret"),
            (ENV_SECURITY_TOKEN, "tok"),
        ]));
        assert!(p.is_configured());
        let c = p.credentials().await.unwrap();
        assert_eq!(c.access_key_id, "id");
        assert_eq!(c.security_token.unwrap().expose(), "tok");
        let empty = EnvProvider::new(env_from_pairs(&[(ENV_ACCESS_KEY_ID, "id")]));
        assert!(!empty.is_configured());
        let err = empty.credentials().await.unwrap_err();
        assert_eq!(err.reason(), "InvalidCredentials");
        assert!(err.to_string().contains(ENV_ACCESS_KEY_SECRET));
    }
}
