//! The local KMS Secrets Manager emulator (plus STS and ECS metadata) used by tests, demos and
//! benchmarks: an HTTP server that the official SDKs cannot tell from the shared gateway.

pub mod actions;
pub mod auth;
pub mod config;
pub mod error;
pub mod faults;
pub mod params;
pub mod password;
pub mod store;
pub mod sts;
