//! Which hosts a tenant may point the operator at. A store's `endpoint` and a rotation's webhook
//! `url` or PostgreSQL `host` are written by tenants, and the operator connects wherever they
//! point; its allow-lists keep KMS requests on Alibaba Cloud (and loopback, for the emulator
//! sidecar) and rotation back-ends in the cluster (`*.svc`) by default: no SSRF from inside.

use crate::kms::endpoint::is_loopback_host;

/// The default of `--allowed-endpoint-hosts`.
pub const DEFAULT_ALLOWED_HOSTS: &str = "*.aliyuncs.com,loopback";
/// The default of `--allowed-backend-hosts`: in-cluster Services, and loopback.
pub const DEFAULT_BACKEND_HOSTS: &str = "loopback,*.svc,*.svc.cluster.local";

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

    /// Whether a rotation back-end (webhook, database) may be at `host`: allowed, and never an
    /// instance metadata address, whatever the list says (they hand out the node's credentials).
    pub fn allows_backend(&self, host: &str) -> bool {
        !is_metadata_address(host) && self.allows(host)
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

/// Link-local addresses (169.254.0.0/16 with the usual 169.254.169.254, fe80::/10) and
/// Alibaba Cloud's metadata service 100.100.100.200.
pub fn is_metadata_address(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(ip)) => {
            ip.is_link_local() || ip == std::net::Ipv4Addr::new(100, 100, 100, 200)
        }
        Ok(std::net::IpAddr::V6(ip)) => {
            (ip.segments()[0] & 0xffc0) == 0xfe80
                || ip.to_ipv4_mapped().is_some_and(|v4| {
                    v4.is_link_local() || v4 == std::net::Ipv4Addr::new(100, 100, 100, 200)
                })
        }
        Err(_) => false,
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
    fn backends_default_to_the_cluster_and_never_reach_metadata_services() {
        let policy = EndpointPolicy::parse(DEFAULT_BACKEND_HOSTS).unwrap();
        for host in [
            "db.team-a.svc",
            "hook.team-a.svc.cluster.local",
            "127.0.0.1",
            "[::1]",
        ] {
            assert!(policy.allows_backend(host), "{host}");
        }
        for host in [
            "db.example.com",
            "192.0.2.12",
            "svc",
            "kms.cn-hangzhou.aliyuncs.com",
        ] {
            assert!(!policy.allows_backend(host), "{host}");
        }
        let any = EndpointPolicy::parse("*").unwrap();
        for host in [
            "169.254.169.254",
            "169.254.0.1",
            "100.100.100.200",
            "[fe80::1]",
            "[::ffff:169.254.169.254]",
        ] {
            assert!(!any.allows_backend(host), "{host}");
            assert!(is_metadata_address(host), "{host}");
        }
        assert!(any.allows_backend("db.example.com"));
    }

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
