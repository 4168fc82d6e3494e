//! The sync controller: observe → fetch → render → apply → status. This module holds its pure
//! decisions; the Kubernetes wiring arrives with the reconcile loop.

pub mod error;
pub mod fetch;
pub mod reconcile;
pub mod schedule;
pub mod source;
pub mod stores;
pub mod target;
