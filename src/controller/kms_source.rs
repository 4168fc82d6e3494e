//! The real [`SourceFactory`]: turns a resolved store into a cached [`KmsClient`] and KMS errors
//! into condition reasons. The only place where the controller meets the KMS client.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use futures::future::BoxFuture;

use crate::controller::endpoint_policy::EndpointPolicy;
use crate::controller::error::SourceError;
use crate::controller::identity;
use crate::controller::rate_limit::RateLimiter;
use crate::controller::source::{ResolvedStore, SecretSource, SourceFactory, StoreCredentials};
use crate::crd::rotation::{CreateIfMissing, PasswordSpec};
use crate::crd::store::Network as StoreNetwork;
use crate::kms::SecretString;
use crate::kms::actions::{
    CreateSecretRequest, GetRandomPasswordRequest, GetSecretValueRequest, GetSecretValueResponse,
    ListSecretVersionIdsRequest, ListSecretsRequest, PutSecretValueRequest, Tag,
    UpdateSecretVersionStageRequest,
};
use crate::kms::credentials::assume_role::AssumeRoleOptions;
use crate::kms::credentials::chain::ChainOptions;
use crate::kms::credentials::ecs::EcsOptions;
use crate::kms::credentials::rrsa::RrsaOptions;
use crate::kms::credentials::{
    AssumeRoleProvider, DefaultChain, EcsRamRoleProvider, OidcToken, RrsaProvider, StaticProvider,
};
use crate::kms::endpoint::is_loopback_host;
use crate::kms::transport::HttpOptions;
use crate::kms::{
    CredentialProvider, Credentials, Endpoint, KmsClient, KmsClientConfig, KmsError, Network,
};
use crate::metrics::Metrics;
use crate::render::{DEFAULT_STAGE, FetchedVersion, VersionSelector};
use crate::rotation::plan::{KmsView, VersionView};

/// Operator-wide settings that shape every client.
#[derive(Clone, Debug, Default)]
pub struct KmsSourceSettings {
    /// STS endpoint for RRSA and AssumeRole; default: the store's loopback endpoint (the emulator
    /// serves STS too), else `sts[-vpc].<region>.aliyuncs.com`.
    pub sts_endpoint: Option<Endpoint>,
    /// Metadata service for ECS RAM roles (tests point it at loopback).
    pub metadata_base: Option<String>,
    /// Hosts a store's endpoint may name (`--allowed-endpoint-hosts`).
    pub endpoint_policy: EndpointPolicy,
    /// Whole-request timeout of one KMS or STS attempt; `None`: the client default (30 s).
    pub request_timeout: Option<std::time::Duration>,
    /// Namespaced stores may use the operator's own identity
    /// (`--allow-namespaced-operator-identity`, for single-tenant clusters).
    pub allow_namespaced_operator_identity: bool,
}

/// Builds one client per store and rebuilds it when the store or its credentials change.
pub struct KmsSourceFactory {
    settings: KmsSourceSettings,
    metrics: Arc<Metrics>,
    clients: Mutex<HashMap<String, (ResolvedStore, Arc<KmsSource>)>>,
}

impl std::fmt::Debug for KmsSourceFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KmsSourceFactory")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl KmsSourceFactory {
    pub fn new(settings: KmsSourceSettings, metrics: Arc<Metrics>) -> Self {
        Self {
            settings,
            metrics,
            clients: Mutex::new(HashMap::new()),
        }
    }

    fn build(&self, store: &ResolvedStore) -> Result<KmsSource, KmsError> {
        let connection = &store.connection;
        let network = match connection.network {
            Some(StoreNetwork::Vpc) => Network::Vpc,
            _ => Network::Public,
        };
        let endpoint = kms_endpoint(connection)?;
        let defaults = HttpOptions::default();
        let http = HttpOptions {
            ca_bundle_pem: connection
                .ca_bundle
                .as_ref()
                .map(|pem| pem.as_bytes().to_vec()),
            request_timeout: self
                .settings
                .request_timeout
                .unwrap_or(defaults.request_timeout),
            ..defaults
        };
        let sts_endpoint = sts_endpoint(&self.settings, connection, &endpoint, network)?;
        let mut provider = self.credentials(store, &sts_endpoint, &http)?;
        if let Some(assume) = &connection.auth.assume_role {
            let options = AssumeRoleOptions {
                role_arn: assume.role_arn.clone(),
                role_session_name: assume
                    .session_name
                    .clone()
                    .or_else(|| Some("kmsync".into())),
                duration_seconds: assume.duration_seconds.map(|d| d as u32),
                policy: None,
                external_id: assume.external_id.clone(),
                sts_endpoint: sts_endpoint.clone(),
                http: http.clone(),
            };
            provider = Arc::new(AssumeRoleProvider::new(provider, options)?);
        }
        let mut config = KmsClientConfig::new(endpoint, provider);
        config.http = http;
        // The limiter lives with the client, so it is rebuilt (and resized) when the store changes.
        let limiter = connection.rate_limit.as_ref().map(|limit| {
            let qps = limit.qps.max(1) as u32;
            Arc::new(RateLimiter::new(
                qps,
                limit.burst.map_or(qps, |b| b.max(1) as u32),
            ))
        });
        Ok(KmsSource {
            client: Arc::new(KmsClient::new(config)?),
            limiter,
            metrics: self.metrics.clone(),
        })
    }

    /// Refuses a store whose endpoint host the operator does not allow, before any request.
    fn check_endpoint(&self, store: &ResolvedStore) -> Result<(), SourceError> {
        let endpoint = kms_endpoint(&store.connection).map_err(|e| source_error(&e, None))?;
        let host = endpoint
            .base_url()
            .host_str()
            .unwrap_or_default()
            .to_string();
        if self.settings.endpoint_policy.allows(&host) {
            return Ok(());
        }
        Err(SourceError {
            reason: "EndpointNotAllowed",
            message: format!(
                "endpoint host {host} is not allowed by the operator (--allowed-endpoint-hosts); no request was sent"
            ),
            transient: false,
            retry_after: None,
        })
    }

    fn credentials(
        &self,
        store: &ResolvedStore,
        sts_endpoint: &Endpoint,
        http: &HttpOptions,
    ) -> Result<Arc<dyn CredentialProvider>, KmsError> {
        Ok(match &store.credentials {
            StoreCredentials::AccessKey {
                id,
                secret,
                security_token,
            } => {
                let mut credentials = Credentials::access_key(id.clone(), secret.clone());
                if let Some(token) = security_token {
                    credentials = credentials.with_security_token(token.clone());
                }
                Arc::new(StaticProvider::new(credentials))
            }
            StoreCredentials::Rrsa {
                role_arn,
                oidc_provider_arn,
                token,
                session_name,
            } => {
                let token = if token.is_empty() {
                    let path = std::env::var("ALIBABA_CLOUD_OIDC_TOKEN_FILE").map_err(|_| {
                        KmsError::Config(
                            "RRSA without serviceAccountRef needs the operator's token file (ALIBABA_CLOUD_OIDC_TOKEN_FILE)".into(),
                        )
                    })?;
                    OidcToken::File(path.into())
                } else {
                    OidcToken::Token(token.clone().into())
                };
                Arc::new(RrsaProvider::new(RrsaOptions {
                    role_arn: role_arn.clone(),
                    oidc_provider_arn: oidc_provider_arn.clone(),
                    token,
                    role_session_name: session_name.clone().or_else(|| Some("kmsync".into())),
                    duration_seconds: None,
                    policy: None,
                    sts_endpoint: sts_endpoint.clone(),
                    http: http.clone(),
                })?)
            }
            StoreCredentials::EcsRamRole { role_name } => {
                let mut options = EcsOptions {
                    role_name: role_name.clone(),
                    ..EcsOptions::default()
                };
                if let Some(base) = &self.settings.metadata_base {
                    options.metadata_base = base.clone();
                }
                Arc::new(EcsRamRoleProvider::new(options)?)
            }
            StoreCredentials::DefaultChain => {
                let options = ChainOptions {
                    sts_endpoint: self.settings.sts_endpoint.clone(),
                    metadata_base: self.settings.metadata_base.clone(),
                    ..ChainOptions::default()
                };
                Arc::new(DefaultChain::from_env(options)?)
            }
        })
    }
}

impl KmsSourceFactory {
    /// A client for `store` outside the controller (the kubectl plugin's `versions`).
    pub fn client(&self, store: &ResolvedStore) -> Result<Arc<KmsClient>, SourceError> {
        identity::check(store, self.settings.allow_namespaced_operator_identity)?;
        self.check_endpoint(store)?;
        self.build(store)
            .map(|source| source.client)
            .map_err(|e| source_error(&e, None))
    }
}

impl SourceFactory for KmsSourceFactory {
    fn source(&self, store: &ResolvedStore) -> Result<Arc<dyn SecretSource>, SourceError> {
        let mut clients = self.clients.lock().expect("clients lock");
        if let Some((built_for, source)) = clients.get(&store.key)
            && built_for == store
        {
            return Ok(source.clone());
        }
        identity::check(store, self.settings.allow_namespaced_operator_identity)?;
        self.check_endpoint(store)?;
        let source = Arc::new(self.build(store).map_err(|e| source_error(&e, None))?);
        clients.insert(store.key.clone(), (store.clone(), source.clone()));
        Ok(source)
    }
}

/// The store's KMS endpoint: its `endpoint`, else the regional one.
fn kms_endpoint(connection: &crate::crd::store::KmsConnection) -> Result<Endpoint, KmsError> {
    let network = match connection.network {
        Some(StoreNetwork::Vpc) => Network::Vpc,
        _ => Network::Public,
    };
    match &connection.endpoint {
        Some(url) => Endpoint::parse(url),
        None => Endpoint::for_region(&connection.region_id, network),
    }
}

/// The STS endpoint for RRSA and AssumeRole: the operator's setting, else the store's own loopback
/// endpoint (the emulator serves STS as well), else `sts[-vpc].<region>.aliyuncs.com`.
fn sts_endpoint(
    settings: &KmsSourceSettings,
    connection: &crate::crd::store::KmsConnection,
    kms_endpoint: &Endpoint,
    network: Network,
) -> Result<Endpoint, KmsError> {
    match &settings.sts_endpoint {
        Some(sts) => Ok(sts.clone()),
        None if connection.endpoint.is_some()
            && kms_endpoint
                .base_url()
                .host_str()
                .is_some_and(is_loopback_host) =>
        {
            Ok(kms_endpoint.clone())
        }
        None => Endpoint::for_product("sts", &connection.region_id, network),
    }
}

/// Reads through one store's client, within the store's rate limit.
#[derive(Debug)]
pub struct KmsSource {
    client: Arc<KmsClient>,
    limiter: Option<Arc<RateLimiter>>,
    metrics: Arc<Metrics>,
}

impl KmsSource {
    /// Waits for the store's rate limit, runs `call`, and counts it by action and outcome.
    async fn measured<T>(
        limiter: Option<Arc<RateLimiter>>,
        metrics: Arc<Metrics>,
        action: &'static str,
        call: impl std::future::Future<Output = Result<T, SourceError>>,
    ) -> Result<T, SourceError> {
        if let Some(limiter) = limiter {
            limiter.acquire().await;
        }
        let started = std::time::Instant::now();
        let result = call.await;
        let outcome = result.as_ref().map_or_else(|e| e.reason, |_| "Success");
        metrics.kms_call(action, outcome, started.elapsed().as_secs_f64());
        result
    }
}

impl SecretSource for KmsSource {
    fn get_secret_value(
        &self,
        secret_name: &str,
        selector: &VersionSelector,
    ) -> BoxFuture<'static, Result<FetchedVersion, SourceError>> {
        let client = self.client.clone();
        let mut request = GetSecretValueRequest::current(secret_name);
        match selector {
            VersionSelector::Stage(stage) => request.version_stage = Some(stage.clone()),
            VersionSelector::Id(id) => request.version_id = Some(id.clone()),
        }
        let selector = selector.clone();
        let call = async move {
            let response = client
                .get_secret_value(&request)
                .await
                .map_err(|e| source_error(&e, Some(&selector)))?;
            let data = response
                .value_bytes()
                .and_then(|data| check_answer(&response, &selector, data.expose()).map(|()| data))
                .map_err(|e| source_error(&e, Some(&selector)))?;
            Ok(FetchedVersion {
                version_id: response.version_id.clone(),
                stages: response.version_stages.clone(),
                data: data.expose().to_vec(),
                create_time: response.create_time.clone(),
            })
        };
        Self::measured(
            self.limiter.clone(),
            self.metrics.clone(),
            "GetSecretValue",
            call,
        )
        .boxed()
    }

    fn check(&self) -> BoxFuture<'static, Result<(), SourceError>> {
        let client = self.client.clone();
        let call = async move {
            let request = ListSecretsRequest {
                page_size: Some(1),
                ..ListSecretsRequest::default()
            };
            client
                .list_secrets(&request)
                .await
                .map(|_| ())
                .map_err(|e| source_error(&e, None))
        };
        Self::measured(
            self.limiter.clone(),
            self.metrics.clone(),
            "ListSecrets",
            call,
        )
        .boxed()
    }
    fn list_versions(&self, secret_name: &str) -> BoxFuture<'static, Result<KmsView, SourceError>> {
        let client = self.client.clone();
        let secret_name = secret_name.to_string();
        let call = async move {
            let request = ListSecretVersionIdsRequest {
                secret_name,
                include_deprecated: Some(true),
                page_number: Some(1),
                page_size: Some(100),
            };
            match client.list_secret_version_ids(&request).await {
                Ok(response) => Ok(KmsView {
                    exists: true,
                    versions: response
                        .version_ids
                        .into_iter()
                        .map(|v| VersionView {
                            id: v.version_id,
                            stages: v.version_stages,
                        })
                        .collect(),
                }),
                Err(error) if error.is_not_found() => Ok(KmsView::default()),
                Err(error) => Err(source_error(&error, None)),
            }
        };
        Self::measured(
            self.limiter.clone(),
            self.metrics.clone(),
            "ListSecretVersionIds",
            call,
        )
        .boxed()
    }

    fn random_password(
        &self,
        options: &PasswordSpec,
    ) -> BoxFuture<'static, Result<SecretString, SourceError>> {
        let client = self.client.clone();
        let request = GetRandomPasswordRequest {
            password_length: options.length.map(|l| l.clamp(8, 128) as u32),
            exclude_characters: options.exclude_characters.clone().filter(|c| !c.is_empty()),
            exclude_lowercase: Some(options.exclude_lowercase),
            exclude_uppercase: Some(options.exclude_uppercase),
            exclude_numbers: Some(options.exclude_numbers),
            exclude_punctuation: Some(options.exclude_punctuation),
            require_each_included_type: Some(options.require_each_included_type.unwrap_or(true)),
        };
        let call = async move {
            client
                .get_random_password(&request)
                .await
                .map(|r| r.random_password)
                .map_err(|e| source_error(&e, None))
        };
        Self::measured(
            self.limiter.clone(),
            self.metrics.clone(),
            "GetRandomPassword",
            call,
        )
        .boxed()
    }

    fn put_value(
        &self,
        secret_name: &str,
        version_id: &str,
        value: SecretString,
        stages: Option<Vec<String>>,
    ) -> BoxFuture<'static, Result<(), SourceError>> {
        let client = self.client.clone();
        let request = PutSecretValueRequest {
            secret_name: secret_name.to_string(),
            version_id: version_id.to_string(),
            secret_data: value,
            secret_data_type: None,
            version_stages: stages,
        };
        let call = async move {
            client
                .put_secret_value(&request)
                .await
                .map(|_| ())
                .map_err(|e| source_error(&e, None))
        };
        Self::measured(
            self.limiter.clone(),
            self.metrics.clone(),
            "PutSecretValue",
            call,
        )
        .boxed()
    }

    fn update_stage(
        &self,
        secret_name: &str,
        stage: &str,
        move_to: Option<&str>,
        remove_from: Option<&str>,
    ) -> BoxFuture<'static, Result<(), SourceError>> {
        let client = self.client.clone();
        let request = UpdateSecretVersionStageRequest {
            secret_name: secret_name.to_string(),
            version_stage: stage.to_string(),
            remove_from_version: remove_from.map(str::to_string),
            move_to_version: move_to.map(str::to_string),
        };
        let call = async move {
            client
                .update_secret_version_stage(&request)
                .await
                .map(|_| ())
                .map_err(|e| source_error(&e, None))
        };
        Self::measured(
            self.limiter.clone(),
            self.metrics.clone(),
            "UpdateSecretVersionStage",
            call,
        )
        .boxed()
    }

    fn create_secret(
        &self,
        secret_name: &str,
        version_id: &str,
        value: SecretString,
        bootstrap: &CreateIfMissing,
    ) -> BoxFuture<'static, Result<(), SourceError>> {
        let client = self.client.clone();
        let request = CreateSecretRequest {
            secret_name: secret_name.to_string(),
            version_id: version_id.to_string(),
            secret_data: value,
            description: bootstrap.description.clone(),
            encryption_key_id: bootstrap.encryption_key_id.clone(),
            tags: bootstrap
                .tags
                .iter()
                .map(|(k, v)| Tag {
                    tag_key: k.clone(),
                    tag_value: v.clone(),
                })
                .collect(),
            ..CreateSecretRequest::default()
        };
        let call = async move {
            client
                .create_secret(&request)
                .await
                .map(|_| ())
                .map_err(|e| source_error(&e, None))
        };
        Self::measured(
            self.limiter.clone(),
            self.metrics.clone(),
            "CreateSecret",
            call,
        )
        .boxed()
    }
}

/// Refuses a 2xx answer that cannot be the version asked for: no `VersionId`, an empty value
/// (KMS never stores one), or another version or stage than requested (a lagging replica or a
/// confused proxy). Syncing it would empty the Secret or roll it back.
fn check_answer(
    response: &GetSecretValueResponse,
    selector: &VersionSelector,
    data: &[u8],
) -> Result<(), KmsError> {
    let invalid = |what: String| {
        Err(KmsError::InvalidResponse {
            status: 200,
            message: format!("GetSecretValue of {}: {what}", response.secret_name),
        })
    };
    if response.version_id.is_empty() {
        return invalid("no VersionId".into());
    }
    if data.is_empty() {
        return invalid(format!(
            "empty SecretData for version {}",
            response.version_id
        ));
    }
    match selector {
        VersionSelector::Id(id) if *id != response.version_id => invalid(format!(
            "version {} answered for version {id}",
            response.version_id
        )),
        VersionSelector::Stage(stage)
            if !response.version_stages.is_empty() && !response.version_stages.contains(stage) =>
        {
            invalid(format!(
                "version {} answered for stage {stage} but holds {:?}",
                response.version_id, response.version_stages
            ))
        }
        _ => Ok(()),
    }
}

/// Maps a client error to a condition reason. "Not found" for the default stage means the secret
/// itself is missing; for any other selector, that version or stage is.
pub fn source_error(error: &KmsError, selector: Option<&VersionSelector>) -> SourceError {
    let reason = match error.reason() {
        "NotFound" => match selector {
            Some(VersionSelector::Stage(stage)) if stage != DEFAULT_STAGE => "VersionNotFound",
            Some(VersionSelector::Id(_)) => "VersionNotFound",
            _ => "SecretNotFound",
        },
        "Unavailable" | "Transport" | "Timeout" => "KmsUnavailable",
        "PendingDeletion" => "SecretPendingDeletion",
        "InvalidConfiguration" => "InvalidStore",
        other => other,
    };
    let transient = error.is_retryable()
        || matches!(
            reason,
            "Throttled"
                | "KmsUnavailable"
                | "CredentialsUnavailable"
                | "ClockSkew"
                | "Unknown"
                | "InvalidResponse"
        );
    let what = match selector {
        Some(selector) => format!("reading {selector} from KMS"),
        None => "calling KMS".to_string(),
    };
    SourceError {
        reason,
        message: format!("{what}: {error}"),
        transient,
        retry_after: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::store::KmsConnection;

    fn connection(endpoint: Option<&str>) -> KmsConnection {
        KmsConnection {
            region_id: "cn-hangzhou".into(),
            endpoint: endpoint.map(String::from),
            ..KmsConnection::default()
        }
    }

    #[test]
    fn sts_goes_to_the_loopback_emulator_with_its_port() {
        let emulator = Endpoint::parse("http://127.0.0.1:18090").unwrap();
        let sts = sts_endpoint(
            &KmsSourceSettings::default(),
            &connection(Some("http://127.0.0.1:18090")),
            &emulator,
            Network::Public,
        )
        .unwrap();
        assert_eq!(sts, emulator);
    }

    #[test]
    fn sts_defaults_to_the_regional_endpoint_and_honours_the_setting() {
        let kms = Endpoint::for_region("cn-hangzhou", Network::Vpc).unwrap();
        let sts = sts_endpoint(
            &KmsSourceSettings::default(),
            &connection(None),
            &kms,
            Network::Vpc,
        )
        .unwrap();
        assert_eq!(sts.host(), "sts-vpc.cn-hangzhou.aliyuncs.com");
        let settings = KmsSourceSettings {
            sts_endpoint: Some(Endpoint::parse("http://127.0.0.1:9").unwrap()),
            ..KmsSourceSettings::default()
        };
        assert_eq!(
            sts_endpoint(&settings, &connection(None), &kms, Network::Vpc)
                .unwrap()
                .host(),
            "127.0.0.1:9"
        );
    }

    #[test]
    fn answers_that_would_empty_or_roll_back_a_secret_are_refused() {
        let answer = |id: &str, stages: &[&str]| GetSecretValueResponse {
            secret_name: "db".into(),
            version_id: id.into(),
            version_stages: stages.iter().map(|s| s.to_string()).collect(),
            ..GetSecretValueResponse::default()
        };
        let current = VersionSelector::Stage("ACSCurrent".into());
        assert!(check_answer(&answer("v2", &["ACSCurrent"]), &current, b"x").is_ok());
        // No stages in the answer: nothing to contradict.
        assert!(check_answer(&answer("v2", &[]), &current, b"x").is_ok());
        let refused = [
            check_answer(&answer("v2", &["ACSCurrent"]), &current, b""),
            check_answer(&answer("", &["ACSCurrent"]), &current, b"x"),
            check_answer(&answer("v1", &["ACSPrevious"]), &current, b"x"),
            check_answer(
                &answer("v1", &["ACSCurrent"]),
                &VersionSelector::Id("v2".into()),
                b"x",
            ),
        ];
        for result in refused {
            let error = source_error(&result.unwrap_err(), Some(&current));
            assert_eq!((error.reason, error.transient), ("InvalidResponse", true));
            assert!(
                error.message.contains("GetSecretValue of db"),
                "{}",
                error.message
            );
        }
    }

    #[test]
    fn errors_map_to_condition_reasons() {
        let not_found = KmsError::Api(Box::new(crate::kms::ApiError::parse(
            404,
            br#"{"Code":"Forbidden.ResourceNotFound","Message":"missing"}"#,
            None,
        )));
        assert_eq!(
            source_error(
                &not_found,
                Some(&VersionSelector::Stage("ACSCurrent".into()))
            )
            .reason,
            "SecretNotFound"
        );
        assert_eq!(
            source_error(
                &not_found,
                Some(&VersionSelector::Stage("ACSPrevious".into()))
            )
            .reason,
            "VersionNotFound"
        );
        assert_eq!(
            source_error(&not_found, Some(&VersionSelector::Id("v9".into()))).reason,
            "VersionNotFound"
        );
        let throttled = KmsError::Api(Box::new(crate::kms::ApiError::parse(
            429,
            br#"{"Code":"Rejected.Throttling","Message":"slow down"}"#,
            None,
        )));
        let error = source_error(&throttled, None);
        assert_eq!((error.reason, error.transient), ("Throttled", true));
    }
}
