//! Steps 3 and 4 of the default chain (kms-api.md §6.2): the aliyun CLI profile
//! (`~/.aliyun/config.json`, profile from `ALIBABA_CLOUD_PROFILE` or the file's `current`) and the
//! credentials file (`ALIBABA_CLOUD_CREDENTIALS_FILE` or `~/.alibabacloud/credentials`, INI). Each
//! is read once when the chain is built and becomes the matching provider; values never appear in
//! errors.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use super::assume_role::AssumeRoleOptions;
use super::ecs::EcsOptions;
use super::{
    AssumeRoleProvider, CredentialProvider, Credentials, EcsRamRoleProvider, EnvLookup,
    StaticProvider,
};
use crate::kms::endpoint::Endpoint;
use crate::kms::error::KmsError;
use crate::kms::transport::HttpOptions;

/// What a profile or file section describes, before it becomes a provider.
#[derive(Clone, PartialEq, Eq)]
pub enum ProfileCredentials {
    AccessKey {
        id: String,
        secret: String,
        token: Option<String>,
    },
    RamRoleArn {
        id: String,
        secret: String,
        role_arn: String,
        session_name: Option<String>,
    },
    EcsRamRole {
        role_name: Option<String>,
    },
}

impl std::fmt::Debug for ProfileCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::AccessKey { id, .. } => {
                write!(f, "AccessKey {{ id: {id:?}, secret: <redacted> }}")
            }
            Self::RamRoleArn { id, role_arn, .. } => write!(
                f,
                "RamRoleArn {{ id: {id:?}, role_arn: {role_arn:?}, secret: <redacted> }}"
            ),
            Self::EcsRamRole { role_name } => {
                write!(f, "EcsRamRole {{ role_name: {role_name:?} }}")
            }
        }
    }
}

fn config_error(source: &str, message: String) -> KmsError {
    KmsError::Config(format!("{source}: {message}"))
}

/// Parses the aliyun CLI's `config.json` and picks `profile` (else `current`, else `default`).
pub fn parse_cli_config(text: &str, profile: Option<&str>) -> Result<ProfileCredentials, KmsError> {
    let source = "aliyun CLI config";
    let json: serde_json::Value =
        serde_json::from_str(text).map_err(|_| config_error(source, "not valid JSON".into()))?;
    let wanted = profile
        .map(str::to_string)
        .or_else(|| json["current"].as_str().map(str::to_string))
        .unwrap_or_else(|| "default".into());
    let entry = json["profiles"]
        .as_array()
        .and_then(|profiles| {
            profiles
                .iter()
                .find(|p| p["name"].as_str() == Some(wanted.as_str()))
        })
        .ok_or_else(|| config_error(source, format!("no profile named {wanted:?}")))?;
    let field = |name: &str| {
        entry[name]
            .as_str()
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let required = |name: &str| {
        field(name).ok_or_else(|| config_error(source, format!("profile {wanted:?} has no {name}")))
    };
    match entry["mode"].as_str().unwrap_or("AK") {
        "AK" => Ok(ProfileCredentials::AccessKey {
            id: required("access_key_id")?,
            secret: required("access_key_secret")?,
            token: None,
        }),
        "StsToken" => Ok(ProfileCredentials::AccessKey {
            id: required("access_key_id")?,
            secret: required("access_key_secret")?,
            token: Some(required("sts_token")?),
        }),
        "RamRoleArn" => Ok(ProfileCredentials::RamRoleArn {
            id: required("access_key_id")?,
            secret: required("access_key_secret")?,
            role_arn: required("ram_role_arn")?,
            session_name: field("ram_session_name"),
        }),
        "EcsRamRole" => Ok(ProfileCredentials::EcsRamRole {
            role_name: field("ram_role_name"),
        }),
        other => Err(config_error(
            source,
            format!("profile {wanted:?} has mode {other:?}, which kmsync does not support"),
        )),
    }
}

/// Minimal INI: `[section]` headers and `key = value` lines; `#`/`;` comments.
fn parse_ini(text: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut sections: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut current = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name.trim().to_string();
            continue;
        }
        if let Some((key, value)) = line.split_once('=') {
            let value = value.trim().trim_matches('"').to_string();
            sections
                .entry(current.clone())
                .or_default()
                .insert(key.trim().to_string(), value);
        }
    }
    sections
}

/// Parses a credentials file and picks `section` (default `default`).
pub fn parse_credentials_file(
    text: &str,
    section: Option<&str>,
) -> Result<ProfileCredentials, KmsError> {
    let source = "credentials file";
    let wanted = section.unwrap_or("default");
    let sections = parse_ini(text);
    let entry = sections
        .get(wanted)
        .ok_or_else(|| config_error(source, format!("no section [{wanted}]")))?;
    let field = |name: &str| entry.get(name).filter(|v| !v.is_empty()).cloned();
    let required = |name: &str| {
        field(name).ok_or_else(|| config_error(source, format!("section [{wanted}] has no {name}")))
    };
    match entry
        .get("type")
        .map(String::as_str)
        .unwrap_or("access_key")
    {
        "access_key" => Ok(ProfileCredentials::AccessKey {
            id: required("access_key_id")?,
            secret: required("access_key_secret")?,
            token: None,
        }),
        "sts" => Ok(ProfileCredentials::AccessKey {
            id: required("access_key_id")?,
            secret: required("access_key_secret")?,
            token: Some(required("security_token")?),
        }),
        "ram_role_arn" => Ok(ProfileCredentials::RamRoleArn {
            id: required("access_key_id")?,
            secret: required("access_key_secret")?,
            role_arn: required("role_arn")?,
            session_name: field("role_session_name"),
        }),
        "ecs_ram_role" => Ok(ProfileCredentials::EcsRamRole {
            role_name: field("role_name"),
        }),
        other => Err(config_error(
            source,
            format!("section [{wanted}] has type {other:?}, which kmsync does not support"),
        )),
    }
}

/// Turns parsed credentials into a provider.
pub fn provider(
    credentials: ProfileCredentials,
    sts_endpoint: &Endpoint,
    metadata_base: Option<&str>,
    http: &HttpOptions,
) -> Result<Arc<dyn CredentialProvider>, KmsError> {
    Ok(match credentials {
        ProfileCredentials::AccessKey { id, secret, token } => {
            let mut creds = Credentials::access_key(id, secret);
            if let Some(token) = token {
                creds = creds.with_security_token(token);
            }
            Arc::new(StaticProvider::new(creds))
        }
        ProfileCredentials::RamRoleArn {
            id,
            secret,
            role_arn,
            session_name,
        } => {
            let source: Arc<dyn CredentialProvider> =
                Arc::new(StaticProvider::new(Credentials::access_key(id, secret)));
            let options = AssumeRoleOptions {
                role_arn,
                role_session_name: session_name.or_else(|| Some("kmsync".into())),
                duration_seconds: None,
                policy: None,
                external_id: None,
                sts_endpoint: sts_endpoint.clone(),
                http: http.clone(),
            };
            Arc::new(AssumeRoleProvider::new(source, options)?)
        }
        ProfileCredentials::EcsRamRole { role_name } => {
            let mut options = EcsOptions {
                role_name,
                ..EcsOptions::default()
            };
            if let Some(base) = metadata_base {
                options.metadata_base = base.to_string();
            }
            Arc::new(EcsRamRoleProvider::new(options)?)
        }
    })
}

/// A configured step that cannot give credentials (unreadable or unsupported profile): it fails
/// with the reason, so the chain moves on and its final error says why.
#[derive(Debug)]
pub struct Unusable {
    pub name: &'static str,
    pub message: String,
}

impl CredentialProvider for Unusable {
    fn credentials(&self) -> futures::future::BoxFuture<'_, Result<Credentials, KmsError>> {
        let error = KmsError::Credentials {
            provider: self.name,
            message: self.message.clone(),
            unreachable: false,
        };
        Box::pin(async move { Err(error) })
    }

    fn name(&self) -> &'static str {
        self.name
    }
}

/// The provider of one file-based step, or an [`Unusable`] one saying why not.
pub fn file_step(
    name: &'static str,
    path: &std::path::Path,
    parse: impl Fn(&str) -> Result<ProfileCredentials, KmsError>,
    sts_endpoint: &Endpoint,
    metadata_base: Option<&str>,
    http: &HttpOptions,
) -> Arc<dyn CredentialProvider> {
    let built = std::fs::read_to_string(path)
        .map_err(|e| KmsError::Config(format!("{}: {e}", path.display())))
        .and_then(|text| parse(&text))
        .and_then(|creds| provider(creds, sts_endpoint, metadata_base, http));
    match built {
        Ok(inner) => Arc::new(Named { name, inner }),
        Err(error) => Arc::new(Unusable {
            name,
            message: error.to_string(),
        }),
    }
}

/// A provider known by the chain step that configured it.
#[derive(Debug)]
struct Named {
    name: &'static str,
    inner: Arc<dyn CredentialProvider>,
}

impl CredentialProvider for Named {
    fn credentials(&self) -> futures::future::BoxFuture<'_, Result<Credentials, KmsError>> {
        self.inner.credentials()
    }

    fn name(&self) -> &'static str {
        self.name
    }

    fn invalidate<'a>(&'a self, used: &'a Credentials) -> futures::future::BoxFuture<'a, bool> {
        self.inner.invalidate(used)
    }
}

fn home(env: &EnvLookup) -> Option<PathBuf> {
    env("HOME").map(PathBuf::from)
}

/// The CLI config file to read, unless disabled; `None` when there is none.
pub fn cli_config_path(env: &EnvLookup) -> Option<PathBuf> {
    if env("ALIBABA_CLOUD_CLI_PROFILE_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return None;
    }
    home(env)
        .map(|h| h.join(".aliyun/config.json"))
        .filter(|p| p.is_file())
}

/// The credentials file to read; `None` when there is none.
pub fn credentials_file_path(env: &EnvLookup) -> Option<PathBuf> {
    if let Some(path) = env("ALIBABA_CLOUD_CREDENTIALS_FILE") {
        return Some(PathBuf::from(path));
    }
    let dir = home(env)?.join(".alibabacloud");
    [dir.join("credentials"), dir.join("credentials.ini")]
        .into_iter()
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CANARY: &str = "canary-profile-secret-0c9e";

    #[test]
    fn cli_profiles_by_name_current_and_mode() {
        let config = format!(
            r#"{{"current":"work","profiles":[
                {{"name":"default","mode":"AK","access_key_id":"ak-default","access_key_secret":"{CANARY}"}},
                {{"name":"work","mode":"StsToken","access_key_id":"STS.ak","access_key_secret":"{CANARY}","sts_token":"tok"}},
                {{"name":"role","mode":"RamRoleArn","access_key_id":"ak","access_key_secret":"{CANARY}","ram_role_arn":"acs:ram::1:role/r"}},
                {{"name":"odd","mode":"External"}}]}}"#
        );
        assert!(matches!(
            parse_cli_config(&config, None).unwrap(),
            ProfileCredentials::AccessKey { token: Some(_), .. }
        ));
        assert!(matches!(
            parse_cli_config(&config, Some("default")).unwrap(),
            ProfileCredentials::AccessKey { token: None, .. }
        ));
        assert!(matches!(
            parse_cli_config(&config, Some("role")).unwrap(),
            ProfileCredentials::RamRoleArn { .. }
        ));
        let unsupported = parse_cli_config(&config, Some("odd"))
            .unwrap_err()
            .to_string();
        assert!(unsupported.contains("External"));
        assert!(
            parse_cli_config(&config, Some("nope"))
                .unwrap_err()
                .to_string()
                .contains("no profile")
        );
        let debug = format!("{:?}", parse_cli_config(&config, Some("default")).unwrap());
        assert!(!debug.contains(CANARY));
    }

    #[test]
    fn credentials_file_sections_and_types() {
        let ini = format!(
            "# comment\n[default]\ntype = access_key\naccess_key_id = ak1\naccess_key_secret = {CANARY}\n\n\
             [client1]\ntype = sts\naccess_key_id = STS.x\naccess_key_secret = {CANARY}\nsecurity_token = t\n\
             [ecs]\ntype = ecs_ram_role\nrole_name = worker\n"
        );
        assert_eq!(
            parse_credentials_file(&ini, None).unwrap(),
            ProfileCredentials::AccessKey {
                id: "ak1".into(),
                secret: CANARY.into(),
                token: None
            }
        );
        assert!(matches!(
            parse_credentials_file(&ini, Some("client1")).unwrap(),
            ProfileCredentials::AccessKey { token: Some(_), .. }
        ));
        assert_eq!(
            parse_credentials_file(&ini, Some("ecs")).unwrap(),
            ProfileCredentials::EcsRamRole {
                role_name: Some("worker".into())
            }
        );
        let missing =
            parse_credentials_file("[default]\ntype = access_key\naccess_key_id = a\n", None)
                .unwrap_err()
                .to_string();
        assert!(missing.contains("access_key_secret") && !missing.contains(CANARY));
    }

    fn home_with(cli: Option<&str>, file: Option<&str>) -> tempfile::TempDir {
        let home = tempfile::tempdir().unwrap();
        if let Some(cli) = cli {
            std::fs::create_dir_all(home.path().join(".aliyun")).unwrap();
            std::fs::write(home.path().join(".aliyun/config.json"), cli).unwrap();
        }
        if let Some(file) = file {
            std::fs::create_dir_all(home.path().join(".alibabacloud")).unwrap();
            std::fs::write(home.path().join(".alibabacloud/credentials"), file).unwrap();
        }
        home
    }

    async fn chain_id(
        home: &tempfile::TempDir,
        extra: &[(&str, &str)],
    ) -> Result<(Vec<&'static str>, String), String> {
        let home_path = home.path().display().to_string();
        let mut pairs = vec![
            ("HOME", home_path.as_str()),
            ("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true"),
        ];
        pairs.extend_from_slice(extra);
        let options = super::super::chain::ChainOptions {
            env: super::super::env_from_pairs(&pairs),
            ..Default::default()
        };
        let chain = super::super::DefaultChain::from_env(options).map_err(|e| e.to_string())?;
        let names = chain.provider_names();
        chain
            .credentials()
            .await
            .map(|c| (names, c.access_key_id))
            .map_err(|e| e.to_string())
    }

    const CLI: &str = r#"{"current":"default","profiles":[{"name":"default","mode":"AK","access_key_id":"from-cli","access_key_secret":"s"}]}"#;
    const FILE: &str =
        "[default]\ntype = access_key\naccess_key_id = from-file\naccess_key_secret = s\n";

    #[tokio::test]
    async fn the_chain_reads_cli_profile_then_credentials_file_in_order() {
        let both = home_with(Some(CLI), Some(FILE));
        let (names, id) = chain_id(&both, &[]).await.unwrap();
        assert_eq!(names, ["env", "cli_profile", "credentials_file"]);
        assert_eq!(id, "from-cli");
        let (_, id) = chain_id(&both, &[("ALIBABA_CLOUD_CLI_PROFILE_DISABLED", "true")])
            .await
            .unwrap();
        assert_eq!(id, "from-file");
        let (_, id) = chain_id(
            &both,
            &[
                ("ALIBABA_CLOUD_ACCESS_KEY_ID", "from-env"),
                ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "s"),
            ],
        )
        .await
        .unwrap();
        assert_eq!(id, "from-env", "the environment comes first");
    }

    #[tokio::test]
    async fn an_unusable_profile_is_skipped_and_named_in_the_final_error() {
        let broken = home_with(Some("{not json"), Some(FILE));
        let (_, id) = chain_id(&broken, &[]).await.unwrap();
        assert_eq!(id, "from-file");
        let only_broken = home_with(Some("{not json"), None);
        let error = chain_id(&only_broken, &[]).await.unwrap_err();
        assert!(
            error.contains("cli_profile") && error.contains("not valid JSON"),
            "{error}"
        );
    }
}
