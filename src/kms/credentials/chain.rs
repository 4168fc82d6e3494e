//! The default credential chain (kms-api.md §6.2), in the documented order: environment
//! AccessKey, RRSA/OIDC (when its three variables are set), the aliyun CLI profile (unless
//! disabled), the credentials file, ECS RAM role (unless disabled), credentials URI (when set).
//! The chain remembers the provider that last succeeded and asks it first.

use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;

use super::ecs::EcsOptions;
use super::{
    CredentialProvider, Credentials, CredentialsUriProvider, EcsRamRoleProvider, EnvLookup,
    EnvProvider, RrsaProvider, env_flag, profile, sts_endpoint_from_env, system_env,
};
use crate::kms::endpoint::Endpoint;
use crate::kms::error::KmsError;
use crate::kms::transport::HttpOptions;

/// Inputs of [`DefaultChain::from_env`]; tests inject the environment and loopback endpoints.
#[derive(Clone)]
pub struct ChainOptions {
    pub env: EnvLookup,
    /// Overrides the STS endpoint derived from the environment.
    pub sts_endpoint: Option<Endpoint>,
    /// Overrides `http://100.100.100.200`.
    pub metadata_base: Option<String>,
    pub http: HttpOptions,
}

impl Default for ChainOptions {
    fn default() -> Self {
        Self {
            env: system_env(),
            sts_endpoint: None,
            metadata_base: None,
            http: HttpOptions::default(),
        }
    }
}

impl std::fmt::Debug for ChainOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainOptions")
            .field("sts_endpoint", &self.sts_endpoint)
            .field("metadata_base", &self.metadata_base)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
pub struct DefaultChain {
    providers: Vec<Arc<dyn CredentialProvider>>,
    last_success: Mutex<Option<usize>>,
}

impl DefaultChain {
    /// A chain of explicit providers, tried in order.
    pub fn new(providers: Vec<Arc<dyn CredentialProvider>>) -> Self {
        Self {
            providers,
            last_success: Mutex::new(None),
        }
    }

    /// The standard chain as the environment configures it.
    pub fn from_env(options: ChainOptions) -> Result<Self, KmsError> {
        let env = &options.env;
        let mut providers: Vec<Arc<dyn CredentialProvider>> =
            vec![Arc::new(EnvProvider::new(env.clone()))];
        if let Some(rrsa) =
            RrsaProvider::from_env(env, options.sts_endpoint.clone(), options.http.clone())
        {
            providers.push(Arc::new(rrsa?));
        }
        let sts_endpoint = match &options.sts_endpoint {
            Some(endpoint) => endpoint.clone(),
            None => sts_endpoint_from_env(env)?,
        };
        let metadata_base = options.metadata_base.as_deref();
        if let Some(path) = profile::cli_config_path(env) {
            let wanted = env("ALIBABA_CLOUD_PROFILE");
            let parse = |text: &str| profile::parse_cli_config(text, wanted.as_deref());
            providers.push(profile::file_step(
                "cli_profile",
                &path,
                parse,
                &sts_endpoint,
                metadata_base,
                &options.http,
            ));
        }
        if let Some(path) = profile::credentials_file_path(env) {
            let wanted = env("ALIBABA_CLOUD_PROFILE");
            let parse = |text: &str| profile::parse_credentials_file(text, wanted.as_deref());
            providers.push(profile::file_step(
                "credentials_file",
                &path,
                parse,
                &sts_endpoint,
                metadata_base,
                &options.http,
            ));
        }
        if !env_flag(env, "ALIBABA_CLOUD_ECS_METADATA_DISABLED") {
            let mut ecs = EcsOptions {
                role_name: env("ALIBABA_CLOUD_ECS_METADATA"),
                imdsv1_disabled: env_flag(env, "ALIBABA_CLOUD_IMDSV1_DISABLED"),
                ..EcsOptions::default()
            };
            if let Some(base) = &options.metadata_base {
                ecs.metadata_base = base.clone();
            }
            providers.push(Arc::new(EcsRamRoleProvider::new(ecs)?));
        }
        if let Some(uri) = env("ALIBABA_CLOUD_CREDENTIALS_URI") {
            providers.push(Arc::new(CredentialsUriProvider::new(&uri, &options.http)?));
        }
        Ok(Self::new(providers))
    }

    /// Names of the providers, in order.
    pub fn provider_names(&self) -> Vec<&'static str> {
        self.providers.iter().map(|p| p.name()).collect()
    }

    async fn resolve(&self) -> Result<Credentials, KmsError> {
        let first = *self.last_success.lock().unwrap_or_else(|p| p.into_inner());
        let order = first
            .into_iter()
            .chain((0..self.providers.len()).filter(|i| Some(*i) != first));
        let mut failures = Vec::new();
        let mut all_unreachable = true;
        for index in order {
            let provider = &self.providers[index];
            match provider.credentials().await {
                Ok(creds) => {
                    *self.last_success.lock().unwrap_or_else(|p| p.into_inner()) = Some(index);
                    return Ok(creds);
                }
                Err(err) => {
                    all_unreachable &= matches!(
                        err,
                        KmsError::Credentials {
                            unreachable: true,
                            ..
                        }
                    );
                    failures.push(format!("{}: {err}", provider.name()));
                }
            }
        }
        Err(KmsError::Credentials {
            provider: "default_chain",
            message: if failures.is_empty() {
                "no credential provider configured".into()
            } else {
                failures.join("; ")
            },
            unreachable: all_unreachable && !failures.is_empty(),
        })
    }
}

impl CredentialProvider for DefaultChain {
    fn credentials(&self) -> BoxFuture<'_, Result<Credentials, KmsError>> {
        Box::pin(self.resolve())
    }

    fn name(&self) -> &'static str {
        "default_chain"
    }

    /// Only the provider that gave the credentials last can have cached them.
    fn invalidate<'a>(&'a self, used: &'a Credentials) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            let last = *self.last_success.lock().unwrap_or_else(|p| p.into_inner());
            match last.and_then(|i| self.providers.get(i)) {
                Some(provider) => provider.invalidate(used).await,
                None => false,
            }
        })
    }
}
