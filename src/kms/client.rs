//! `KmsClient`: the typed entry point the controller and the CLI use. One client = one endpoint,
//! one credential provider, one signature style, one retry budget.

use std::sync::Arc;

use super::actions::*;
use super::credentials::{CredentialProvider, Credentials};
use super::endpoint::Endpoint;
use super::error::KmsError;
use super::request::{self, Params, PreparedRequest, SignatureStyle, Stamp};
use super::retry::{RetryBudget, RetryPolicy};
use super::transport::{HttpOptions, RawResponse, Transport, TransportStats, http_client};

/// Everything a [`KmsClient`] needs.
#[derive(Debug, Clone)]
pub struct KmsClientConfig {
    pub endpoint: Endpoint,
    pub credentials: Arc<dyn CredentialProvider>,
    pub signature: SignatureStyle,
    pub http: HttpOptions,
    pub retry: RetryPolicy,
    /// Shared budget; a fresh default budget when `None`.
    pub retry_budget: Option<Arc<RetryBudget>>,
    /// Fixed date/nonce for every request (tests only).
    pub fixed_stamp: Option<Stamp>,
}

impl KmsClientConfig {
    /// V3 signing, default timeouts, the official retry policy.
    pub fn new(endpoint: Endpoint, credentials: Arc<dyn CredentialProvider>) -> Self {
        Self {
            endpoint,
            credentials,
            signature: SignatureStyle::V3,
            http: HttpOptions::default(),
            retry: RetryPolicy::default(),
            retry_budget: None,
            fixed_stamp: None,
        }
    }
}

/// The Alibaba Cloud KMS Secrets Manager client.
#[derive(Debug)]
pub struct KmsClient {
    transport: Transport,
}

impl KmsClient {
    pub fn new(config: KmsClientConfig) -> Result<Self, KmsError> {
        let http = http_client(&config.http, config.endpoint.host())?;
        Ok(Self {
            transport: Transport {
                http,
                endpoint: config.endpoint,
                style: config.signature,
                credentials: config.credentials,
                retry: config.retry,
                budget: config.retry_budget.unwrap_or_default(),
                fixed_stamp: config.fixed_stamp,
                stats: Arc::new(TransportStats::default()),
            },
        })
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.transport.endpoint
    }

    /// Attempt/retry counters of this client.
    pub fn stats(&self) -> &TransportStats {
        &self.transport.stats
    }

    pub fn retry_budget(&self) -> &RetryBudget {
        &self.transport.budget
    }

    /// Runs one typed action.
    pub async fn execute<A: KmsAction>(&self, action: &A) -> Result<A::Response, KmsError> {
        let params = action.params()?;
        let raw = self.transport.call(A::ACTION, &params).await?;
        decode(&raw)
    }

    /// Runs any action with raw parameters and returns the JSON answer (the CLI's path).
    pub async fn call_raw(
        &self,
        action: &str,
        params: &Params,
    ) -> Result<serde_json::Value, KmsError> {
        let valid = !action.is_empty() && action.chars().all(|c| c.is_ascii_alphanumeric());
        if !valid {
            return Err(KmsError::InvalidRequest(format!(
                "invalid action name {action:?}"
            )));
        }
        let raw = self.transport.call(action, params).await?;
        decode(&raw)
    }

    /// The exact request this client would send for `action` (signature tests, debugging).
    pub fn prepare<A: KmsAction>(
        &self,
        action: &A,
        credentials: &Credentials,
        stamp: &Stamp,
    ) -> Result<PreparedRequest, KmsError> {
        Ok(request::prepare(
            self.transport.style,
            &self.transport.endpoint,
            A::ACTION,
            request::KMS_API_VERSION,
            &action.params()?,
            credentials,
            stamp,
        ))
    }

    pub async fn get_secret_value(
        &self,
        req: &GetSecretValueRequest,
    ) -> Result<GetSecretValueResponse, KmsError> {
        self.execute(req).await
    }

    pub async fn batch_get_secret_value(
        &self,
        req: &BatchGetSecretValueRequest,
    ) -> Result<BatchGetSecretValueResponse, KmsError> {
        self.execute(req).await
    }

    pub async fn put_secret_value(
        &self,
        req: &PutSecretValueRequest,
    ) -> Result<PutSecretValueResponse, KmsError> {
        self.execute(req).await
    }

    pub async fn update_secret_version_stage(
        &self,
        req: &UpdateSecretVersionStageRequest,
    ) -> Result<SecretNameResponse, KmsError> {
        self.execute(req).await
    }

    pub async fn list_secret_version_ids(
        &self,
        req: &ListSecretVersionIdsRequest,
    ) -> Result<ListSecretVersionIdsResponse, KmsError> {
        self.execute(req).await
    }

    pub async fn describe_secret(
        &self,
        req: &DescribeSecretRequest,
    ) -> Result<DescribeSecretResponse, KmsError> {
        self.execute(req).await
    }

    pub async fn list_secrets(
        &self,
        req: &ListSecretsRequest,
    ) -> Result<ListSecretsResponse, KmsError> {
        self.execute(req).await
    }

    pub async fn create_secret(
        &self,
        req: &CreateSecretRequest,
    ) -> Result<CreateSecretResponse, KmsError> {
        self.execute(req).await
    }

    pub async fn update_secret(
        &self,
        req: &UpdateSecretRequest,
    ) -> Result<SecretNameResponse, KmsError> {
        self.execute(req).await
    }

    pub async fn delete_secret(
        &self,
        req: &DeleteSecretRequest,
    ) -> Result<DeleteSecretResponse, KmsError> {
        self.execute(req).await
    }

    pub async fn restore_secret(
        &self,
        req: &RestoreSecretRequest,
    ) -> Result<SecretNameResponse, KmsError> {
        self.execute(req).await
    }

    pub async fn get_random_password(
        &self,
        req: &GetRandomPasswordRequest,
    ) -> Result<GetRandomPasswordResponse, KmsError> {
        self.execute(req).await
    }

    pub async fn tag_resource(&self, req: &TagResourceRequest) -> Result<EmptyResponse, KmsError> {
        self.execute(req).await
    }

    pub async fn untag_resource(
        &self,
        req: &UntagResourceRequest,
    ) -> Result<EmptyResponse, KmsError> {
        self.execute(req).await
    }

    pub async fn tag_resources(
        &self,
        req: &TagResourcesRequest,
    ) -> Result<EmptyResponse, KmsError> {
        self.execute(req).await
    }

    pub async fn untag_resources(
        &self,
        req: &UntagResourcesRequest,
    ) -> Result<EmptyResponse, KmsError> {
        self.execute(req).await
    }
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(raw: &RawResponse) -> Result<T, KmsError> {
    serde_json::from_slice(&raw.body).map_err(|e| KmsError::InvalidResponse {
        status: raw.status,
        message: super::credentials::json_error_category(&e).to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kms::credentials::StaticProvider;
    use crate::kms::sign;

    fn client(style: SignatureStyle) -> KmsClient {
        let creds = Credentials::access_key("testAccessKeyId", "testAccessKeySecret");
        let mut config = KmsClientConfig::new(
            Endpoint::parse("kms.cn-hangzhou.aliyuncs.com").unwrap(),
            Arc::new(StaticProvider::new(creds)),
        );
        config.signature = style;
        KmsClient::new(config).unwrap()
    }

    fn tv_creds() -> Credentials {
        Credentials::access_key("testAccessKeyId", "testAccessKeySecret")
    }

    fn tv_stamp() -> Stamp {
        Stamp::fixed("2024-05-01T08:00:00Z", "0123456789abcdef0123456789abcdef")
    }

    #[test]
    fn tv4_get_secret_value_built_by_the_client() {
        let req = GetSecretValueRequest {
            secret_name: "prod/db-password".into(),
            version_stage: Some("ACSCurrent".into()),
            ..Default::default()
        };
        let prepared = client(SignatureStyle::V3)
            .prepare(&req, &tv_creds(), &tv_stamp())
            .unwrap();
        assert_eq!(
            prepared.url,
            "https://kms.cn-hangzhou.aliyuncs.com/?SecretName=prod%2Fdb-password&VersionStage=ACSCurrent"
        );
        assert!(prepared.body.is_empty());
        assert_eq!(prepared.header("content-type"), None);
        assert_eq!(
            prepared.header("x-acs-content-sha256"),
            Some(sign::EMPTY_BODY_SHA256)
        );
        assert_eq!(
            prepared.header("authorization"),
            Some(
                "ACS3-HMAC-SHA256 Credential=testAccessKeyId,SignedHeaders=host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version,Signature=521aece0b0a04901e0d5e2d61cffe909dfa768bb97b3f196b015debca777f600"
            )
        );
    }

    #[test]
    fn tv6_put_secret_value_built_by_the_client() {
        let req = PutSecretValueRequest {
            secret_name: "prod/db-password".into(),
            version_id: "v2".into(),
            secret_data: r#"{"user":"admin","pass":"p@ss w0rd~*"}"#.into(),
            version_stages: Some(vec!["ACSCurrent".into()]),
            ..Default::default()
        };
        let prepared = client(SignatureStyle::V3)
            .prepare(&req, &tv_creds(), &tv_stamp())
            .unwrap();
        assert_eq!(
            prepared.body,
            b"SecretData=%7B%22user%22%3A%22admin%22%2C%22pass%22%3A%22p%40ss+w0rd~%2A%22%7D"
        );
        assert_eq!(
            prepared.header("x-acs-content-sha256"),
            Some("96a2e57557122f6b095314aaa41ec767307a608411c598c46e750d35c66fb57b")
        );
        assert_eq!(
            prepared.header("content-type"),
            Some("application/x-www-form-urlencoded")
        );
        let auth = prepared.header("authorization").unwrap();
        assert!(auth.contains("SignedHeaders=content-type;host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version,"));
        assert!(auth.ends_with(
            "Signature=7cc5e903c910edbd3503b66a5e4275540b4ba2cbcf7659389230d4be714290e0"
        ));
        assert!(prepared.url.ends_with(
            "/?SecretName=prod%2Fdb-password&VersionId=v2&VersionStages=%5B%22ACSCurrent%22%5D"
        ));
    }

    #[test]
    fn sts_credentials_add_signed_token_headers() {
        let creds = tv_creds().with_security_token("tok+/=");
        let prepared = client(SignatureStyle::V3)
            .prepare(&GetSecretValueRequest::current("a"), &creds, &tv_stamp())
            .unwrap();
        assert_eq!(prepared.header("x-acs-security-token"), Some("tok+/="));
        assert_eq!(
            prepared.header("x-acs-accesskey-id"),
            Some("testAccessKeyId")
        );
        assert!(prepared.header("authorization").unwrap().contains(
            "SignedHeaders=host;x-acs-accesskey-id;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-security-token;x-acs-signature-nonce;x-acs-version,"
        ));
        assert!(!format!("{prepared:?}").contains("tok+/="));
    }

    #[test]
    fn rpc_request_signs_query_and_body_union() {
        let req = PutSecretValueRequest {
            secret_name: "prod/db-password".into(),
            version_id: "v2".into(),
            secret_data: "a b*".into(),
            ..Default::default()
        };
        let creds = tv_creds().with_security_token("tok");
        let prepared = client(SignatureStyle::Rpc)
            .prepare(&req, &creds, &tv_stamp())
            .unwrap();
        assert_eq!(prepared.body, b"SecretData=a+b%2A");
        let url = reqwest::Url::parse(&prepared.url).unwrap();
        let mut params: std::collections::BTreeMap<String, String> =
            url.query_pairs().into_owned().collect();
        assert_eq!(params["Action"], "PutSecretValue");
        assert_eq!(params["Version"], "2016-01-20");
        assert_eq!(params["SignatureMethod"], "HMAC-SHA1");
        assert_eq!(params["SecurityToken"], "tok");
        assert_eq!(params["Timestamp"], "2024-05-01T08:00:00Z");
        let signature = params.remove("Signature").unwrap();
        params.insert("SecretData".into(), "a b*".into());
        let expected = sign::rpc_signature(
            "testAccessKeySecret",
            &sign::rpc_string_to_sign("POST", &params),
        );
        assert_eq!(signature, expected);
    }
}
