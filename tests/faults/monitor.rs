//! Watches the test namespace for the whole run and records every state the managed Secrets and
//! the rotating ManagedSecrets pass through, so the invariants hold for every write, not only for
//! the state found after a step. The watches ride out apiserver restarts like the operator's,
//! with its short backoff; a relist after such a gap may skip states in between (never invent
//! one), so it is reported as [`Seen::Relisted`] and the checks allow for what they missed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kmsync::controller::watch_backoff::watch_backoff;
use kmsync::crd::ManagedSecret;
use kmsync::crd::rotation::RotationStatus;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};

/// One observed state.
#[derive(Clone, Debug)]
pub enum Seen {
    Secret {
        name: String,
        uid: String,
        data: BTreeMap<String, String>,
    },
    SecretGone {
        name: String,
    },
    Rotation {
        name: String,
        rotation: RotationStatus,
        /// `(status, reason, message)` of the `Rotation` condition.
        condition: Option<(String, String, String)>,
    },
    /// The ManagedSecret watch started over (after an error): states may have been skipped.
    Relisted,
}

/// Background watches; stopped when dropped.
pub struct Monitor {
    seen: Arc<Mutex<Vec<Seen>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Monitor {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn secret_data(secret: &Secret) -> BTreeMap<String, String> {
    secret
        .data
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
        .collect()
}

fn rotation_of(ms: &ManagedSecret) -> Seen {
    let status = ms.status.clone().unwrap_or_default();
    let condition = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Rotation")
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()));
    Seen::Rotation {
        name: ms.name_any(),
        rotation: status.rotation.unwrap_or_default(),
        condition,
    }
}

impl Monitor {
    /// Starts watching Secrets named in `secrets` and ManagedSecrets named in `rotating`.
    pub fn start(
        client: &Client,
        namespace: &str,
        secrets: Vec<String>,
        rotating: Vec<String>,
    ) -> Self {
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let record = seen.clone();
        let secret_api: Api<Secret> = Api::namespaced(client.clone(), namespace);
        let watch_secrets = tokio::spawn(async move {
            let mut events = watcher(secret_api, watcher::Config::default())
                .backoff(watch_backoff())
                .boxed();
            while let Some(event) = events.next().await {
                let entry = match event {
                    Ok(watcher::Event::Apply(s) | watcher::Event::InitApply(s)) => Seen::Secret {
                        name: s.name_any(),
                        uid: s.uid().unwrap_or_default(),
                        data: secret_data(&s),
                    },
                    Ok(watcher::Event::Delete(s)) => Seen::SecretGone { name: s.name_any() },
                    _ => continue,
                };
                let name = match &entry {
                    Seen::Secret { name, .. } | Seen::SecretGone { name } => name,
                    Seen::Rotation { .. } | Seen::Relisted => unreachable!(),
                };
                if secrets.contains(name) {
                    record.lock().unwrap().push(entry);
                }
            }
        });
        let record = seen.clone();
        let ms_api: Api<ManagedSecret> = Api::namespaced(client.clone(), namespace);
        let watch_rotations = tokio::spawn(async move {
            let mut events = watcher(ms_api, watcher::Config::default())
                .backoff(watch_backoff())
                .boxed();
            let mut first = true;
            while let Some(event) = events.next().await {
                match event {
                    Ok(watcher::Event::Init) if !std::mem::take(&mut first) => {
                        record.lock().unwrap().push(Seen::Relisted);
                    }
                    Ok(watcher::Event::Apply(ms) | watcher::Event::InitApply(ms))
                        if rotating.contains(&ms.name_any()) =>
                    {
                        record.lock().unwrap().push(rotation_of(&ms));
                    }
                    _ => {}
                }
            }
        });
        Self {
            seen,
            tasks: vec![watch_secrets, watch_rotations],
        }
    }

    /// Everything observed since the last call, in order.
    pub fn drain(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}
