//! `kmsync emulator`: command-line flags, start-up line and port file, signal handling
//! (SIGTERM/SIGINT stop the server and flush the state file).

use std::path::PathBuf;
use std::process::ExitCode;

use super::config::{AccessKey, EmulatorConfig};
use super::oidc::JwksSource;
use super::persist::write_atomic;
use super::server::Emulator;
use super::tls::TlsConfig;

#[derive(Debug, Clone, clap::Args)]
pub struct EmulatorArgs {
    /// Address to listen on (loopback unless --allow-non-loopback).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: std::net::SocketAddr,
    /// Allow a non-loopback listen address (the admin paths stay loopback-only).
    #[arg(long)]
    pub allow_non_loopback: bool,
    /// AccessKey accepted by the emulator, `ID:SECRET` or `ID:SECRET:STS_TOKEN` (repeatable).
    #[arg(long = "access-key", value_name = "ID:SECRET[:TOKEN]", value_parser = AccessKey::parse)]
    pub access_keys: Vec<AccessKey>,
    /// YAML config file (EmulatorConfig, camelCase); flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// YAML seed preloading secrets (used when the state file does not exist yet).
    #[arg(long)]
    pub seed: Option<PathBuf>,
    /// JSON state file, rewritten atomically after every change.
    #[arg(long)]
    pub state_file: Option<PathBuf>,
    /// Region id used in ARNs and `DescribeRegions`.
    #[arg(long)]
    pub region: Option<String>,
    /// Account id used in ARNs.
    #[arg(long)]
    pub account_id: Option<String>,
    /// Write the base URL here (atomically) once listening.
    #[arg(long)]
    pub port_file: Option<PathBuf>,
    /// Enable QPS throttling with the default group limits (kms-api.md §7).
    #[arg(long)]
    pub throttling: bool,
    /// Lifetime in seconds of STS/metadata credentials issued without DurationSeconds.
    #[arg(long)]
    pub sts_duration_secs: Option<i64>,
    /// Refuse metadata requests without an IMDSv2 token.
    #[arg(long)]
    pub imds_require_token: bool,
    /// Serve HTTPS with a certificate generated at start (a fresh CA; the leaf is for
    /// 127.0.0.1, localhost and ::1). Write the CA with --tls-ca-out to trust it.
    #[arg(long, conflicts_with_all = ["tls_cert", "tls_key"])]
    pub tls: bool,
    /// Serve HTTPS with this PEM certificate chain (leaf first); needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// With --tls: write the generated CA certificate (PEM) here before the port file.
    #[arg(long, value_name = "FILE", requires = "tls")]
    pub tls_ca_out: Option<PathBuf>,
    /// Verify AssumeRoleWithOIDC token signatures against this JWKS file
    /// (e.g. `kubectl get --raw /openid/v1/jwks`).
    #[arg(long, value_name = "FILE")]
    pub oidc_jwks: Option<PathBuf>,
}

impl EmulatorArgs {
    pub fn to_config(&self) -> Result<EmulatorConfig, String> {
        let mut cfg = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                serde_norway::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
            }
            None => EmulatorConfig::default(),
        };
        if self.config.is_none() || self.listen.port() != 0 || !self.listen.ip().is_loopback() {
            cfg.listen = self.listen;
        }
        cfg.allow_non_loopback |= self.allow_non_loopback;
        cfg.access_keys.extend(self.access_keys.iter().cloned());
        cfg.seed = self.seed.clone().or(cfg.seed);
        cfg.state_file = self.state_file.clone().or(cfg.state_file);
        if let Some(region) = &self.region {
            cfg.region_id = region.clone();
        }
        if let Some(account) = &self.account_id {
            cfg.semantics.account_id = account.clone();
        }
        cfg.faults.throttling.enabled |= self.throttling;
        if let Some(secs) = self.sts_duration_secs {
            cfg.sts.default_duration_secs = secs;
        }
        cfg.sts.imds_require_token |= self.imds_require_token;
        if self.tls {
            cfg.tls = Some(TlsConfig::Generated {
                ca_out: self.tls_ca_out.clone(),
            });
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            cfg.tls = Some(TlsConfig::Files {
                cert: cert.clone(),
                key: key.clone(),
            });
        }
        if let Some(jwks) = &self.oidc_jwks {
            cfg.sts.oidc_jwks = Some(JwksSource::File(jwks.clone()));
        }
        Ok(cfg)
    }
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

pub async fn run(args: EmulatorArgs) -> ExitCode {
    let config = match args.to_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kmsync emulator: {e}");
            return ExitCode::from(2);
        }
    };
    let running = match Emulator::start(config).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kmsync emulator: {e}");
            return ExitCode::FAILURE;
        }
    };
    let url = running.base_url();
    if let Some(path) = &args.port_file
        && let Err(e) = write_atomic(path, url.as_bytes())
    {
        eprintln!("kmsync emulator: port file {}: {e}", path.display());
        running.shutdown().await;
        return ExitCode::FAILURE;
    }
    println!("kmsync emulator listening on {url}");
    wait_for_signal().await;
    tracing::info!("kms emulator stopping");
    running.shutdown().await;
    ExitCode::SUCCESS
}
