//! The controller's one error type. `reason()` is a stable PascalCase word reused by conditions,
//! events and metric labels; `Display` is a human message with names only, never values or
//! request ids, so a condition does not change while the failure stays the same.

use std::time::Duration;

use crate::controller::target::TargetConflict;
use crate::render::RenderError;

/// A failed read from KMS, already classified by the client adapter.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SourceError {
    /// PascalCase: `SecretNotFound`, `VersionNotFound`, `AccessDenied`, `InvalidCredentials`,
    /// `Throttled`, `KmsUnavailable`, `InvalidParameter`, …
    pub reason: &'static str,
    pub message: String,
    /// Worth retrying soon (throttling, outages) rather than waiting for an edit.
    pub transient: bool,
    /// A server hint for when to retry.
    pub retry_after: Option<Duration>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec cannot work as written; retrying without an edit is pointless.
    #[error("{0}")]
    InvalidSpec(String),
    /// The referenced store is missing, not ready, or not usable from here.
    #[error("{message}")]
    Store {
        reason: &'static str,
        message: String,
    },
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error(transparent)]
    Target(#[from] TargetConflict),
    #[error("Kubernetes API: {0}")]
    Kube(#[source] kube::Error),
}

impl From<kube::Error> for Error {
    fn from(error: kube::Error) -> Self {
        Self::Kube(error)
    }
}

impl Error {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::InvalidSpec(_) => "InvalidSpec",
            Self::Store { reason, .. } => reason,
            Self::Source(e) => e.reason,
            Self::Render(e) => e.reason(),
            Self::Target(_) => "TargetConflict",
            Self::Kube(_) => "KubernetesError",
        }
    }

    /// Whether the next attempt should wait for an edit of the spec (or of the target) instead of
    /// a timer. Such objects are still re-checked at their refresh interval.
    pub fn waits_for_edit(&self) -> bool {
        matches!(self, Self::InvalidSpec(_) | Self::Target(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_stable_pascal_case() {
        let errors = [
            Error::InvalidSpec("x".into()),
            Error::Store {
                reason: "StoreNotReady",
                message: "m".into(),
            },
            Error::Source(SourceError {
                reason: "Throttled",
                message: "m".into(),
                transient: true,
                retry_after: None,
            }),
            Error::Render(RenderError::PropertyNotFound {
                key: "k".into(),
                property: "p".into(),
                version_id: "v".into(),
            }),
            Error::Target(TargetConflict::Foreign("s".into())),
        ];
        let reasons: Vec<_> = errors.iter().map(Error::reason).collect();
        assert_eq!(
            reasons,
            [
                "InvalidSpec",
                "StoreNotReady",
                "Throttled",
                "PropertyNotFound",
                "TargetConflict"
            ]
        );
        for reason in reasons {
            assert!(reason.chars().next().unwrap().is_ascii_uppercase());
            assert!(
                reason.chars().all(|c| c.is_ascii_alphanumeric()),
                "{reason}"
            );
        }
        assert!(
            errors[0].waits_for_edit() && errors[4].waits_for_edit() && !errors[2].waits_for_edit()
        );
    }
}
