//! Prometheus metrics of the operator. Label values are bounded: outcomes and PascalCase reasons
//! from a fixed set, never names of secrets or values.

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    pub outcome: &'static str,
    pub reason: &'static str,
}

/// Every metric family, registered once.
pub struct Metrics {
    registry: Mutex<Registry>,
    pub reconciles: Family<ReconcileLabels, Counter>,
    pub reconcile_duration: Histogram,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("kmsync");
        let reconciles = Family::<ReconcileLabels, Counter>::default();
        registry.register(
            "reconciles",
            "ManagedSecret reconciles by outcome and reason",
            reconciles.clone(),
        );
        let reconcile_duration = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconcile",
            reconcile_duration.clone(),
        );
        Self {
            registry: Mutex::new(registry),
            reconciles,
            reconcile_duration,
        }
    }
}

impl Metrics {
    /// OpenMetrics text of every family.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().expect("registry lock");
        prometheus_client::encoding::text::encode(&mut out, &registry)
            .expect("writing to a String cannot fail");
        out
    }

    pub fn reconciled(&self, outcome: &'static str, reason: &'static str, seconds: f64) {
        self.reconciles
            .get_or_create(&ReconcileLabels { outcome, reason })
            .inc();
        self.reconcile_duration.observe(seconds);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconcile_counters_appear_with_bounded_labels() {
        let metrics = Metrics::default();
        metrics.reconciled("success", "Synced", 0.01);
        metrics.reconciled("failure", "Throttled", 0.02);
        let text = metrics.encode();
        assert!(
            text.contains(r#"kmsync_reconciles_total{outcome="success",reason="Synced"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"kmsync_reconciles_total{outcome="failure",reason="Throttled"} 1"#),
            "{text}"
        );
        assert!(
            text.contains("kmsync_reconcile_duration_seconds_count 2"),
            "{text}"
        );
    }
}
