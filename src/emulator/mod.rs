//! The local KMS Secrets Manager emulator (plus STS and ECS metadata) used by tests, demos and
//! benchmarks: an HTTP server that the official SDKs cannot tell from the shared gateway.
//!
//! Flow of a call: `api` decodes and authenticates (`auth`), applies `faults`, dispatches to
//! `actions` (the pure `store`) or `sts`, counts it in `metrics` and persists (`persist`).

pub mod actions;
pub mod admin;
pub mod api;
pub mod auth;
pub mod cli;
pub mod config;
pub mod error;
pub mod faults;
pub mod imds;
pub mod metrics;
pub mod oidc;
pub mod params;
pub mod password;
pub mod persist;
pub mod server;
pub mod state;
pub mod store;
pub mod sts;
pub mod tls;

pub use config::{AccessKey, AuthConfig, EmulatorConfig, StsConfig};
pub use faults::{ErrorRule, FaultConfig, GroupLimit, Mutation, MutationRule, ThrottleConfig};
pub use oidc::{JwksSource, OidcKeys};
pub use server::{Emulator, EmulatorError, RunningEmulator};
pub use store::Semantics;
pub use tls::TlsConfig;
