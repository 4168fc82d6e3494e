//! Which KMS endpoints a store may point the operator at. A store's `endpoint` is written by a
//! tenant, and the operator sends signed requests wherever it points; the operator's allow-list
//! keeps those requests on Alibaba Cloud (and loopback, for the emulator sidecar) by default.

use crate::kms::endpoint::is_loopback_host;

/// The default of `--allowed-endpoint-hosts`.
pub const DEFAULT_ALLOWED_HOSTS: &str = "*.aliyuncs.com,loopback";

/// One allowed host pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Pattern {
    /// `*`: every host (an explicit opt-out).
    Any,
    /// `loopback`: localhost, 127.0.0.0/8 and ::1.
    Loopback,
    /// `*.example.com`: any host below `example.com` (not the apex itself).
    Below(String),
    Exact(String),
}

/// The parsed `--allowed-endpoint-hosts`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointPolicy {
    patterns: Vec<Pattern>,
}

impl Default for EndpointPolicy {
    fn default() -> Self {
        Self::parse(DEFAULT_ALLOWED_HOSTS).expect("the default parses")
    }
}

impl EndpointPolicy {
    /// Parses a comma-separated list of `*`, `loopback`, `*.domain` or exact host names.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut patterns = Vec::new();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let item = item.to_ascii_lowercase();
            let pattern = if item == "*" {
                Pattern::Any
            } else if item == "loopback" {
                Pattern::Loopback
            } else if let Some(domain) = item.strip_prefix("*.") {
                Pattern::Below(format!(".{}", valid_host(domain)?))
            } else {
                Pattern::Exact(valid_host(&item)?.to_string())
            };
            patterns.push(pattern);
        }
        if patterns.is_empty() {
            return Err("the list of allowed endpoint hosts is empty".into());
        }
        Ok(Self { patterns })
    }

    /// Whether requests may go to `host` (as `url::Url::host_str` prints it).
    pub fn allows(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        let host = host.trim_end_matches('.');
        self.patterns.iter().any(|pattern| match pattern {
            Pattern::Any => true,
            Pattern::Loopback => is_loopback_host(host),
            Pattern::Below(suffix) => host.ends_with(suffix.as_str()) && host.len() > suffix.len(),
            Pattern::Exact(exact) => host == exact.as_str(),
        })
    }
}

fn valid_host(host: &str) -> Result<&str, String> {
    let ok = !host.is_empty()
        && host.len() <= 253
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    if ok {
        Ok(host)
    } else {
        Err(format!("{host:?} is not a host name or pattern"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_allows_alibaba_cloud_and_loopback_only() {
        let policy = EndpointPolicy::default();
        for host in [
            "kms.cn-hangzhou.aliyuncs.com",
            "kms-vpc.cn-shanghai.aliyuncs.com",
            "kst-hzz1234.cryptoservice.kms.aliyuncs.com",
            "KMS.CN-HANGZHOU.ALIYUNCS.COM",
            "127.0.0.1",
            "127.3.4.5",
            "[::1]",
            "localhost",
        ] {
            assert!(policy.allows(host), "{host}");
        }
        for host in [
            "aliyuncs.com",
            "kms.cn-hangzhou.aliyuncs.com.evil.example",
            "evilaliyuncs.com",
            "10.0.0.1",
            "169.254.169.254",
            "100.100.100.200",
            "example.com",
            "[::2]",
        ] {
            assert!(!policy.allows(host), "{host}");
        }
    }

    #[test]
    fn exact_wildcard_and_any() {
        let policy = EndpointPolicy::parse(" kms.internal.example , *.corp.example").unwrap();
        assert!(policy.allows("kms.internal.example"));
        assert!(policy.allows("a.b.corp.example"));
        assert!(!policy.allows("corp.example"));
        assert!(!policy.allows("127.0.0.1"), "loopback only when listed");
        assert!(
            EndpointPolicy::parse("*")
                .unwrap()
                .allows("anything.example")
        );
    }

    #[test]
    fn bad_lists_are_refused() {
        assert!(EndpointPolicy::parse("").is_err());
        assert!(EndpointPolicy::parse(" , ").is_err());
        assert!(EndpointPolicy::parse("kms/evil").is_err());
        assert!(EndpointPolicy::parse("*.").is_err());
    }
}
