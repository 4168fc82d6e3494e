//! Prometheus metrics of the operator. Label values are bounded: actions, outcomes and PascalCase
//! reasons come from fixed sets, and per-object series (namespace, name) exist only while their
//! ManagedSecret does. Never a secret name's value or any data.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    pub outcome: &'static str,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KmsCallLabels {
    pub action: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    pub action: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

/// One ManagedSecret.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ObjectLabels {
    pub namespace: String,
    pub name: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// Every metric family, registered once.
pub struct Metrics {
    registry: Registry,
    pub reconciles: Family<ReconcileLabels, Counter>,
    pub reconcile_duration: Histogram,
    pub kms_calls: Family<KmsCallLabels, Counter>,
    pub kms_latency: Family<ActionLabels, Histogram>,
    pub consumer_restarts: Family<KindLabels, Counter>,
    pub rotations: Family<OutcomeLabels, Counter>,
    pub last_sync: Family<ObjectLabels, FloatGauge>,
    pub version_age: Family<ObjectLabels, FloatGauge>,
    /// Objects with per-object series, and the creation time of the version each one holds
    /// (ages are computed when scraped).
    tracked: Mutex<HashMap<ObjectLabels, Option<jiff::Timestamp>>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.002, 2.0, 14))
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
        let kms_calls = Family::<KmsCallLabels, Counter>::default();
        registry.register(
            "kms_calls",
            "KMS calls by action and outcome (Success or a reason)",
            kms_calls.clone(),
        );
        let kms_latency = Family::<ActionLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "kms_call_duration_seconds",
            "KMS call latency, retries included",
            kms_latency.clone(),
        );
        let consumer_restarts = Family::<KindLabels, Counter>::default();
        registry.register(
            "consumer_restarts",
            "Workloads restarted for new Secret data",
            consumer_restarts.clone(),
        );
        let rotations = Family::<OutcomeLabels, Counter>::default();
        registry.register("rotations", "Rotations by outcome", rotations.clone());
        let last_sync = Family::<ObjectLabels, FloatGauge>::default();
        registry.register(
            "last_successful_sync_timestamp_seconds",
            "Unix time of the last successful sync of a ManagedSecret",
            last_sync.clone(),
        );
        let version_age = Family::<ObjectLabels, FloatGauge>::default();
        registry.register(
            "synced_version_age_seconds",
            "Age of the KMS version a ManagedSecret holds",
            version_age.clone(),
        );
        Self {
            registry,
            reconciles,
            reconcile_duration,
            kms_calls,
            kms_latency,
            consumer_restarts,
            rotations,
            last_sync,
            version_age,
            tracked: Mutex::new(HashMap::new()),
        }
    }
}

impl Metrics {
    /// OpenMetrics text of every family.
    pub fn encode(&self) -> String {
        let now = jiff::Timestamp::now();
        for (object, created) in self.tracked.lock().expect("metrics lock").iter() {
            if let Some(created) = created {
                let age = now.duration_since(*created).as_secs_f64().max(0.0);
                self.version_age.get_or_create(object).set(age);
            }
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    pub fn reconciled(&self, outcome: &'static str, reason: &'static str, seconds: f64) {
        self.reconciles
            .get_or_create(&ReconcileLabels { outcome, reason })
            .inc();
        self.reconcile_duration.observe(seconds);
    }

    pub fn kms_call(&self, action: &'static str, outcome: &'static str, seconds: f64) {
        self.kms_calls
            .get_or_create(&KmsCallLabels { action, outcome })
            .inc();
        self.kms_latency
            .get_or_create(&ActionLabels { action })
            .observe(seconds);
    }

    /// A successful sync of `object` holding a version created at `version_created` (RFC 3339).
    pub fn synced(&self, object: ObjectLabels, at: jiff::Timestamp, version_created: Option<&str>) {
        self.last_sync
            .get_or_create(&object)
            .set(at.as_millisecond() as f64 / 1000.0);
        let created = version_created.and_then(|t| t.parse::<jiff::Timestamp>().ok());
        self.tracked
            .lock()
            .expect("metrics lock")
            .insert(object, created);
    }

    /// Drops the per-object series of objects for which `exists` is false.
    pub fn retain_objects(&self, exists: impl Fn(&ObjectLabels) -> bool) {
        let mut tracked = self.tracked.lock().expect("metrics lock");
        let gone: Vec<ObjectLabels> = tracked.keys().filter(|o| !exists(o)).cloned().collect();
        for object in gone {
            tracked.remove(&object);
            self.last_sync.remove(&object);
            self.version_age.remove(&object);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(name: &str) -> ObjectLabels {
        ObjectLabels {
            namespace: "team".into(),
            name: name.into(),
        }
    }

    #[test]
    fn families_appear_with_bounded_labels() {
        let metrics = Metrics::default();
        metrics.reconciled("success", "Synced", 0.01);
        metrics.reconciled("failure", "Throttled", 0.02);
        metrics.kms_call("GetSecretValue", "Success", 0.004);
        metrics
            .consumer_restarts
            .get_or_create(&KindLabels { kind: "Deployment" })
            .inc();
        metrics
            .rotations
            .get_or_create(&OutcomeLabels {
                outcome: "Succeeded",
            })
            .inc();
        let text = metrics.encode();
        for expected in [
            r#"kmsync_reconciles_total{outcome="success",reason="Synced"} 1"#,
            r#"kmsync_reconciles_total{outcome="failure",reason="Throttled"} 1"#,
            "kmsync_reconcile_duration_seconds_count 2",
            r#"kmsync_kms_calls_total{action="GetSecretValue",outcome="Success"} 1"#,
            r#"kmsync_kms_call_duration_seconds_count{action="GetSecretValue"} 1"#,
            r#"kmsync_consumer_restarts_total{kind="Deployment"} 1"#,
            r#"kmsync_rotations_total{outcome="Succeeded"} 1"#,
        ] {
            assert!(text.contains(expected), "missing {expected} in\n{text}");
        }
    }

    #[test]
    fn per_object_series_follow_their_objects() {
        let metrics = Metrics::default();
        let now = jiff::Timestamp::from_second(1_800_000_000).unwrap();
        metrics.synced(object("a"), now, Some("2020-01-01T00:00:00Z"));
        metrics.synced(object("b"), now, None);
        let text = metrics.encode();
        assert!(text.contains(r#"kmsync_last_successful_sync_timestamp_seconds{namespace="team",name="a"} 1800000000"#), "{text}");
        assert!(
            text.contains(r#"kmsync_synced_version_age_seconds{namespace="team",name="a"}"#),
            "{text}"
        );
        metrics.retain_objects(|o| o.name == "b");
        let text = metrics.encode();
        assert!(!text.contains(r#"name="a""#), "{text}");
        assert!(
            text.contains(
                r#"kmsync_last_successful_sync_timestamp_seconds{namespace="team",name="b"}"#
            ),
            "{text}"
        );
    }
}
