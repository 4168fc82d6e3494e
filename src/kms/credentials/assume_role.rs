//! `AssumeRole` (cross-account) on top of any provider, signed with classic RPC HMAC-SHA1 using
//! the source credentials (kms-api.md §6.5): common parameters in the query, role parameters in
//! the form body, signature over both.

use std::sync::Arc;

use futures::future::BoxFuture;

use super::{
    CredentialCache, CredentialProvider, Credentials, STS_API_VERSION, credentials_error,
    default_session_name, parse_sts_body,
};
use crate::kms::endpoint::Endpoint;
use crate::kms::error::KmsError;
use crate::kms::request::{Params, Stamp, prepare_rpc};
use crate::kms::transport::{HttpOptions, http_client, send};

const NAME: &str = "ram_role_arn";

/// Settings of [`AssumeRoleProvider`].
#[derive(Debug, Clone)]
pub struct AssumeRoleOptions {
    /// `acs:ram::<account>:role/<name>`.
    pub role_arn: String,
    pub role_session_name: Option<String>,
    /// 900..=role max; 3600 by default.
    pub duration_seconds: Option<u32>,
    pub policy: Option<String>,
    pub external_id: Option<String>,
    pub sts_endpoint: Endpoint,
    pub http: HttpOptions,
}

#[derive(Debug)]
pub struct AssumeRoleProvider {
    source: Arc<dyn CredentialProvider>,
    options: AssumeRoleOptions,
    http: reqwest::Client,
    cache: CredentialCache,
}

impl AssumeRoleProvider {
    pub fn new(
        source: Arc<dyn CredentialProvider>,
        options: AssumeRoleOptions,
    ) -> Result<Self, KmsError> {
        if options.role_arn.is_empty() {
            return Err(KmsError::Config("AssumeRole needs a role ARN".into()));
        }
        if let Some(id) = &options.external_id {
            let ok = (2..=1224).contains(&id.len())
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_+=,.@:/-".contains(c));
            if !ok {
                return Err(KmsError::Config(
                    "ExternalId must be 2-1224 characters of [A-Za-z0-9_+=,.@:/-]".into(),
                ));
            }
        }
        Ok(Self {
            http: http_client(&options.http, options.sts_endpoint.host())?,
            source,
            options,
            cache: CredentialCache::default(),
        })
    }

    async fn fetch(&self) -> Result<Credentials, KmsError> {
        let source = self.source.credentials().await?;
        let o = &self.options;
        let mut params = Params::new();
        let session = o
            .role_session_name
            .clone()
            .unwrap_or_else(default_session_name);
        params
            .set_form("RoleArn", o.role_arn.as_str().into())
            .set_form("RoleSessionName", session.into())
            .set_form(
                "DurationSeconds",
                o.duration_seconds.unwrap_or(3600).to_string().into(),
            );
        if let Some(policy) = &o.policy {
            params.set_form("Policy", policy.as_str().into());
        }
        if let Some(external_id) = &o.external_id {
            params.set_form("ExternalId", external_id.as_str().into());
        }
        let prepared = prepare_rpc(
            &o.sts_endpoint,
            "AssumeRole",
            STS_API_VERSION,
            &params,
            &source,
            &Stamp::now(),
        );
        let raw = send(&self.http, prepared)
            .await
            .map_err(|e| credentials_error(NAME, e))?;
        parse_sts_body(NAME, &raw.body)
    }
}

impl CredentialProvider for AssumeRoleProvider {
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
