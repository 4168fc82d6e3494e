//! The one error type of the KMS client, with a stable PascalCase `reason()` for conditions,
//! events and metric labels, and the parser for KMS/STS JSON error bodies (kms-api.md §5).
//!
//! `Display` is stable across retries and calls: it never contains the request id (kept in its own
//! field) nor any secret value, so it can go into a Kubernetes condition message without churn.

use std::time::Duration;

/// Longest server message we keep; anything longer is cut.
const MAX_MESSAGE_CHARS: usize = 512;

/// An error answered by the service (KMS, STS or the metadata service), parsed from its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// `Code`, e.g. `Forbidden.ResourceNotFound`; empty when the body had none.
    pub code: String,
    /// `Message`, sanitised (no server string-to-sign, bounded length).
    pub message: String,
    pub http_status: u16,
    pub request_id: Option<String>,
    pub host_id: Option<String>,
    pub recommend: Option<String>,
    /// Server hint for when to retry (`x-acs-retry-after`, `Retry-After`, `x-ratelimit-*`).
    pub retry_after: Option<Duration>,
}

impl ApiError {
    /// Parses an error response. Accepts `Code`/`code`, `Message`/`message`,
    /// `RequestId`/`requestId`, `HostId`, `Recommend`, `HttpStatus`; a non-JSON body yields an
    /// error with an empty code classified by HTTP status (the body itself is not kept).
    pub fn parse(http_status: u16, body: &[u8], header_request_id: Option<&str>) -> Self {
        let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        let field = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| json.get(*n).and_then(|v| v.as_str()))
                .map(str::to_string)
        };
        let code = field(&["Code", "code"]).unwrap_or_default();
        let message = match field(&["Message", "message"]) {
            Some(m) => sanitize_message(&m),
            None if code.is_empty() => format!("HTTP {http_status} without a KMS error body"),
            None => String::new(),
        };
        Self {
            code,
            message,
            http_status,
            request_id: field(&["RequestId", "requestId"])
                .or_else(|| header_request_id.map(str::to_string)),
            host_id: field(&["HostId", "hostId"]),
            recommend: field(&["Recommend", "recommend"]),
            retry_after: None,
        }
    }

    pub fn reason(&self) -> &'static str {
        reason_for(&self.code, self.http_status)
    }

    /// Only these codes are retried (the official Alibaba clients' policy, kms-api.md §5).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.code.as_str(),
            "Rejected.Throttling" | "ServiceUnavailableTemporary" | "InternalFailure"
        )
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let code = if self.code.is_empty() {
            "UnknownError"
        } else {
            &self.code
        };
        write!(f, "{code} (HTTP {})", self.http_status)?;
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

/// Drops the part of a message that may echo request parameters (the classic-RPC
/// `SignatureDoesNotMatch` message includes the server string-to-sign, which covers every parameter,
/// `SecretData` included) and bounds the length.
pub fn sanitize_message(message: &str) -> String {
    let lower = message.to_ascii_lowercase();
    let cut = [
        "server string to sign",
        "string to sign",
        "stringtosign",
        "canonical request",
    ]
    .iter()
    .filter_map(|needle| lower.find(needle))
    .min();
    let kept = match cut {
        Some(idx) => message[..idx]
            .trim_end()
            .trim_end_matches(['.', ':', ','])
            .to_string(),
        None => message.to_string(),
    };
    if kept.chars().count() > MAX_MESSAGE_CHARS {
        kept.chars().take(MAX_MESSAGE_CHARS).collect::<String>() + "…"
    } else {
        kept
    }
}

/// Stable PascalCase reason of a service error code (every code of kms-api.md §5), falling back to
/// the HTTP status for codes we do not know.
pub fn reason_for(code: &str, http_status: u16) -> &'static str {
    match code {
        "Forbidden.ResourceNotFound" | "Forbidden.KeyNotFound" => "NotFound",
        "Forbidden.NoPermission" | "Forbidden.RAM" | "AccessDeniedError" => "AccessDenied",
        "InvalidAccessKeyId.NotFound"
        | "InvalidAccessKeyId"
        | "Forbidden.AccessKey"
        | "SignatureDoesNotMatch"
        | "IncompleteSignature"
        | "InvalidSecurityToken.Expired"
        | "InvalidSecurityToken.MismatchWithAccessKey"
        | "InvalidSecurityToken.Malformed" => "InvalidCredentials",
        "IllegalTimestamp" | "InvalidTimeStamp.Expired" => "ClockSkew",
        "SignatureNonceUsed" => "NonceReused",
        "Forbidden.KmsServiceNotEnabled" => "ServiceNotEnabled",
        "Forbidden.InDebt" | "Forbidden.InDebtOverdue" => "AccountInDebt",
        "InvalidParameter"
        | "MissingParameter"
        | "ParseRequestParameterException"
        | "ValidationError" => "InvalidParameter",
        "InvalidAction.NotFound" | "InvalidVersion" | "UnsupportedHTTPMethod" => {
            "UnsupportedOperation"
        }
        "Rejected.ResourceExist" => "Conflict",
        "Rejected.ResourceInDeleteWindow" => "PendingDeletion",
        "Rejected.Disabled" | "Rejected.PendingDeletion" | "Rejected.Unavailable" => {
            "KeyUnavailable"
        }
        "Rejected.LimitExceeded" => "QuotaExceeded",
        "Rejected.Throttling" | "Throttling" | "Throttling.User" => "Throttled",
        "InternalFailure" | "ServiceUnavailableTemporary" | "SerivceUnavailableTemporary" => {
            "Unavailable"
        }
        "DryRunOperationError" => "DryRunSucceeded",
        _ => match http_status {
            400 => "InvalidParameter",
            401 => "InvalidCredentials",
            403 => "AccessDenied",
            404 => "NotFound",
            409 => "Conflict",
            429 => "Throttled",
            500..=599 => "Unavailable",
            _ => "Unknown",
        },
    }
}

/// Every failure of the KMS client.
#[derive(Debug, Clone, thiserror::Error)]
pub enum KmsError {
    /// The service answered with an error body.
    #[error("{0}")]
    Api(Box<ApiError>),
    /// Connection refused/reset/closed, TLS failure, DNS failure.
    #[error("transport error: {message}")]
    Transport { message: String },
    /// The server's TLS certificate is not trusted (unknown issuer, wrong name, expired). Not
    /// retried: the next attempt would meet the same certificate.
    #[error("TLS certificate not trusted: {message}")]
    Certificate { message: String },
    /// Connect or request timeout.
    #[error("request timed out")]
    Timeout,
    /// Bad client configuration (endpoint, CA bundle, scheme).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A request the client refuses to send (checked before the call).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// A 2xx answer we cannot understand.
    #[error("unexpected response (HTTP {status}): {message}")]
    InvalidResponse { status: u16, message: String },
    /// No credentials could be obtained from a provider.
    #[error("credentials from {provider}: {message}")]
    Credentials {
        provider: &'static str,
        message: String,
        /// True when the credential source could not be reached (network), false when it answered
        /// with a refusal or is not configured.
        unreachable: bool,
    },
}

impl KmsError {
    /// Stable PascalCase reason, for conditions, events and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Api(api) => api.reason(),
            Self::Transport { .. } => "Transport",
            Self::Certificate { .. } => "InvalidCertificate",
            Self::Timeout => "Timeout",
            Self::Config(_) => "InvalidConfiguration",
            Self::InvalidRequest(_) => "InvalidParameter",
            Self::InvalidResponse { .. } => "InvalidResponse",
            Self::Credentials {
                unreachable: true, ..
            } => "CredentialsUnavailable",
            Self::Credentials { .. } => "InvalidCredentials",
        }
    }

    /// The service's code, when the service answered.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api(api) => Some(&api.code),
            _ => None,
        }
    }

    /// The request id, kept out of `Display` on purpose.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            Self::Api(api) => api.request_id.as_deref(),
            _ => None,
        }
    }

    pub fn http_status(&self) -> Option<u16> {
        match self {
            Self::Api(api) => Some(api.http_status),
            Self::InvalidResponse { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether the transport may retry this error (throttling, temporary unavailability,
    /// internal failure, transport errors and timeouts).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Api(api) => api.is_retryable(),
            Self::Transport { .. } | Self::Timeout => true,
            _ => false,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.reason() == "NotFound"
    }

    /// Converts a reqwest error without its URL (the query may carry a security token) into a
    /// stable transport message.
    pub fn from_reqwest(err: reqwest::Error) -> Self {
        if err.is_timeout() {
            return Self::Timeout;
        }
        let err = err.without_url();
        let mut message = err.to_string();
        let mut source = std::error::Error::source(&err);
        let mut depth = 0;
        while let Some(inner) = source {
            if depth >= 4 {
                break;
            }
            let text = inner.to_string();
            if !message.contains(&text) {
                message = format!("{message}: {text}");
            }
            source = inner.source();
            depth += 1;
        }
        let lower = message.to_ascii_lowercase();
        if lower.contains("timed out") {
            return Self::Timeout;
        }
        // rustls: "invalid peer certificate: UnknownIssuer" (or NotValidForName, Expired, …).
        if lower.contains("invalid peer certificate") || lower.contains("certificate verify failed")
        {
            return Self::Certificate { message };
        }
        Self::Transport { message }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_gateway_shape_with_all_fields() {
        let body = br#"{"RequestId":"01A0F19D-9870-5E78-BF8D-F5CE8D550A2B","HostId":"kms.cn-hangzhou.aliyuncs.com",
 "Code":"InvalidAccessKeyId.NotFound","Message":"Specified access key is not found.",
 "Recommend":"https://api.aliyun.com/troubleshoot?q=InvalidAccessKeyId.NotFound&product=Kms&requestId=01A0F19D"}"#;
        let e = ApiError::parse(404, body, None);
        assert_eq!(e.code, "InvalidAccessKeyId.NotFound");
        assert_eq!(e.message, "Specified access key is not found.");
        assert_eq!(
            e.request_id.as_deref(),
            Some("01A0F19D-9870-5E78-BF8D-F5CE8D550A2B")
        );
        assert_eq!(e.host_id.as_deref(), Some("kms.cn-hangzhou.aliyuncs.com"));
        assert!(
            e.recommend
                .as_deref()
                .unwrap()
                .starts_with("https://api.aliyun.com/")
        );
        assert_eq!(e.reason(), "InvalidCredentials");
        let err = KmsError::Api(Box::new(e));
        assert_eq!(
            err.to_string(),
            "InvalidAccessKeyId.NotFound (HTTP 404): Specified access key is not found."
        );
        assert!(!err.to_string().contains("01A0F19D"));
        assert_eq!(
            err.request_id(),
            Some("01A0F19D-9870-5E78-BF8D-F5CE8D550A2B")
        );
    }

    #[test]
    fn parses_kms_doc_shape_with_http_status() {
        let body = br#"{"HttpStatus":429,"Code":"Rejected.Throttling","Message":"QPS Limit Exceeded","RequestId":"r-1"}"#;
        let e = ApiError::parse(429, body, None);
        assert_eq!(e.reason(), "Throttled");
        assert!(e.is_retryable());
        let body = br#"{"HttpStatus":400,"Code":"IllegalTimestamp","Message":"The input parameter \"Timestamp\" is not supplied.","RequestId":"r-2"}"#;
        let e = ApiError::parse(400, body, None);
        assert_eq!(e.reason(), "ClockSkew");
        assert!(!e.is_retryable());
    }

    #[test]
    fn parses_lowercase_shape_and_header_request_id() {
        let e = ApiError::parse(
            403,
            br#"{"code":"Forbidden.NoPermission","message":"denied"}"#,
            Some("hdr-id"),
        );
        assert_eq!(e.code, "Forbidden.NoPermission");
        assert_eq!(e.request_id.as_deref(), Some("hdr-id"));
        assert_eq!(e.reason(), "AccessDenied");
    }

    #[test]
    fn non_json_body_is_classified_by_status_and_not_kept() {
        let e = ApiError::parse(502, b"<html>bad gateway canary</html>", None);
        assert_eq!(e.code, "");
        assert_eq!(e.reason(), "Unavailable");
        assert!(!e.is_retryable());
        assert!(!e.to_string().contains("canary"));
    }

    #[test]
    fn every_documented_code_has_a_reason() {
        let cases = [
            ("InvalidParameter", 400, "InvalidParameter"),
            ("MissingParameter", 400, "InvalidParameter"),
            ("ParseRequestParameterException", 400, "InvalidParameter"),
            ("IncompleteSignature", 400, "InvalidCredentials"),
            ("IllegalTimestamp", 400, "ClockSkew"),
            ("InvalidTimeStamp.Expired", 400, "ClockSkew"),
            ("SignatureNonceUsed", 400, "NonceReused"),
            ("SignatureDoesNotMatch", 400, "InvalidCredentials"),
            ("SignatureDoesNotMatch", 403, "InvalidCredentials"),
            ("InvalidAccessKeyId.NotFound", 404, "InvalidCredentials"),
            ("Forbidden.AccessKey", 403, "InvalidCredentials"),
            ("Forbidden.NoPermission", 403, "AccessDenied"),
            ("Forbidden.KmsServiceNotEnabled", 403, "ServiceNotEnabled"),
            ("Forbidden.InDebt", 403, "AccountInDebt"),
            ("Forbidden.InDebtOverdue", 403, "AccountInDebt"),
            ("UnsupportedHTTPMethod", 403, "UnsupportedOperation"),
            ("Forbidden.ResourceNotFound", 404, "NotFound"),
            ("Forbidden.KeyNotFound", 404, "NotFound"),
            ("Rejected.ResourceExist", 409, "Conflict"),
            ("Rejected.ResourceInDeleteWindow", 409, "PendingDeletion"),
            ("Rejected.LimitExceeded", 400, "QuotaExceeded"),
            ("Rejected.Disabled", 409, "KeyUnavailable"),
            ("Rejected.PendingDeletion", 409, "KeyUnavailable"),
            ("Rejected.Unavailable", 409, "KeyUnavailable"),
            ("Rejected.Throttling", 429, "Throttled"),
            ("Throttling", 400, "Throttled"),
            ("Throttling.User", 400, "Throttled"),
            ("InternalFailure", 500, "Unavailable"),
            ("ServiceUnavailableTemporary", 503, "Unavailable"),
            ("SerivceUnavailableTemporary", 503, "Unavailable"),
            ("InvalidAction.NotFound", 404, "UnsupportedOperation"),
            ("InvalidVersion", 400, "UnsupportedOperation"),
            ("DryRunOperationError", 412, "DryRunSucceeded"),
            ("ValidationError", 400, "InvalidParameter"),
            ("AccessDeniedError", 400, "AccessDenied"),
            ("InvalidSecurityToken.Expired", 400, "InvalidCredentials"),
            (
                "InvalidSecurityToken.MismatchWithAccessKey",
                403,
                "InvalidCredentials",
            ),
            ("InvalidSecurityToken.Malformed", 400, "InvalidCredentials"),
            ("Forbidden.RAM", 403, "AccessDenied"),
            ("Something.New", 404, "NotFound"),
            ("Something.New", 418, "Unknown"),
        ];
        for (code, status, reason) in cases {
            assert_eq!(reason_for(code, status), reason, "{code}");
        }
        let retryable: Vec<_> = cases
            .iter()
            .filter(|(code, status, _)| {
                ApiError::parse(*status, format!(r#"{{"Code":"{code}"}}"#).as_bytes(), None)
                    .is_retryable()
            })
            .map(|(code, _, _)| *code)
            .collect();
        assert_eq!(
            retryable,
            [
                "Rejected.Throttling",
                "InternalFailure",
                "ServiceUnavailableTemporary"
            ]
        );
    }

    #[test]
    fn string_to_sign_is_cut_from_messages() {
        let body = br#"{"Code":"SignatureDoesNotMatch","Message":"Specified signature is not matched with our calculation. server string to sign is:POST&%2F&SecretData%3Dcanary-77"}"#;
        let e = ApiError::parse(400, body, None);
        assert_eq!(
            e.message,
            "Specified signature is not matched with our calculation"
        );
        assert!(!KmsError::Api(Box::new(e)).to_string().contains("canary"));
    }
}
