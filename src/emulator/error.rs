//! The KMS error type of the emulator: a stable `Code`, its HTTP status and a message, exactly
//! as the shared gateway reports them (kms-api.md §5).

use std::fmt;

/// One API error. `code` is what clients match on; `status` is the HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsError {
    pub code: String,
    pub status: u16,
    pub message: String,
}

impl fmt::Display for KmsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.status, self.message)
    }
}

impl std::error::Error for KmsError {}

impl KmsError {
    pub fn new(code: &str, status: u16, message: impl Into<String>) -> Self {
        Self {
            code: code.to_string(),
            status,
            message: message.into(),
        }
    }

    pub fn invalid(param: &str) -> Self {
        Self::new(
            "InvalidParameter",
            400,
            format!("The specified parameter \"{param}\" is not valid."),
        )
    }

    pub fn invalid_msg(message: impl Into<String>) -> Self {
        Self::new("InvalidParameter", 400, message)
    }

    pub fn missing(param: &str) -> Self {
        Self::new(
            "MissingParameter",
            400,
            format!("The parameter \"{param}\" is needed but not provided."),
        )
    }

    pub fn not_found() -> Self {
        Self::new(
            "Forbidden.ResourceNotFound",
            404,
            "The resource is not found.",
        )
    }

    pub fn exists() -> Self {
        Self::new(
            "Rejected.ResourceExist",
            409,
            "The resource already exists.",
        )
    }

    pub fn in_delete_window() -> Self {
        Self::new(
            "Rejected.ResourceInDeleteWindow",
            409,
            "The secret is planned to be deleted.",
        )
    }

    pub fn limit_exceeded() -> Self {
        Self::new(
            "Rejected.LimitExceeded",
            400,
            "The secret quota is exceeded.",
        )
    }

    pub fn throttling() -> Self {
        Self::new("Rejected.Throttling", 429, "QPS Limit Exceeded")
    }

    pub fn internal() -> Self {
        Self::new("InternalFailure", 500, "Internal Failure.")
    }
}
