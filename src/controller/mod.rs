//! The sync controller: observe → fetch → render → apply → status. This module holds its pure
//! decisions; the Kubernetes wiring arrives with the reconcile loop.

pub mod endpoint_policy;
pub mod error;
pub mod fetch;
pub mod identity;
pub mod kms_source;
pub mod managed_fields;
pub mod rate_limit;
pub mod reconcile;
pub mod rollout;
pub mod run;
pub mod schedule;
pub mod source;
pub mod store_check;
pub mod stores;
pub mod target;
pub mod watch_backoff;
