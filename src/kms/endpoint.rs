//! Where requests go: region → `kms[-vpc].<region>.aliyuncs.com`, or a custom endpoint.
//!
//! HTTPS by default. Plain `http://` is accepted only for loopback hosts (127.0.0.0/8, `::1`,
//! `localhost`), which is what the local emulator and test stubs use.

use std::net::IpAddr;

use reqwest::Url;

use super::error::KmsError;

/// Which regional KMS endpoint to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Network {
    #[default]
    Public,
    Vpc,
}

/// A validated endpoint: a base URL (`scheme://host[:port]/`) and the `host` header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    base: Url,
    host: String,
}

impl Endpoint {
    /// `kms.<region>.aliyuncs.com` or `kms-vpc.<region>.aliyuncs.com`, over HTTPS.
    pub fn for_region(region: &str, network: Network) -> Result<Self, KmsError> {
        Self::for_product("kms", region, network)
    }

    /// `<product>[-vpc].<region>.aliyuncs.com` (used for STS too).
    pub fn for_product(product: &str, region: &str, network: Network) -> Result<Self, KmsError> {
        let valid = !region.is_empty()
            && region
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !valid {
            return Err(KmsError::Config(format!("invalid region id {region:?}")));
        }
        let suffix = match network {
            Network::Public => "",
            Network::Vpc => "-vpc",
        };
        Self::parse(&format!("https://{product}{suffix}.{region}.aliyuncs.com"))
    }

    /// A custom endpoint: `https://host[:port]`, `http://<loopback>[:port]`, or a bare
    /// `host[:port]` (HTTPS). Paths, queries and credentials in the URL are rejected.
    pub fn parse(endpoint: &str) -> Result<Self, KmsError> {
        let endpoint = endpoint.trim();
        let with_scheme = if endpoint.contains("://") {
            endpoint.to_string()
        } else {
            format!("https://{endpoint}")
        };
        let url = Url::parse(&with_scheme)
            .map_err(|e| KmsError::Config(format!("invalid endpoint {endpoint:?}: {e}")))?;
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| KmsError::Config(format!("endpoint {endpoint:?} has no host")))?
            .to_string();
        if !url.username().is_empty() || url.password().is_some() {
            return Err(KmsError::Config(
                "endpoint must not carry user info".to_string(),
            ));
        }
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            return Err(KmsError::Config(format!(
                "endpoint {endpoint:?} must be scheme://host[:port] without path or query"
            )));
        }
        match url.scheme() {
            "https" => {}
            "http" if is_loopback_host(&host) => {}
            "http" => {
                return Err(KmsError::Config(format!(
                    "plain http:// is allowed only for loopback hosts (127.0.0.0/8, ::1, localhost), not {host:?}; use https://"
                )));
            }
            other => {
                return Err(KmsError::Config(format!(
                    "unsupported endpoint scheme {other:?}"
                )));
            }
        }
        let host_header = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host,
        };
        Ok(Self {
            base: url,
            host: host_header,
        })
    }

    /// The `host` header value (port included when explicit), as signed.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// `scheme://host[:port]/`.
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    pub fn is_https(&self) -> bool {
        self.base.scheme() == "https"
    }

    /// `base` + path (path must start with `/`).
    pub fn url_for(&self, path: &str) -> String {
        let base = self.base.as_str().trim_end_matches('/');
        format!("{base}{path}")
    }
}

/// True for `localhost`, `*.localhost`, 127.0.0.0/8 and `::1` (brackets allowed).
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.eq_ignore_ascii_case("localhost") || host.to_ascii_lowercase().ends_with(".localhost") {
        return true;
    }
    host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regional_endpoints() {
        let e = Endpoint::for_region("cn-hangzhou", Network::Public).unwrap();
        assert_eq!(e.host(), "kms.cn-hangzhou.aliyuncs.com");
        assert_eq!(
            e.base_url().as_str(),
            "https://kms.cn-hangzhou.aliyuncs.com/"
        );
        let e = Endpoint::for_region("ap-southeast-1", Network::Vpc).unwrap();
        assert_eq!(e.host(), "kms-vpc.ap-southeast-1.aliyuncs.com");
        assert!(Endpoint::for_region("cn hangzhou", Network::Public).is_err());
        assert!(Endpoint::for_region("", Network::Public).is_err());
    }

    #[test]
    fn custom_endpoints_and_loopback_rule() {
        let e = Endpoint::parse("http://127.0.0.1:8443").unwrap();
        assert_eq!(e.host(), "127.0.0.1:8443");
        assert!(!e.is_https());
        assert_eq!(e.url_for("/?a=b"), "http://127.0.0.1:8443/?a=b");
        assert!(Endpoint::parse("http://127.9.9.9:1").is_ok());
        assert!(Endpoint::parse("http://localhost:1").is_ok());
        let e = Endpoint::parse("http://[::1]:9000").unwrap();
        assert_eq!(e.host(), "[::1]:9000");
        let e = Endpoint::parse("kms.example.internal:8443").unwrap();
        assert!(e.is_https());
        assert_eq!(e.host(), "kms.example.internal:8443");
        assert_eq!(
            Endpoint::parse("https://kms.example.internal:443")
                .unwrap()
                .host(),
            "kms.example.internal"
        );
        for bad in [
            "http://10.0.0.1:80",
            "http://kms.cn-hangzhou.aliyuncs.com",
            "http://128.0.0.1",
            "ftp://127.0.0.1",
            "https://h/path",
            "https://u:p@h",
            "https://",
        ] {
            let err = Endpoint::parse(bad).unwrap_err();
            assert_eq!(err.reason(), "InvalidConfiguration", "{bad}");
        }
        let msg = Endpoint::parse("http://10.0.0.1").unwrap_err().to_string();
        assert!(msg.contains("loopback"), "{msg}");
    }
}
