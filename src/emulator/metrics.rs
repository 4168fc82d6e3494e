//! Call accounting: a counter per (action, outcome), exposed as Prometheus text
//! (`GET /admin/metrics`) and as JSON (`GET /admin/calls`). Outcome is `Success` or the code.
//! Requests are also counted per secret as they arrive, whatever becomes of them (in process
//! only, for tests that need to know a client asked about one secret).

use std::collections::BTreeMap;
use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde_json::{Value, json};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    action: String,
    outcome: String,
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    calls: Family<CallLabels, Counter>,
    table: Mutex<BTreeMap<String, BTreeMap<String, u64>>>,
    /// (secret name or `-`, action) → requests received.
    received: Mutex<BTreeMap<(String, String), u64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "kms_emulator_calls",
            "API calls served by the KMS emulator, by action and outcome",
            calls.clone(),
        );
        Self {
            registry,
            calls,
            table: Mutex::new(BTreeMap::new()),
            received: Mutex::new(BTreeMap::new()),
        }
    }
}

impl Metrics {
    pub fn record(&self, action: &str, outcome: &str) {
        let labels = CallLabels {
            action: action.to_string(),
            outcome: outcome.to_string(),
        };
        self.calls.get_or_create(&labels).inc();
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        *table
            .entry(action.to_string())
            .or_default()
            .entry(outcome.to_string())
            .or_default() += 1;
    }

    /// Counts a request for `secret` (or `-`) as it arrives.
    pub fn receive(&self, secret: &str, action: &str) {
        let mut received = self.received.lock().unwrap_or_else(|e| e.into_inner());
        *received
            .entry((secret.to_string(), action.to_string()))
            .or_default() += 1;
    }

    /// Requests received for `secret` (or `-`) and `action` so far.
    pub fn received(&self, secret: &str, action: &str) -> u64 {
        let received = self.received.lock().unwrap_or_else(|e| e.into_inner());
        received
            .get(&(secret.to_string(), action.to_string()))
            .copied()
            .unwrap_or(0)
    }

    /// Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// `{"total": N, "calls": {"<Action>": {"<Outcome>": count}}}`.
    pub fn calls_json(&self) -> Value {
        let table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let total: u64 = table.values().flat_map(|m| m.values()).sum();
        json!({"total": total, "calls": *table})
    }

    pub fn reset(&self) {
        self.calls.clear();
        self.table.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_action_and_outcome() {
        let m = Metrics::default();
        m.record("GetSecretValue", "Success");
        m.record("GetSecretValue", "Success");
        m.record("GetSecretValue", "Forbidden.ResourceNotFound");
        let j = m.calls_json();
        assert_eq!(j["total"], 3);
        assert_eq!(j["calls"]["GetSecretValue"]["Success"], 2);
        assert!(
            m.encode().contains(
                "kms_emulator_calls_total{action=\"GetSecretValue\",outcome=\"Success\"} 2"
            )
        );
        m.receive("s", "GetSecretValue");
        assert_eq!(m.received("s", "GetSecretValue"), 1);
        assert_eq!(m.received("t", "GetSecretValue"), 0);
        m.reset();
        assert_eq!(m.calls_json()["total"], 0);
        assert_eq!(m.received("s", "GetSecretValue"), 0);
    }
}
