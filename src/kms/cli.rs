//! `kmsync kms`: the `aliyun kms` command line. `kmsync kms <Action> --Param value …` passes every
//! `--Param` through (so every action works), signs with V3 (or classic RPC), prints the JSON
//! answer pretty on stdout, and on failure prints the code and message on stderr.
//!
//! Global flags (`--region`, `--endpoint`, `--network`, `--signature`, `--ca-bundle`,
//! `--access-key-id`, `--access-key-secret`, `--sts-token`, `--timeout-secs`) may come before the
//! action or among the parameters; API parameters start with an uppercase letter.

use std::fmt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use super::client::{KmsClient, KmsClientConfig};
use super::credentials::chain::ChainOptions;
use super::credentials::{CredentialProvider, Credentials, DefaultChain, StaticProvider};
use super::endpoint::{Endpoint, Network};
use super::error::KmsError;
use super::request::{Params, SignatureStyle};
use super::retry::RetryPolicy;
use super::transport::HttpOptions;

/// Signature algorithm on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SignatureArg {
    /// ACS3-HMAC-SHA256
    V3,
    /// Classic RPC HMAC-SHA1
    Rpc,
}

/// `kmsync kms` arguments.
#[derive(Clone, clap::Args)]
#[command(
    about = "Call Alibaba Cloud KMS with the `aliyun kms` syntax",
    long_about = "Call Alibaba Cloud KMS with the `aliyun kms` syntax, e.g.\n  kmsync kms GetSecretValue --SecretName db_cred --region cn-hangzhou\nEvery --Param value pair is passed through to the action. Credentials come from the flags, the ALIBABA_CLOUD_* environment, or the default credential chain."
)]
pub struct KmsArgs {
    /// Region id (endpoint kms.<region>.aliyuncs.com).
    #[arg(long, env = "ALIBABA_CLOUD_REGION_ID")]
    pub region: Option<String>,
    /// Custom endpoint: https://host[:port], or http:// to a loopback address.
    #[arg(long)]
    pub endpoint: Option<String>,
    /// Regional network: public or vpc (kms-vpc.<region>.aliyuncs.com).
    #[arg(long, default_value = "public")]
    pub network: String,
    /// Signature: v3 (ACS3-HMAC-SHA256) or rpc (HMAC-SHA1).
    #[arg(long, value_enum, default_value_t = SignatureArg::V3)]
    pub signature: SignatureArg,
    /// PEM CA bundle trusted (alone) for the endpoint.
    #[arg(long)]
    pub ca_bundle: Option<PathBuf>,
    #[arg(long, env = "ALIBABA_CLOUD_ACCESS_KEY_ID", hide_env_values = true)]
    pub access_key_id: Option<String>,
    #[arg(long, env = "ALIBABA_CLOUD_ACCESS_KEY_SECRET", hide_env_values = true)]
    pub access_key_secret: Option<String>,
    #[arg(long, env = "ALIBABA_CLOUD_SECURITY_TOKEN", hide_env_values = true)]
    pub sts_token: Option<String>,
    /// Per-attempt request timeout in seconds.
    #[arg(long, default_value_t = 30)]
    pub timeout_secs: u64,
    /// The API action, e.g. GetSecretValue, PutSecretValue, UpdateSecretVersionStage.
    pub action: String,
    /// `--Param value` pairs (or `--Param=value`), passed through verbatim.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
    pub params: Vec<String>,
}

impl fmt::Debug for KmsArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KmsArgs")
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("signature", &self.signature)
            .field("access_key_id", &self.access_key_id)
            .field(
                "access_key_secret",
                &self.access_key_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("sts_token", &self.sts_token.as_ref().map(|_| "<redacted>"))
            .field("action", &self.action)
            .field("params", &format_args!("<{} tokens>", self.params.len()))
            .finish()
    }
}

/// A usage error: says which flag is wrong, never its value.
#[derive(Debug)]
struct UsageError(String);

/// Splits `--Name value` / `--Name=value` tokens; lowercase names are global flags applied to
/// `args`, the rest are API parameters in order.
fn split_params(args: &mut KmsArgs) -> Result<Vec<(String, String)>, UsageError> {
    let tokens = std::mem::take(&mut args.params);
    let mut iter = tokens.into_iter();
    let mut api = Vec::new();
    while let Some(token) = iter.next() {
        let Some(flag) = token.strip_prefix("--") else {
            return Err(UsageError(format!(
                "expected --Param value pairs, found a bare argument at position {}",
                api.len() * 2 + 1
            )));
        };
        let (name, value) = match flag.split_once('=') {
            Some((name, value)) => (name.to_string(), value.to_string()),
            None => {
                let name = flag.to_string();
                let value = iter
                    .next()
                    .ok_or_else(|| UsageError(format!("--{name} needs a value")))?;
                (name, value)
            }
        };
        let valid = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_');
        if !valid {
            return Err(UsageError("invalid parameter name".into()));
        }
        if name.starts_with(|c: char| c.is_ascii_lowercase()) {
            apply_global(args, &name, value)?;
        } else {
            api.push((name, value));
        }
    }
    Ok(api)
}

fn apply_global(args: &mut KmsArgs, name: &str, value: String) -> Result<(), UsageError> {
    match name {
        "region" => args.region = Some(value),
        "endpoint" => args.endpoint = Some(value),
        "network" => args.network = value,
        "signature" => {
            args.signature = match value.to_ascii_lowercase().as_str() {
                "v3" => SignatureArg::V3,
                "rpc" | "v2" => SignatureArg::Rpc,
                _ => return Err(UsageError("--signature must be v3 or rpc".into())),
            }
        }
        "ca-bundle" => args.ca_bundle = Some(value.into()),
        "access-key-id" => args.access_key_id = Some(value),
        "access-key-secret" => args.access_key_secret = Some(value),
        "sts-token" => args.sts_token = Some(value),
        "timeout-secs" => {
            args.timeout_secs = value
                .parse()
                .map_err(|_| UsageError("--timeout-secs must be a number".into()))?
        }
        other => return Err(UsageError(format!("unknown flag --{other}"))),
    }
    Ok(())
}

fn endpoint_of(args: &KmsArgs) -> Result<Endpoint, KmsError> {
    if let Some(endpoint) = &args.endpoint {
        return Endpoint::parse(endpoint);
    }
    let network = match args.network.to_ascii_lowercase().as_str() {
        "public" | "" => Network::Public,
        "vpc" => Network::Vpc,
        _ => return Err(KmsError::Config("--network must be public or vpc".into())),
    };
    let region = args.region.as_deref().ok_or_else(|| {
        KmsError::Config("give --region (or ALIBABA_CLOUD_REGION_ID) or --endpoint".into())
    })?;
    Endpoint::for_region(region, network)
}

fn credentials_of(
    args: &KmsArgs,
    http: &HttpOptions,
) -> Result<Arc<dyn CredentialProvider>, KmsError> {
    match (&args.access_key_id, &args.access_key_secret) {
        (Some(id), Some(secret)) => {
            let mut creds = Credentials::access_key(id.clone(), secret.as_str());
            if let Some(token) = &args.sts_token {
                creds = creds.with_security_token(token.as_str());
            }
            Ok(Arc::new(StaticProvider::new(creds)))
        }
        (Some(_), None) | (None, Some(_)) => Err(KmsError::Config(
            "give both --access-key-id and --access-key-secret".into(),
        )),
        (None, None) => Ok(Arc::new(DefaultChain::from_env(ChainOptions {
            http: http.clone(),
            ..ChainOptions::default()
        })?)),
    }
}

fn build_client(args: &KmsArgs) -> Result<KmsClient, KmsError> {
    let ca_bundle_pem = match &args.ca_bundle {
        Some(path) => Some(std::fs::read(path).map_err(|e| {
            KmsError::Config(format!(
                "cannot read CA bundle {}: {}",
                path.display(),
                e.kind()
            ))
        })?),
        None => None,
    };
    let http = HttpOptions {
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(args.timeout_secs.max(1)),
        ca_bundle_pem,
    };
    let mut config = KmsClientConfig::new(endpoint_of(args)?, credentials_of(args, &http)?);
    config.signature = match args.signature {
        SignatureArg::V3 => SignatureStyle::V3,
        SignatureArg::Rpc => SignatureStyle::Rpc,
    };
    config.http = http;
    config.retry = RetryPolicy::default();
    KmsClient::new(config)
}

/// JSON with four-space indentation, like the aliyun CLI.
fn pretty(value: &serde_json::Value) -> String {
    use serde::Serialize as _;
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
    if value.serialize(&mut ser).is_err() {
        return value.to_string();
    }
    String::from_utf8(out).unwrap_or_else(|_| value.to_string())
}

/// Runs `kmsync kms …`. Exit codes: 0 success, 1 KMS/transport error, 2 usage or configuration.
pub async fn run(mut args: KmsArgs) -> ExitCode {
    let params = match split_params(&mut args) {
        Ok(params) => params,
        Err(UsageError(message)) => {
            eprintln!("ERROR: {message}");
            return ExitCode::from(2);
        }
    };
    let client = match build_client(&args) {
        Ok(client) => client,
        Err(err) => {
            eprintln!("ERROR: {err}");
            return ExitCode::from(2);
        }
    };
    let mut request = Params::new();
    for (name, value) in params {
        request.set_auto(&name, value);
    }
    match client.call_raw(&args.action, &request).await {
        Ok(value) => {
            println!("{}", pretty(&value));
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("ERROR: {err}");
            if let Some(request_id) = err.request_id() {
                eprintln!("RequestId: {request_id}");
            }
            if let KmsError::Api(api) = &err
                && let Some(recommend) = &api.recommend
            {
                eprintln!("Recommend: {recommend}");
            }
            ExitCode::from(if err.reason() == "InvalidConfiguration" {
                2
            } else {
                1
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Wrapper {
        #[command(flatten)]
        args: KmsArgs,
    }

    fn parse(argv: &[&str]) -> KmsArgs {
        let mut full = vec!["kms"];
        full.extend_from_slice(argv);
        Wrapper::try_parse_from(full).unwrap().args
    }

    #[test]
    fn aliyun_syntax_is_accepted_verbatim() {
        let mut args = parse(&[
            "PutSecretValue",
            "--SecretName",
            "db_cred",
            "--SecretData",
            r#"{"uname":"alice","pwd":"x"}"#,
            "--VersionId",
            "v2",
            "--VersionStages",
            r#"["MyPendingLabel"]"#,
        ]);
        assert_eq!(args.action, "PutSecretValue");
        let params = split_params(&mut args).unwrap();
        assert_eq!(params[0], ("SecretName".into(), "db_cred".into()));
        assert_eq!(params[1].1, r#"{"uname":"alice","pwd":"x"}"#);
        assert_eq!(
            params[3],
            ("VersionStages".into(), r#"["MyPendingLabel"]"#.into())
        );
        assert!(!format!("{args:?}").contains("alice"));
    }

    #[test]
    fn global_flags_anywhere_and_equals_form() {
        let mut args = parse(&[
            "--region",
            "cn-hangzhou",
            "UpdateSecretVersionStage",
            "--SecretName=db_cred",
            "--VersionStage",
            "ACSCurrent",
            "--signature",
            "rpc",
            "--MoveToVersion",
            "v2",
            "--endpoint=http://127.0.0.1:1",
        ]);
        let params = split_params(&mut args).unwrap();
        assert_eq!(params.len(), 3);
        assert_eq!(args.region.as_deref(), Some("cn-hangzhou"));
        assert_eq!(args.signature, SignatureArg::Rpc);
        assert_eq!(args.endpoint.as_deref(), Some("http://127.0.0.1:1"));
        assert_eq!(endpoint_of(&args).unwrap().host(), "127.0.0.1:1");
    }

    #[test]
    fn usage_errors_do_not_echo_values() {
        let mut args = parse(&["GetRandomPassword", "--ExcludePunctuation"]);
        let err = split_params(&mut args).unwrap_err();
        assert_eq!(err.0, "--ExcludePunctuation needs a value");
        let mut args = parse(&["PutSecretValue", "--SecretData", "canary", "stray-canary"]);
        assert!(!split_params(&mut args).unwrap_err().0.contains("canary"));
        let mut args = parse(&["X", "--bogus", "1"]);
        assert!(split_params(&mut args).is_err());
    }

    #[test]
    fn endpoint_selection() {
        let mut args = parse(&["--region", "cn-shanghai", "--network", "vpc", "ListSecrets"]);
        split_params(&mut args).unwrap();
        assert_eq!(
            endpoint_of(&args).unwrap().host(),
            "kms-vpc.cn-shanghai.aliyuncs.com"
        );
        let args = parse(&["--endpoint", "http://10.0.0.1", "ListSecrets"]);
        assert_eq!(
            endpoint_of(&args).unwrap_err().reason(),
            "InvalidConfiguration"
        );
    }

    #[test]
    fn pretty_uses_four_spaces() {
        let out = pretty(&serde_json::json!({"RandomPassword": "x", "RequestId": "r"}));
        assert_eq!(
            out,
            "{\n    \"RandomPassword\": \"x\",\n    \"RequestId\": \"r\"\n}"
        );
    }
}
