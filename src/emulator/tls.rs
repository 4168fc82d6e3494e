//! Optional TLS for the emulator: a certificate generated at start (a fresh CA plus a leaf for
//! `127.0.0.1`, `localhost` and `::1`) or one given as PEM files, served with rustls on the
//! ring provider. [`TlsListener`] plugs into `axum::serve`, so graceful shutdown and the
//! peer address (the admin paths' loopback rule) work exactly as over plain HTTP.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How the emulator gets its server certificate. YAML: `tls: {mode: generated, caOut: FILE}` or
/// `tls: {mode: files, cert: FILE, key: FILE}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "mode",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum TlsConfig {
    /// A fresh CA and a leaf for `127.0.0.1`, `localhost` and `::1`, made at every start. The CA
    /// certificate (PEM) is written to `ca_out` when given and is `RunningEmulator::ca_pem()`.
    Generated {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ca_out: Option<PathBuf>,
    },
    /// A PEM certificate chain (leaf first) and its PEM private key (PKCS#8, PKCS#1 or SEC1).
    Files { cert: PathBuf, key: PathBuf },
}

/// A server identity ready for rustls, plus the CA that clients should trust (generated mode).
#[derive(Debug)]
pub struct ServerIdentity {
    pub config: Arc<rustls::ServerConfig>,
    /// PEM of the generated CA; `None` for given files.
    pub ca_pem: Option<String>,
}

/// SANs of the generated leaf certificate.
pub const GENERATED_NAMES: [&str; 3] = ["127.0.0.1", "localhost", "::1"];

/// A CA and a leaf certificate signed by it, both ECDSA P-256, as PEM: `(ca, leaf, leaf_key)`.
pub fn generate_ca_and_leaf(names: &[&str]) -> Result<(String, String, String), String> {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose,
    };
    let err = |e: rcgen::Error| format!("cannot generate TLS certificate: {e}");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "kmsync emulator CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca =
        CertifiedIssuer::self_signed(ca_params, KeyPair::generate().map_err(err)?).map_err(err)?;

    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut leaf_params = CertificateParams::new(names).map_err(err)?;
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "kmsync emulator");
    leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_key = KeyPair::generate().map_err(err)?;
    let leaf = leaf_params.signed_by(&leaf_key, &ca).map_err(err)?;
    Ok((ca.pem(), leaf.pem(), leaf_key.serialize_pem()))
}

fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<rustls::ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("TLS certificate/key: {e}"))?;
    // axum::serve speaks HTTP/1.1 here (the http2 feature is off).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn parse_chain(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{what}: {e}"))?;
    if chain.is_empty() {
        return Err(format!("{what}: no CERTIFICATE in PEM"));
    }
    Ok(chain)
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Builds the server identity; in generated mode also writes the CA to `ca_out`.
pub fn load(config: &TlsConfig) -> Result<ServerIdentity, String> {
    match config {
        TlsConfig::Generated { ca_out } => {
            let (ca, leaf, key) = generate_ca_and_leaf(&GENERATED_NAMES)?;
            let chain = parse_chain(leaf.as_bytes(), "generated certificate")?;
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes())
                .map_err(|e| format!("generated key: {e}"))?;
            if let Some(path) = ca_out {
                super::persist::write_atomic(path, ca.as_bytes())
                    .map_err(|e| format!("--tls-ca-out {}: {e}", path.display()))?;
            }
            Ok(ServerIdentity {
                config: server_config(chain, key)?,
                ca_pem: Some(ca),
            })
        }
        TlsConfig::Files { cert, key } => {
            let chain = parse_chain(&read(cert)?, &cert.display().to_string())?;
            // The key text is never echoed: only the file name and the parser's error kind.
            let key = PrivateKeyDer::from_pem_slice(&read(key)?)
                .map_err(|e| format!("{}: no usable private key ({e})", key.display()))?;
            Ok(ServerIdentity {
                config: server_config(chain, key)?,
                ca_pem: None,
            })
        }
    }
}

/// How long a client may take to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; further TCP connections wait in the kernel backlog.
const MAX_HANDSHAKES: usize = 256;

/// A TLS listener for `axum::serve`. Each TCP connection's handshake runs in its own task (a
/// slow client never blocks the others); `accept` hands out finished handshakes. The TCP
/// listener and the pending handshakes are owned here, so dropping the listener (as graceful
/// shutdown does) closes the port at once and aborts every unfinished handshake.
pub struct TlsListener {
    tcp: TcpListener,
    tls: TlsAcceptor,
    handshakes: JoinSet<Option<(TlsStream<TcpStream>, SocketAddr)>>,
}

impl std::fmt::Debug for TlsListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsListener")
            .field("local", &self.tcp.local_addr().ok())
            .field("handshakes", &self.handshakes.len())
            .finish()
    }
}

impl TlsListener {
    pub fn new(tcp: TcpListener, config: Arc<rustls::ServerConfig>) -> Self {
        Self {
            tcp,
            tls: TlsAcceptor::from(config),
            handshakes: JoinSet::new(),
        }
    }

    fn start_handshake(&mut self, stream: TcpStream, peer: SocketAddr) {
        let _ = stream.set_nodelay(true);
        let tls = self.tls.clone();
        self.handshakes.spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(stream)).await {
                Ok(Ok(stream)) => Some((stream, peer)),
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    None
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    None
                }
            }
        });
    }
}

/// Per-connection errors are ignored; others (e.g. too many open files) are logged and the
/// listener pauses briefly, like axum's own TCP listener.
async fn accept_error(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "emulator accept error");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    /// Cancel-safe (both `TcpListener::accept` and `JoinSet::join_next` are).
    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let room = self.handshakes.len() < MAX_HANDSHAKES;
            tokio::select! {
                Some(done) = self.handshakes.join_next(), if !self.handshakes.is_empty() => {
                    if let Ok(Some(pair)) = done {
                        return pair;
                    }
                }
                accepted = self.tcp.accept(), if room => match accepted {
                    Ok((stream, peer)) => self.start_handshake(stream, peer),
                    Err(e) => accept_error(e).await,
                },
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_identity_has_a_ca_and_loads() {
        let id = load(&TlsConfig::Generated { ca_out: None }).unwrap();
        let ca = id.ca_pem.unwrap();
        assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"));
        assert_eq!(id.config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }

    #[test]
    fn yaml_forms() {
        let g: TlsConfig = serde_norway::from_str("mode: generated\ncaOut: /tmp/ca.pem\n").unwrap();
        assert_eq!(
            g,
            TlsConfig::Generated {
                ca_out: Some("/tmp/ca.pem".into())
            }
        );
        let f: TlsConfig =
            serde_norway::from_str("mode: files\ncert: c.pem\nkey: k.pem\n").unwrap();
        assert_eq!(
            f,
            TlsConfig::Files {
                cert: "c.pem".into(),
                key: "k.pem".into()
            }
        );
    }

    #[test]
    fn bad_files_are_refused_without_echoing_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&cert, "not a cert").unwrap();
        std::fs::write(&key, "super-secret-key-material").unwrap();
        let err = load(&TlsConfig::Files {
            cert: cert.clone(),
            key: key.clone(),
        })
        .unwrap_err();
        assert!(err.contains("no CERTIFICATE"), "{err}");
        let (_, leaf, _) = generate_ca_and_leaf(&["localhost"]).unwrap();
        std::fs::write(&cert, leaf).unwrap();
        let err = load(&TlsConfig::Files { cert, key }).unwrap_err();
        assert!(!err.contains("super-secret"), "{err}");
    }
}
