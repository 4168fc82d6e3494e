//! Shared run-time state of one emulator: store, keyring, faults, metrics, metadata tokens and
//! the store clock offset (admin-adjustable, for deletion-window tests).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use jiff::{SignedDuration, Timestamp};

use super::auth::Keyring;
use super::config::EmulatorConfig;
use super::faults::Faults;
use super::metrics::Metrics;
use super::oidc::OidcKeys;
use super::persist;
use super::store::Store;

#[derive(Debug)]
pub struct AppState {
    pub config: EmulatorConfig,
    pub store: Mutex<Store>,
    pub keyring: Mutex<Keyring>,
    pub faults: Mutex<Faults>,
    pub metrics: Metrics,
    /// Keys OIDC token signatures are verified against (`sts.oidcJwks`), loaded at start.
    pub oidc_keys: Option<OidcKeys>,
    /// IMDSv2 tokens and their expiry.
    pub imds_tokens: Mutex<HashMap<String, Timestamp>>,
    clock_offset_secs: AtomicI64,
}

/// Locks a mutex, recovering from poisoning (the data stays consistent per call).
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl AppState {
    pub fn new(config: EmulatorConfig, store: Store) -> Self {
        Self {
            keyring: Mutex::new(Keyring::new(&config.access_keys)),
            faults: Mutex::new(Faults::new(config.faults.clone())),
            store: Mutex::new(store),
            metrics: Metrics::default(),
            oidc_keys: None,
            imds_tokens: Mutex::new(HashMap::new()),
            clock_offset_secs: AtomicI64::new(0),
            config,
        }
    }

    pub fn with_oidc_keys(mut self, keys: Option<OidcKeys>) -> Self {
        self.oidc_keys = keys;
        self
    }

    /// The store's notion of now: real time plus the admin clock offset.
    pub fn store_now(&self) -> Timestamp {
        let offset = self.clock_offset_secs.load(Ordering::Relaxed);
        Timestamp::now() + SignedDuration::from_secs(offset)
    }

    pub fn clock_offset(&self) -> i64 {
        self.clock_offset_secs.load(Ordering::Relaxed)
    }

    pub fn set_clock_offset(&self, secs: i64) {
        self.clock_offset_secs.store(secs, Ordering::Relaxed);
    }

    /// Ends every issued credential now (see [`Keyring::expire_issued`]); returns how many.
    pub fn expire_issued_credentials(&self) -> usize {
        let ended = lock(&self.keyring).expire_issued(Timestamp::now());
        tracing::info!(ended, "emulator: issued credentials expired");
        ended
    }

    /// Writes the state file, if configured.
    pub fn persist(&self, store: &Store) {
        if let Some(path) = &self.config.state_file
            && let Err(e) = persist::save_state(path, store)
        {
            tracing::error!(path = %path.display(), error = %e, "cannot write emulator state file");
        }
    }

    pub fn flush(&self) {
        let store = lock(&self.store);
        self.persist(&store);
    }
}
