//! Retry policy (capped exponential backoff with jitter, honouring server hints) and a shared
//! retry budget (gRPC-style token bucket) so a throttling storm cannot multiply load.
//!
//! Which errors are retried is decided by [`KmsError::is_retryable`](super::error::KmsError):
//! `Rejected.Throttling`, `ServiceUnavailableTemporary`, `InternalFailure`, transport errors.

use std::sync::Mutex;
use std::time::Duration;

use rand::Rng as _;

/// How many times and how long to wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts including the first (1 disables retries).
    pub max_attempts: u32,
    /// Backoff before retry n is `min(base × 2^(n-1), max_delay)`, with jitter.
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// Server hints (`x-acs-retry-after`, `Retry-After`, `x-ratelimit-*`) are honoured up to this.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    /// The official Alibaba clients' policy: up to 5 retries, `min(2^n s, 10 s)`.
    fn default() -> Self {
        Self {
            max_attempts: 6,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// A single attempt.
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// Delay before retry number `retry` (1-based): "equal jitter" over the capped exponential,
    /// never shorter than the server's hint (itself capped by `max_retry_after`).
    pub fn backoff(&self, retry: u32, hint: Option<Duration>) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32 << retry.saturating_sub(1).min(20))
            .min(self.max_delay);
        let half = exp / 2;
        let jitter = if half.is_zero() {
            Duration::ZERO
        } else {
            Duration::from_nanos(rand::rng().random_range(0..=half.as_nanos() as u64))
        };
        let computed = half + jitter;
        match hint {
            Some(hint) => computed.max(hint.min(self.max_retry_after)),
            None => computed,
        }
    }
}

/// A token bucket shared by all calls of one client (gRPC retry throttling): every retryable
/// failure takes a token, every success gives back `token_ratio`; retries are allowed only while
/// more than half the tokens remain.
#[derive(Debug)]
pub struct RetryBudget {
    max_tokens: f64,
    token_ratio: f64,
    tokens: Mutex<f64>,
}

impl Default for RetryBudget {
    fn default() -> Self {
        Self::new(10.0, 0.1)
    }
}

impl RetryBudget {
    pub fn new(max_tokens: f64, token_ratio: f64) -> Self {
        let max_tokens = max_tokens.max(0.0);
        Self {
            max_tokens,
            token_ratio: token_ratio.max(0.0),
            tokens: Mutex::new(max_tokens),
        }
    }

    fn with_tokens<R>(&self, f: impl FnOnce(&mut f64) -> R) -> R {
        let mut guard = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    pub fn on_success(&self) {
        let (max, ratio) = (self.max_tokens, self.token_ratio);
        self.with_tokens(|t| *t = (*t + ratio).min(max));
    }

    pub fn on_failure(&self) {
        self.with_tokens(|t| *t = (*t - 1.0).max(0.0));
    }

    /// Whether one more retry may be sent now.
    pub fn allows_retry(&self) -> bool {
        let half = self.max_tokens / 2.0;
        self.with_tokens(|t| *t > half)
    }

    pub fn tokens(&self) -> f64 {
        self.with_tokens(|t| *t)
    }
}

/// Parses the retry hints the SDKs read: `x-acs-retry-after` (milliseconds, [INF]),
/// `Retry-After` (seconds), and `x-ratelimit-user-api`/`x-ratelimit-user`
/// (`Limit:1,Remain:0,TimeLeft:2000,Reset:1234`, TimeLeft in ms, used when Remain is 0).
pub fn retry_hint(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(ms) = text("x-acs-retry-after").and_then(|v| v.trim().parse::<u64>().ok()) {
        return Some(Duration::from_millis(ms));
    }
    if let Some(secs) = text("retry-after").and_then(|v| v.trim().parse::<u64>().ok()) {
        return Some(Duration::from_secs(secs));
    }
    ["x-ratelimit-user-api", "x-ratelimit-user"]
        .iter()
        .filter_map(|name| text(name))
        .find_map(parse_ratelimit)
}

fn parse_ratelimit(value: &str) -> Option<Duration> {
    let field = |key: &str| {
        value.split(',').find_map(|part| {
            let (k, v) = part.split_once(':')?;
            (k.trim() == key).then(|| v.trim().parse::<u64>().ok())?
        })
    };
    (field("Remain")? == 0).then(|| Duration::from_millis(field("TimeLeft").unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped_and_jittered() {
        let p = RetryPolicy::default();
        for retry in 1..=10 {
            let d = p.backoff(retry, None);
            let exp = Duration::from_secs(1 << (retry - 1).min(10)).min(p.max_delay);
            assert!(d >= exp / 2 && d <= exp, "retry {retry}: {d:?}");
        }
        assert_eq!(
            p.backoff(1, Some(Duration::from_secs(20))),
            Duration::from_secs(20)
        );
        assert_eq!(
            p.backoff(1, Some(Duration::from_secs(3600))),
            p.max_retry_after
        );
    }

    #[test]
    fn budget_blocks_retries_after_half_the_tokens() {
        let b = RetryBudget::new(4.0, 0.5);
        assert!(b.allows_retry());
        b.on_failure(); // 3
        assert!(b.allows_retry());
        b.on_failure(); // 2 = half
        assert!(!b.allows_retry());
        b.on_success(); // 2.5
        assert!(b.allows_retry());
        for _ in 0..100 {
            b.on_success();
        }
        assert_eq!(b.tokens(), 4.0);
    }

    #[test]
    fn parses_hints() {
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(retry_hint(&h), None);
        h.insert(
            "x-ratelimit-user-api",
            "Limit:1,Remain:0,TimeLeft:2000,Reset:1234".parse().unwrap(),
        );
        assert_eq!(retry_hint(&h), Some(Duration::from_millis(2000)));
        h.insert("retry-after", "3".parse().unwrap());
        assert_eq!(retry_hint(&h), Some(Duration::from_secs(3)));
        h.insert("x-acs-retry-after", "150".parse().unwrap());
        assert_eq!(retry_hint(&h), Some(Duration::from_millis(150)));
        assert_eq!(parse_ratelimit("Limit:5,Remain:3,TimeLeft:10"), None);
    }
}
