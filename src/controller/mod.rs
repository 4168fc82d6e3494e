//! The sync controller: observe → fetch → render → apply → status. This module holds its pure
//! decisions; the Kubernetes wiring arrives with the reconcile loop.

pub mod error;
pub mod fetch;
pub mod schedule;
pub mod target;
