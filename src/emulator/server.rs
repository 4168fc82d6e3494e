//! Starting and stopping an emulator: load state or seed, bind (loopback unless allowed),
//! serve KMS/STS (`/`), metadata (`/latest/`) and admin (`/admin/`) on one listener, over plain
//! HTTP or TLS (`tls`), and flush the state file on shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::serve::ListenerExt as _;
use jiff::Timestamp;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::config::EmulatorConfig;
use super::faults::FaultConfig;
use super::oidc::OidcKeys;
use super::state::{AppState, lock};
use super::store::Store;
use super::tls::TlsListener;
use super::{admin, api, imds, persist, tls};

/// Why an emulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error("refusing to listen on non-loopback address {0} without allow_non_loopback")]
    NonLoopback(SocketAddr),
    #[error("cannot bind {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    #[error("{0}")]
    State(String),
    /// TLS certificate/key or OIDC JWKS unusable.
    #[error("{0}")]
    Config(String),
}

/// Entry point: `Emulator::start(config).await`.
#[derive(Debug)]
pub struct Emulator;

/// A running emulator; stop it with `shutdown().await` (dropping it also stops it).
#[derive(Debug)]
pub struct RunningEmulator {
    addr: SocketAddr,
    https: bool,
    ca_pem: Option<String>,
    state: Arc<AppState>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

fn initial_store(config: &EmulatorConfig) -> Result<Store, EmulatorError> {
    if let Some(path) = &config.state_file
        && let Some(store) =
            persist::load_state(path, &config.semantics).map_err(EmulatorError::State)?
    {
        return Ok(store);
    }
    let mut store = Store::new(&config.region_id, config.semantics.clone());
    if let Some(seed) = &config.seed {
        let yaml = std::fs::read_to_string(seed)
            .map_err(|e| EmulatorError::State(format!("seed {}: {e}", seed.display())))?;
        persist::apply_seed(&mut store, &yaml, Timestamp::now()).map_err(EmulatorError::State)?;
    }
    Ok(store)
}

fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .fallback(api::handle)
        .with_state(state.clone())
        .nest("/admin", admin::router(state.clone()))
        .merge(imds::router(state))
}

impl Emulator {
    pub async fn start(config: EmulatorConfig) -> Result<RunningEmulator, EmulatorError> {
        if !config.listen.ip().is_loopback() && !config.allow_non_loopback {
            return Err(EmulatorError::NonLoopback(config.listen));
        }
        let oidc_keys = match &config.sts.oidc_jwks {
            Some(source) => Some(OidcKeys::load(source).map_err(EmulatorError::Config)?),
            None => None,
        };
        let identity = match &config.tls {
            Some(tls_config) => Some(tls::load(tls_config).map_err(EmulatorError::Config)?),
            None => None,
        };
        let store = initial_store(&config)?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| EmulatorError::Bind(config.listen, e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| EmulatorError::Bind(config.listen, e))?;
        let state = Arc::new(AppState::new(config, store).with_oidc_keys(oidc_keys));
        state.flush();
        let app = router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async {
            let _ = stopped.await;
        };
        let https = identity.is_some();
        let ca_pem = identity.as_ref().and_then(|id| id.ca_pem.clone());
        let task = match identity {
            None => tokio::spawn(async move {
                let serve = axum::serve(listener, app).with_graceful_shutdown(shutdown);
                if let Err(e) = serve.await {
                    tracing::error!(error = %e, "emulator server failed");
                }
            }),
            Some(identity) => {
                // `tap_io` (a no-op here) gives the TLS listener axum's generic `ConnectInfo`
                // of the peer address, which the admin paths' loopback rule needs.
                let listener = TlsListener::new(listener, identity.config).tap_io(|_| {});
                tokio::spawn(async move {
                    let serve = axum::serve(listener, app).with_graceful_shutdown(shutdown);
                    if let Err(e) = serve.await {
                        tracing::error!(error = %e, "emulator server failed");
                    }
                })
            }
        };
        tracing::info!(%addr, tls = https, "kms emulator started");
        Ok(RunningEmulator {
            addr,
            https,
            ca_pem,
            state,
            stop: Some(stop),
            task: Some(task),
        })
    }
}

impl RunningEmulator {
    /// `http://127.0.0.1:PORT`, or `https://127.0.0.1:PORT` with TLS.
    pub fn base_url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Whether the emulator serves HTTPS.
    pub fn is_tls(&self) -> bool {
        self.https
    }

    /// PEM of the CA that signed a generated TLS certificate (trust it, and only it, to reach
    /// this emulator); `None` over plain HTTP or with a given certificate.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Replaces the fault settings (same as `PUT /admin/faults`).
    pub fn set_faults(&self, faults: FaultConfig) {
        lock(&self.state.faults).replace(faults);
    }

    /// Ends every credential issued so far (same as `POST /admin/expire-credentials`): holders
    /// get `InvalidSecurityToken.Expired` and must fetch new ones. Returns how many were ended.
    pub fn expire_issued_credentials(&self) -> usize {
        self.state.expire_issued_credentials()
    }

    /// The versions of secret `name` in creation order, read directly (no authentication, no
    /// faults, not counted), for tests that check what a client wrote; `None` when it does not
    /// exist.
    pub fn versions(&self, name: &str) -> Option<Vec<super::store::Version>> {
        lock(&self.state.store)
            .secrets
            .get(name)
            .map(|secret| secret.versions.clone())
    }

    /// Requests for secret `name` (`-` for calls without one, like STS) and `action` received so
    /// far, counted on arrival: also those still waiting in injected latency or abandoned.
    pub fn received(&self, name: &str, action: &str) -> u64 {
        self.state.metrics.received(name, action)
    }

    /// Call counts, the `GET /admin/calls` JSON.
    pub fn calls(&self) -> serde_json::Value {
        self.state.metrics.calls_json()
    }

    /// Stops accepting, lets in-flight calls finish (at most 5 s), flushes the state file.
    pub async fn shutdown(mut self) {
        self.stop_now().await;
    }

    async fn stop_now(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take()
            && tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
        {
            tracing::warn!("emulator did not stop within 5 s");
        }
        self.state.flush();
    }
}

impl Drop for RunningEmulator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if self.task.is_some() {
            self.state.flush();
        }
    }
}
