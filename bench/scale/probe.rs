//! What the benchmark observes on the Kubernetes side: write requests counted by the apiserver
//! (`apiserver_request_total`), ManagedSecrets turning Ready and Secrets receiving new data
//! (both through watches, so nothing polls thousands of objects).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kmsync::crd::ManagedSecret;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Client, ResourceExt};

use crate::Res;

/// Verbs of `apiserver_request_total` that write.
const WRITE_VERBS: [&str; 6] = [
    "POST",
    "PUT",
    "PATCH",
    "APPLY",
    "DELETE",
    "DELETECOLLECTION",
];

/// Write requests served so far, by `resource[/subresource]`.
pub async fn apiserver_writes(client: &Client) -> Res<BTreeMap<String, u64>> {
    let request = http::Request::get("/metrics").body(Vec::new())?;
    let text = client.request_text(request).await?;
    let mut writes = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let label = |name: &str| -> &str {
            labels
                .split(',')
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix("=\""))
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or("")
        };
        if !WRITE_VERBS.contains(&label("verb").to_ascii_uppercase().as_str()) {
            continue;
        }
        let resource = match label("subresource") {
            "" => label("resource").to_string(),
            sub => format!("{}/{sub}", label("resource")),
        };
        let count = value.trim().parse::<f64>().unwrap_or(0.0) as u64;
        *writes.entry(resource).or_insert(0) += count;
    }
    Ok(writes)
}

/// `after - before`, without zero entries.
pub fn delta(
    after: &BTreeMap<String, u64>,
    before: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v.saturating_sub(*before.get(k).unwrap_or(&0))))
        .filter(|(_, v)| *v > 0)
        .collect()
}

/// The resources kmsync writes; everything else (the apiserver's own leases) is left out of
/// "Kubernetes writes" and reported apart.
pub fn is_operator_resource(resource: &str) -> bool {
    let base = resource.split('/').next().unwrap_or(resource);
    matches!(
        base,
        "secrets" | "managedsecrets" | "secretstores" | "clustersecretstores" | "events"
    )
}

/// Ready conditions of the ManagedSecrets of one namespace, kept current by a watch.
pub struct ReadyTracker {
    state: Arc<Mutex<ReadyState>>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct ReadyState {
    listed: bool,
    /// Name → `None` when Ready for the current generation, else the reason it is not.
    objects: HashMap<String, Option<String>>,
}

fn readiness(ms: &ManagedSecret) -> Option<String> {
    let Some(status) = &ms.status else {
        return Some("NoStatus".into());
    };
    match status.conditions.iter().find(|c| c.type_ == "Ready") {
        None => Some("NoReadyCondition".into()),
        Some(c) if c.observed_generation != ms.metadata.generation => Some("Stale".into()),
        Some(c) if c.status == "True" => None,
        Some(c) => Some(c.reason.clone()),
    }
}

impl ReadyTracker {
    pub fn start(client: &Client, namespace: &str) -> Self {
        let api: Api<ManagedSecret> = Api::namespaced(client.clone(), namespace);
        let state = Arc::new(Mutex::new(ReadyState::default()));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            let mut events = watch_all(api).boxed();
            while let Some(event) = events.next().await {
                let Ok(event) = event else { continue };
                let mut s = shared.lock().expect("ready state");
                match event {
                    Event::Apply(ms) | Event::InitApply(ms) => {
                        s.objects.insert(ms.name_any(), readiness(&ms));
                    }
                    Event::Delete(ms) => {
                        s.objects.remove(&ms.name_any());
                    }
                    Event::InitDone => s.listed = true,
                    Event::Init => {}
                }
            }
        });
        Self { state, task }
    }

    pub fn listed(&self) -> bool {
        self.state.lock().expect("ready state").listed
    }

    pub fn ready(&self) -> usize {
        let s = self.state.lock().expect("ready state");
        s.objects.values().filter(|r| r.is_none()).count()
    }

    /// How many are not Ready, by reason.
    pub fn not_ready(&self) -> BTreeMap<String, usize> {
        let s = self.state.lock().expect("ready state");
        let mut reasons = BTreeMap::new();
        for reason in s.objects.values().flatten() {
            *reasons.entry(reason.clone()).or_insert(0) += 1;
        }
        reasons
    }
}

impl Drop for ReadyTracker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn watch_all<K>(api: Api<K>) -> impl futures::Stream<Item = Result<Event<K>, watcher::Error>>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
    K::DynamicType: Default,
{
    watcher::watcher(api, watcher::Config::default()).default_backoff()
}

/// Watches the managed Secrets of a namespace and notes when expected data arrives.
pub struct ChangeTracker {
    state: Arc<Mutex<ChangeState>>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct ChangeState {
    listed: bool,
    /// Secret name → (key, expected value, when it was first seen).
    expected: HashMap<String, (String, Vec<u8>, Option<Instant>)>,
}

impl ChangeTracker {
    pub fn start(client: &Client, namespace: &str) -> Self {
        let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
        let state = Arc::new(Mutex::new(ChangeState::default()));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            let config = watcher::Config::default().labels("kmsync.io/managed=true");
            let mut events = watcher::watcher(api, config).default_backoff().boxed();
            while let Some(event) = events.next().await {
                let Ok(event) = event else { continue };
                let now = Instant::now();
                let mut s = shared.lock().expect("change state");
                match event {
                    Event::Apply(secret) | Event::InitApply(secret) => {
                        let name = secret.name_any();
                        if let Some((key, value, seen)) = s.expected.get_mut(&name)
                            && seen.is_none()
                            && secret
                                .data
                                .as_ref()
                                .and_then(|d| d.get(key.as_str()))
                                .is_some_and(|v| v.0 == *value)
                        {
                            *seen = Some(now);
                        }
                    }
                    Event::InitDone => s.listed = true,
                    Event::Init | Event::Delete(_) => {}
                }
            }
        });
        Self { state, task }
    }

    pub fn listed(&self) -> bool {
        self.state.lock().expect("change state").listed
    }

    /// From now on, note when Secret `name` has `value` under `key`.
    pub fn expect(&self, name: &str, key: &str, value: &[u8]) {
        self.state
            .lock()
            .expect("change state")
            .expected
            .insert(name.to_string(), (key.to_string(), value.to_vec(), None));
    }

    pub fn seen(&self, name: &str) -> Option<Instant> {
        self.state
            .lock()
            .expect("change state")
            .expected
            .get(name)
            .and_then(|(_, _, seen)| *seen)
    }
}

impl Drop for ChangeTracker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Polls `done` every `step` until it is true or `limit` passes; returns whether it became true.
pub async fn wait_until(limit: Duration, step: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    let max_rounds = (limit.as_millis() / step.as_millis().max(1)) as u64 + 2;
    for _ in 0..max_rounds {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(step).await;
    }
    done()
}
