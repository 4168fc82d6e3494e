//! The real helm (v4.1.4 from `scripts/helm.sh`) with a throw-away home, and the chart's path.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde::Deserialize as _;
use serde_json::Value;

use super::{describe, repo};

/// helm with its cache/config/data in a temporary directory (never the user's own).
pub struct Helm {
    binary: PathBuf,
    home: tempfile::TempDir,
}

impl Helm {
    pub fn new() -> Self {
        let binary = std::env::var_os("HELM")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo("tools/helm/helm"));
        assert!(
            binary.is_file(),
            "helm not found at {}: run scripts/helm.sh (installs helm v4.1.4 into tools/helm/helm) \
             or set HELM",
            binary.display()
        );
        Self {
            binary,
            home: tempfile::tempdir().expect("helm home"),
        }
    }

    pub fn run(&self, args: &[&str]) -> Output {
        let home = self.home.path();
        Command::new(&self.binary)
            .args(args)
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_DATA_HOME", home.join("data"))
            .stdin(Stdio::null())
            .output()
            .expect("run helm")
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "helm {args:?}: {}",
            describe(&output)
        );
        String::from_utf8(output.stdout).expect("utf-8")
    }
}

/// The chart in this checkout.
pub fn chart() -> String {
    repo("charts/kmsync").display().to_string()
}

/// Multi-document YAML (helm's output) as one JSON value per object.
pub fn parse_documents(yaml: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(yaml)
        .map(|doc| Value::deserialize(doc).expect("rendered YAML parses"))
        .filter(|v| !v.is_null())
        .collect()
}
