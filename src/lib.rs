//! kmsync: a Kubernetes operator that syncs generic secrets from Alibaba Cloud KMS Secrets Manager
//! into Kubernetes Secrets and drives the rotations its custom resources declare.
//!
//! The flow: `crd` defines what users write; `kms` talks to KMS (or the local `emulator`); the
//! controller observes, fetches, renders and applies.
#![forbid(unsafe_code)]

pub mod admin;
pub mod controller;
pub mod crd;
pub mod emulator;
#[doc(hidden)]
pub mod fuzzing;
pub mod kms;
pub mod lease;
pub mod metrics;
pub mod plugin;
pub mod render;
pub mod rotation;
pub mod telemetry;
