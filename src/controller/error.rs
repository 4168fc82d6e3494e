//! The controller's one error type. `reason()` is a stable PascalCase word reused by conditions,
//! events and metric labels; `Display` is a human message with names only, never values or
//! request ids, so a condition does not change while the failure stays the same.

use std::time::Duration;

use crate::controller::target::TargetConflict;
use crate::render::RenderError;
use crate::rotation::template::TemplateError;

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
    /// `rotation.generate.template` can never render (unknown placeholder, unclosed `{{`, not
    /// JSON); found before any rotation is due.
    #[error("rotation.generate.template: {0}")]
    InvalidTemplate(#[source] TemplateError),
    /// A rotation back-end (webhook URL, PostgreSQL host) the operator does not allow
    /// (`--allowed-backend-hosts`); found before any connection.
    #[error("{0}")]
    BackendNotAllowed(String),
    /// The apiserver refused the target Secret as rendered (e.g. a `kubernetes.io/tls` type
    /// without `tls.crt`); `fields` lists the refused fields and why, never their values.
    #[error("the apiserver refused Secret {secret}: {fields}")]
    InvalidTarget { secret: String, fields: String },
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
            Self::InvalidTemplate(_) => "InvalidTemplate",
            Self::BackendNotAllowed(_) => "BackendNotAllowed",
            Self::InvalidTarget { .. } => "InvalidTarget",
            Self::Kube(_) => "KubernetesError",
        }
    }

    /// Whether the next attempt should wait for an edit of the spec (or of the target) instead of
    /// a timer. Such objects are still re-checked at their refresh interval.
    pub fn waits_for_edit(&self) -> bool {
        matches!(
            self,
            Self::InvalidSpec(_)
                | Self::Target(_)
                | Self::InvalidTemplate(_)
                | Self::BackendNotAllowed(_)
                | Self::InvalidTarget { .. }
        )
    }

    /// A failed write of the target Secret. A 422 means the apiserver refused its content, which
    /// only an edit can fix: reported as `InvalidTarget` with the field paths and reasons of the
    /// refusal (the causes' messages may quote values, so they are left out).
    pub fn target_write(secret: &str, error: kube::Error) -> Self {
        match error {
            kube::Error::Api(status) if status.code == 422 => {
                let fields: Vec<String> = status
                    .details
                    .iter()
                    .flat_map(|details| &details.causes)
                    .map(|cause| format!("{} ({})", cause.field, cause.reason))
                    .collect();
                Self::InvalidTarget {
                    secret: secret.to_string(),
                    fields: if fields.is_empty() {
                        status.reason.clone()
                    } else {
                        fields.join(", ")
                    },
                }
            }
            other => Self::Kube(other),
        }
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
            Error::InvalidTemplate(TemplateError::Unclosed),
            Error::InvalidTarget {
                secret: "s".into(),
                fields: "data[tls.crt] (FieldValueRequired)".into(),
            },
        ];
        let reasons: Vec<_> = errors.iter().map(Error::reason).collect();
        assert_eq!(
            reasons,
            [
                "InvalidSpec",
                "StoreNotReady",
                "Throttled",
                "PropertyNotFound",
                "TargetConflict",
                "InvalidTemplate",
                "InvalidTarget"
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
        assert!(errors[5].waits_for_edit() && errors[6].waits_for_edit());
    }

    #[test]
    fn a_refused_target_names_fields_and_reasons_but_not_messages() {
        let canary = "canary-value-4411";
        let status = kube::core::Status {
            code: 422,
            reason: "Invalid".into(),
            message: format!("Secret \"app\" is invalid: data[tls.crt]: {canary}"),
            details: Some(kube::core::response::StatusDetails {
                causes: vec![kube::core::response::StatusCause {
                    reason: "FieldValueRequired".into(),
                    message: canary.into(),
                    field: "data[tls.crt]".into(),
                }],
                name: "app".into(),
                group: String::new(),
                kind: "secrets".into(),
                uid: String::new(),
                retry_after_seconds: 0,
            }),
            ..kube::core::Status::failure("", "")
        };
        let error = Error::target_write("app", kube::Error::Api(Box::new(status)));
        assert_eq!(error.reason(), "InvalidTarget");
        assert_eq!(
            error.to_string(),
            "the apiserver refused Secret app: data[tls.crt] (FieldValueRequired)"
        );
        let conflict = kube::core::Status::failure("conflict", "Conflict").with_code(409);
        assert_eq!(
            Error::target_write("app", kube::Error::Api(Box::new(conflict))).reason(),
            "KubernetesError"
        );
    }
}
