//! Emulator configuration: listener, credentials, region, seed/state files, [INF] semantics,
//! signature checks, STS/metadata settings and faults. Loadable from YAML (`--config`).

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::faults::FaultConfig;
use super::oidc::JwksSource;
use super::store::Semantics;
use super::tls::TlsConfig;

/// One AccessKey pair, optionally with an STS token (then the token must accompany each call).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessKey {
    pub id: String,
    pub secret: String,
    #[serde(default)]
    pub security_token: Option<String>,
}

impl fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessKey")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .field(
                "security_token",
                &self.security_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl AccessKey {
    /// `ID:SECRET` or `ID:SECRET:TOKEN`.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut parts = spec.splitn(3, ':');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(id), Some(secret), token) if !id.is_empty() && !secret.is_empty() => Ok(Self {
                id: id.to_string(),
                secret: secret.to_string(),
                security_token: token.filter(|t| !t.is_empty()).map(str::to_string),
            }),
            _ => Err(format!(
                "expected ID:SECRET[:TOKEN], got {:?}",
                spec.split(':').next()
            )),
        }
    }
}

/// How requests are authenticated (kms-api.md §2.4, §9.6).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct AuthConfig {
    /// Allowed distance between the request timestamp and server time.
    pub max_skew_secs: i64,
    /// HTTP status of `SignatureDoesNotMatch` (live gateway: 400; old doc table: 403).
    pub signature_mismatch_status: u16,
    /// Headers every V3 request must sign.
    pub required_v3_headers: Vec<String>,
    pub check_nonce: bool,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            max_skew_secs: 900,
            signature_mismatch_status: 400,
            required_v3_headers: [
                "host",
                "x-acs-date",
                "x-acs-signature-nonce",
                "x-acs-content-sha256",
                "x-acs-action",
                "x-acs-version",
            ]
            .map(String::from)
            .to_vec(),
            check_nonce: true,
        }
    }
}

/// STS (AssumeRole, AssumeRoleWithOIDC) and ECS metadata settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct StsConfig {
    /// Lifetime of issued credentials when the caller gives no DurationSeconds.
    pub default_duration_secs: i64,
    /// Largest DurationSeconds accepted (the role's MaxSessionDuration).
    pub max_duration_secs: i64,
    /// Audience an OIDC token must carry.
    pub oidc_audience: String,
    /// Role name served by the metadata service.
    pub imds_role: String,
    /// Refuse metadata GETs without an IMDSv2 token.
    pub imds_require_token: bool,
    /// When set, AssumeRoleWithOIDC also verifies the token's signature against this JWKS
    /// (a file path, or the key set inline); without it only shape, audience and expiry count.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oidc_jwks: Option<JwksSource>,
}

impl Default for StsConfig {
    fn default() -> Self {
        Self {
            default_duration_secs: 3600,
            max_duration_secs: 43200,
            oidc_audience: "sts.aliyuncs.com".to_string(),
            imds_role: "kmsync-emulator-role".to_string(),
            imds_require_token: false,
            oidc_jwks: None,
        }
    }
}

/// Everything `Emulator::start` needs. `Default` is a loopback emulator on a random port.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct EmulatorConfig {
    pub listen: SocketAddr,
    /// Binding a non-loopback address needs this (the admin paths stay loopback-only).
    pub allow_non_loopback: bool,
    /// Serve HTTPS instead of plain HTTP (the default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
    pub access_keys: Vec<AccessKey>,
    pub region_id: String,
    /// YAML seed loaded when no state file exists yet.
    pub seed: Option<PathBuf>,
    /// JSON state persisted after every change (temp file + rename).
    pub state_file: Option<PathBuf>,
    pub semantics: Semantics,
    pub auth: AuthConfig,
    pub sts: StsConfig,
    pub faults: FaultConfig,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            allow_non_loopback: false,
            tls: None,
            access_keys: Vec::new(),
            region_id: "cn-hangzhou".to_string(),
            seed: None,
            state_file: None,
            semantics: Semantics::default(),
            auth: AuthConfig::default(),
            sts: StsConfig::default(),
            faults: FaultConfig::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_key_specs() {
        let k = AccessKey::parse("id:sec").unwrap();
        assert_eq!((k.id.as_str(), k.security_token), ("id", None));
        let k = AccessKey::parse("STS.id:s3cr3t:tok:en").unwrap();
        assert_eq!(k.security_token.as_deref(), Some("tok:en"));
        assert!(AccessKey::parse("nosecret").is_err());
        assert!(!format!("{k:?}").contains("s3cr3t"));
    }

    #[test]
    fn yaml_config_fills_defaults() {
        let cfg: EmulatorConfig =
            serde_norway::from_str("regionId: eu-central-1\nsemantics: {maxVersions: 3}\n")
                .unwrap();
        assert_eq!(cfg.region_id, "eu-central-1");
        assert_eq!(cfg.semantics.max_versions, 3);
        assert_eq!(cfg.semantics.max_stages, 8);
        assert!(cfg.listen.ip().is_loopback());
    }
}
