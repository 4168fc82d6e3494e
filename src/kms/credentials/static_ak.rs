//! Static AccessKey credentials (optionally with an STS token), e.g. from a Kubernetes Secret.

use futures::future::BoxFuture;

use super::{CredentialProvider, Credentials};
use crate::kms::error::KmsError;

/// Always returns the same credentials.
#[derive(Debug, Clone)]
pub struct StaticProvider {
    credentials: Credentials,
}

impl StaticProvider {
    pub fn new(credentials: Credentials) -> Self {
        Self { credentials }
    }
}

impl CredentialProvider for StaticProvider {
    fn credentials(&self) -> BoxFuture<'_, Result<Credentials, KmsError>> {
        let creds = self.credentials.clone();
        Box::pin(async move {
            if creds.access_key_id.is_empty() || creds.access_key_secret.is_empty() {
                return Err(KmsError::Credentials {
                    provider: "static_ak",
                    message: "AccessKey id or secret is empty".into(),
                    unreachable: false,
                });
            }
            Ok(creds)
        })
    }

    fn name(&self) -> &'static str {
        "static_ak"
    }
}
