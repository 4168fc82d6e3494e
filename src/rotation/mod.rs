//! Rotation driven by `spec.rotation`: kmsync produces new versions of the KMS secret, the single-
//! call way (`Immediate`) or the staged multi-call way (`Staged`: put pending → register → verify
//! → promote → clean). The planner is pure; the driver performs one step at a time and records it
//! in status, so a crash resumes from what KMS and status say.

pub mod driver;
pub mod plan;
pub mod postgres;
pub mod postgres_register;
pub mod schedule;
pub mod secret_ref;
pub mod spec_check;
pub mod template;
pub mod webhook;
pub mod webhook_signature;

/// A rotation step that did not succeed. Messages never contain values.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{step}: {message}")]
pub struct StepError {
    /// `put`, `register`, `verify`, `promote`, …
    pub step: &'static str,
    /// PascalCase reason.
    pub reason: &'static str,
    pub message: String,
    /// Worth retrying the same step later (the attempt goes on); otherwise the attempt fails.
    pub transient: bool,
}

impl StepError {
    pub fn transient(step: &'static str, reason: &'static str, message: String) -> Self {
        Self {
            step,
            reason,
            message,
            transient: true,
        }
    }

    pub fn permanent(step: &'static str, reason: &'static str, message: String) -> Self {
        Self {
            step,
            reason,
            message,
            transient: false,
        }
    }

    /// A KMS failure during `step`.
    pub fn from_source(step: &'static str, error: crate::controller::error::SourceError) -> Self {
        Self {
            step,
            reason: error.reason,
            message: error.message,
            transient: error.transient,
        }
    }
}
