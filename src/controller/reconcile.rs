//! Reconcile of one ManagedSecret: observe → resolve store → fetch (coalesced) → render → check the
//! target → apply only if something changed → status only if it changed. Failures leave the Secret
//! as it is and say why in the status.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

use crate::controller::endpoint_policy::{DEFAULT_BACKEND_HOSTS, EndpointPolicy};
use crate::controller::error::Error;
use crate::controller::fetch::{Coalescer, FetchKey};
use crate::controller::rollout::{self, RolloutPlan};
use crate::controller::schedule;
use crate::controller::source::{ResolvedStore, SourceFactory};
use crate::controller::stores;
use crate::controller::target::{self, FIELD_MANAGER, Provenance};
use crate::crd::conditions::{self, types};
use crate::crd::managed_secret::{CreationPolicy, DeletionPolicy, SourceStatus};
use crate::crd::store::CredentialsSecretRef;
use crate::crd::{ManagedSecret, ManagedSecretStatus};
use crate::render::{self, FetchedVersion, VersionSelector};
use crate::rotation::driver;

/// Annotation whose changed value asks for one more (uncached) sync.
pub const ANNOTATION_FORCE_SYNC: &str = "kmsync.io/force-sync";
/// Finalizer present only with `deletionPolicy: Delete`.
pub const FINALIZER: &str = "kmsync.io/cleanup";

/// Tunables of the reconcile loop.
#[derive(Clone, Debug)]
pub struct Settings {
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Rotations that may be in flight at once across all objects.
    pub max_concurrent_rotations: usize,
    /// Hosts a rotation's webhook or database may be at (`--allowed-backend-hosts`).
    pub backend_policy: EndpointPolicy,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            backoff_base: Duration::from_secs(5),
            backoff_max: Duration::from_secs(300),
            max_concurrent_rotations: 4,
            backend_policy: EndpointPolicy::parse(DEFAULT_BACKEND_HOSTS)
                .expect("the default parses"),
        }
    }
}

/// Shared state of the controller.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub sources: Arc<dyn SourceFactory>,
    pub coalescer: Coalescer,
    pub settings: Settings,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Consecutive failures per object UID, for backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// UIDs of objects with a rotation in flight (the global cap).
    rotating: Mutex<std::collections::HashSet<String>>,
    /// The status we last wrote per UID: the watch cache can lag behind our own write, and
    /// building on its older status would write a second, needless status patch.
    written: Mutex<HashMap<String, ManagedSecretStatus>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Context {
    pub fn new(
        client: Client,
        recorder: Recorder,
        sources: Arc<dyn SourceFactory>,
        settings: Settings,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Self {
        Self {
            client,
            recorder,
            sources,
            coalescer: Coalescer::new(Duration::from_secs(5)),
            settings,
            metrics,
            failures: Mutex::new(HashMap::new()),
            rotating: Mutex::new(std::collections::HashSet::new()),
            written: Mutex::new(HashMap::new()),
        }
    }

    /// The status to build on: the cached one, or our own last write when the cache visibly has
    /// not caught up with it yet.
    fn status_base(
        &self,
        uid: &str,
        cached: Option<&ManagedSecretStatus>,
    ) -> Option<ManagedSecretStatus> {
        let written = self.written.lock().expect("written lock").get(uid).cloned();
        newer_status(cached.cloned(), written)
    }

    fn remember_status(&self, uid: &str, status: &ManagedSecretStatus) {
        self.written
            .lock()
            .expect("written lock")
            .insert(uid.to_string(), status.clone());
    }

    /// Forgets what was written for objects that are gone.
    pub fn retain_written(&self, live: impl Fn(&str) -> bool) {
        self.written
            .lock()
            .expect("written lock")
            .retain(|uid, _| live(uid));
    }

    /// Takes a rotation slot for `uid`; false when the cap is reached. An object resuming after
    /// a restart takes its slot again without checking the cap, so it is never blocked midway.
    pub fn begin_rotation(&self, uid: &str) -> bool {
        let mut rotating = self.rotating.lock().expect("rotating lock");
        if rotating.contains(uid) {
            return true;
        }
        if rotating.len() >= self.settings.max_concurrent_rotations {
            return false;
        }
        rotating.insert(uid.to_string());
        true
    }

    pub fn end_rotation(&self, uid: &str) {
        self.rotating.lock().expect("rotating lock").remove(uid);
    }

    /// Counts one more consecutive failure of the object `uid` (ManagedSecrets and stores).
    pub(crate) fn record_failure(&self, uid: &str) -> u32 {
        let mut failures = self.failures.lock().expect("failures lock");
        let count = failures.entry(uid.to_string()).or_insert(0);
        *count += 1;
        *count
    }

    pub(crate) fn clear_failures(&self, uid: &str) {
        self.failures.lock().expect("failures lock").remove(uid);
    }
}

/// What a successful sync did.
struct Synced {
    primary: Arc<FetchedVersion>,
    wrote: Option<&'static str>,
    /// The KMS versions the data was rendered from (see `rollout::revision`).
    revision: String,
    /// When the rotation wants to be looked at again.
    rotation_wake: Option<Duration>,
}

/// Entry point for the kube-runtime controller.
pub async fn reconcile(ms: Arc<ManagedSecret>, ctx: Arc<Context>) -> Result<Action, Error> {
    let api: Api<ManagedSecret> =
        Api::namespaced(ctx.client.clone(), &ms.namespace().unwrap_or_default());
    if ms.metadata.deletion_timestamp.is_some() {
        return finalize(&api, &ms, &ctx).await;
    }
    ensure_finalizer(&api, &ms).await?;
    // Rotation plans from its recorded progress, and the watch cache may not show our last
    // status write yet: read the object itself so no step is ever repeated from a stale view.
    let ms = if ms.spec.rotation.is_some() {
        match api.get_opt(&ms.name_any()).await? {
            Some(latest) => Arc::new(latest),
            None => return Ok(Action::await_change()),
        }
    } else {
        ms
    };
    let uid = ms.uid().unwrap_or_default();
    let now = jiff::Timestamp::now();
    let interval = schedule::refresh_interval(ms.spec.refresh_interval.as_deref());
    let started = std::time::Instant::now();
    // The status as last written, and the one this reconcile builds (rotation steps persist
    // through it before the sync adds its part).
    let mut persisted = ctx.status_base(&uid, ms.status.as_ref());
    let mut status = persisted.clone().unwrap_or_default();
    let previous_reason = persisted
        .as_ref()
        .and_then(|s| conditions::find(&s.conditions, types::READY))
        .map(|c| c.reason.clone());
    let checked = interval.clone().map_err(Error::InvalidSpec).and_then(|_| {
        crate::rotation::spec_check::check(
            ms.spec.rotation.as_ref(),
            now,
            &ctx.settings.backend_policy,
        )
    });
    let outcome = match checked {
        Ok(()) => sync(&ms, &ctx, now, &mut status, &mut persisted).await,
        Err(error) => Err(error),
    };
    let seconds = started.elapsed().as_secs_f64();
    match &outcome {
        Ok(_) => ctx.metrics.reconciled("success", "Synced", seconds),
        Err(error) => ctx.metrics.reconciled("failure", error.reason(), seconds),
    }
    match outcome {
        Ok(synced) => {
            ctx.clear_failures(&uid);
            if let Some(action) = synced.wrote {
                publish(
                    &ctx,
                    &ms,
                    EventType::Normal,
                    action,
                    format!(
                        "Secret {} now holds version {} of KMS secret {}",
                        ms.target_name(),
                        synced.primary.version_id,
                        ms.spec.secret_name
                    ),
                )
                .await;
            }
            let recorded = status.consumers_revision.clone();
            let recorded = recorded.as_deref();
            let plan = rollout::plan(&ms.spec.rollout_restart, recorded, &synced.revision);
            if plan == RolloutPlan::Restart {
                restart_consumers(&ctx, &ms, &synced.revision).await?;
            }
            ctx.metrics.synced(
                crate::metrics::ObjectLabels {
                    namespace: ms.namespace().unwrap_or_default(),
                    name: ms.name_any(),
                },
                now,
                synced.primary.create_time.as_deref(),
            );
            let mut status = success_status(&ms, status, &synced, now);
            if plan != RolloutPlan::Nothing {
                status.consumers_revision = Some(synced.revision.clone());
            }
            persist_status(&ctx, &ms, &status, &mut persisted).await?;
            let phase_key = format!("{}/{}", ms.spec.store_ref.name, ms.spec.secret_name);
            let refresh = interval
                .ok()
                .flatten()
                .map(|every| schedule::until(now, schedule::next_refresh(&phase_key, now, every)));
            Ok(match (refresh, synced.rotation_wake) {
                (Some(a), Some(b)) => Action::requeue(a.min(b)),
                (Some(a), None) | (None, Some(a)) => Action::requeue(a),
                (None, None) => Action::await_change(),
            })
        }
        Err(Error::Kube(error)) => Err(Error::Kube(error)),
        Err(error) => {
            let failures = ctx.record_failure(&uid);
            if previous_reason.as_deref() != Some(error.reason()) {
                publish(
                    &ctx,
                    &ms,
                    EventType::Warning,
                    error.reason(),
                    error.to_string(),
                )
                .await;
            }
            let status = failure_status(&ms, status, &error, now);
            persist_status(&ctx, &ms, &status, &mut persisted).await?;
            let retry = if error.waits_for_edit() {
                interval.ok().flatten().unwrap_or(ctx.settings.backoff_max)
            } else {
                let delay = schedule::backoff(
                    &uid,
                    failures,
                    ctx.settings.backoff_base,
                    ctx.settings.backoff_max,
                );
                match &error {
                    Error::Source(source) => {
                        source.retry_after.map_or(delay, |hint| hint.max(delay))
                    }
                    _ => delay,
                }
            };
            tracing::info!(managed_secret = %ms.name_any(), reason = error.reason(), %error, retry_in = ?retry, "sync failed");
            Ok(Action::requeue(retry))
        }
    }
}

/// Rolls every `rolloutRestart` workload; a missing one is reported, not fatal.
async fn restart_consumers(ctx: &Context, ms: &ManagedSecret, revision: &str) -> Result<(), Error> {
    let namespace = ms.namespace().unwrap_or_default();
    let key = rollout::annotation_key(&ms.name_any());
    for target in &ms.spec.rollout_restart {
        let name = format!("{:?}/{}", target.kind, target.name);
        if rollout::restart(&ctx.client, &namespace, target, &key, revision).await? {
            ctx.metrics
                .consumer_restarts
                .get_or_create(&crate::metrics::KindLabels {
                    kind: target.kind.as_str(),
                })
                .inc();
            publish(
                ctx,
                ms,
                EventType::Normal,
                "RolloutRestarted",
                format!(
                    "{name} restarted for the new data of Secret {}",
                    ms.target_name()
                ),
            )
            .await;
        } else {
            publish(
                ctx,
                ms,
                EventType::Warning,
                "RolloutTargetNotFound",
                format!("{name} does not exist; nothing restarted"),
            )
            .await;
        }
    }
    Ok(())
}

/// Synchronous error policy: only Kubernetes API errors reach it; back off and retry.
pub fn error_policy(ms: Arc<ManagedSecret>, error: &Error, ctx: Arc<Context>) -> Action {
    let uid = ms.uid().unwrap_or_default();
    let failures = ctx.record_failure(&uid);
    tracing::warn!(managed_secret = %ms.name_any(), reason = error.reason(), %error, "reconcile failed");
    Action::requeue(schedule::backoff(
        &uid,
        failures,
        ctx.settings.backoff_base,
        ctx.settings.backoff_max,
    ))
}

async fn sync(
    ms: &ManagedSecret,
    ctx: &Context,
    now: jiff::Timestamp,
    status: &mut ManagedSecretStatus,
    persisted: &mut Option<ManagedSecretStatus>,
) -> Result<Synced, Error> {
    let found = stores::lookup(&ctx.client, ms).await?;
    let mut protected = protected_secret(
        &found
            .connection
            .auth
            .access_key
            .as_ref()
            .map(|a| a.secret_ref.clone()),
        &found.credentials_namespace,
        ms,
    ) || rotation_credentials(ms).contains(&ms.target_name().as_str());
    let store = stores::resolve(&ctx.client, found).await?;
    let source = ctx.sources.source(&store)?;
    let mut fresh = force_sync_requested(ms);
    let mut rotation_wake = None;
    if let Some(spec) = &ms.spec.rotation {
        let sequence_before = status.rotation.as_ref().and_then(|r| r.sequence);
        match driver::drive(ctx, ms, spec, &source, status, persisted, now).await? {
            driver::Outcome::Finished => fresh = true,
            driver::Outcome::Idle { next } => {
                rotation_wake = next.map(|at| schedule::until(now, at))
            }
            driver::Outcome::Waiting { retry } => rotation_wake = Some(retry),
        }
        // A secret just created by the rotation must not be read from a cached "not found".
        fresh |= status.rotation.as_ref().and_then(|r| r.sequence) != sequence_before;
    }
    let fetched = fetch_all(ms, ctx, &store, &source, fresh).await?;
    let primary = fetched
        .get(&render::primary_selector(&ms.spec))
        .cloned()
        .expect("primary fetched");
    let data = render::render(
        &ms.spec,
        &fetched
            .iter()
            .map(|(k, v)| (k.clone(), (**v).clone()))
            .collect(),
    )?;

    let namespace = ms.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let existing = secrets.get_opt(&ms.target_name()).await?;
    if !target::is_ours(ms, existing.as_ref()) {
        // Before a Secret becomes ours (created or adopted), make sure no other store of the
        // namespace authenticates with it. Once ours, this LIST is not repeated every sync.
        protected |= credentials_of_a_store(ctx, &namespace, &ms.target_name()).await?;
    }
    if let Err(conflict) = target::check_target(ms, existing.as_ref(), protected) {
        return Err(conflict.into());
    }
    let provenance = Provenance {
        kms_secret_name: ms.spec.secret_name.clone(),
        version_id: primary.version_id.clone(),
        version_stages: primary.stages.clone(),
        synced_at: now,
    };
    let desired = target::desired_secret(ms, &data, &provenance);
    let revision = rollout::revision(&fetched);
    if !target::needs_write(existing.as_ref(), &desired) {
        return Ok(Synced {
            primary,
            wrote: None,
            revision,
            rotation_wake,
        });
    }
    let action = write_action(existing.as_ref(), &primary.version_id);
    let patch = serde_json::to_value(&desired)
        .map_err(|e| Error::InvalidSpec(format!("cannot encode Secret: {e}")))?;
    let mut patch = patch;
    patch["apiVersion"] = json!("v1");
    patch["kind"] = json!("Secret");
    secrets
        .patch(
            &ms.target_name(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(|error| Error::target_write(&ms.target_name(), error))?;
    Ok(Synced {
        primary,
        wrote: Some(action),
        revision,
        rotation_wake,
    })
}

/// Event reason of a write: first creation, taking over an existing Secret, a new version, or a
/// repair of drift (same version, but a managed key or label was edited).
fn write_action(existing: Option<&Secret>, new_version_id: &str) -> &'static str {
    let Some(existing) = existing else {
        return "Created";
    };
    match existing.annotations().get(target::ANNOTATION_VERSION_ID) {
        None => "Adopted",
        Some(on_secret) if on_secret == new_version_id => "DriftRepaired",
        Some(_) => "Updated",
    }
}

/// The Secrets a rotation authenticates with (same namespace): the PostgreSQL admin login, the
/// webhook signing key and client certificate.
fn rotation_credentials(ms: &ManagedSecret) -> Vec<&str> {
    let Some(register) = ms.spec.rotation.as_ref().and_then(|r| r.register.as_ref()) else {
        return Vec::new();
    };
    let postgres = register
        .postgres
        .as_ref()
        .map(|p| p.admin_secret_ref.name.as_str());
    let webhook = register.webhook.iter().flat_map(|w| {
        let certificate = w
            .client_certificate_secret_ref
            .as_ref()
            .map(|c| c.name.as_str());
        std::iter::once(w.signing_secret_ref.name.as_str()).chain(certificate)
    });
    postgres.into_iter().chain(webhook).collect()
}

/// Whether any SecretStore of `namespace` reads its credentials from the Secret `name`.
async fn credentials_of_a_store(ctx: &Context, namespace: &str, name: &str) -> Result<bool, Error> {
    let stores: Api<crate::crd::SecretStore> = Api::namespaced(ctx.client.clone(), namespace);
    let list = stores.list(&kube::api::ListParams::default()).await?;
    Ok(list.items.iter().any(|store| {
        store.spec.kms.auth.access_key.as_ref().is_some_and(|a| {
            a.secret_ref.name == name
                && a.secret_ref
                    .namespace
                    .as_deref()
                    .is_none_or(|n| n == namespace)
        })
    }))
}

/// The target is the store's own credentials Secret: never write it.
fn protected_secret(
    reference: &Option<CredentialsSecretRef>,
    credentials_namespace: &str,
    ms: &ManagedSecret,
) -> bool {
    reference.as_ref().is_some_and(|r| {
        r.name == ms.target_name() && credentials_namespace == ms.namespace().unwrap_or_default()
    })
}

async fn fetch_all(
    ms: &ManagedSecret,
    ctx: &Context,
    store: &ResolvedStore,
    source: &Arc<dyn crate::controller::source::SecretSource>,
    force: bool,
) -> Result<BTreeMap<VersionSelector, Arc<FetchedVersion>>, Error> {
    let mut fetched = BTreeMap::new();
    for selector in render::required_selectors(&ms.spec) {
        let key = FetchKey {
            store: store.key.clone(),
            secret_name: ms.spec.secret_name.clone(),
            selector: selector.clone(),
        };
        let (source, name, wanted) = (
            source.clone(),
            ms.spec.secret_name.clone(),
            selector.clone(),
        );
        let read = ctx
            .coalescer
            .get(key, force, move || {
                async move { source.get_secret_value(&name, &wanted).await.map(Arc::new) }.boxed()
            })
            .await;
        match read {
            Ok(version) => {
                fetched.insert(selector, version);
            }
            Err(error)
                if error.reason == "VersionNotFound"
                    && render::selector_is_optional(&ms.spec, &selector) => {}
            Err(error) => return Err(error.into()),
        }
    }
    Ok(fetched)
}

fn force_sync_value(ms: &ManagedSecret) -> Option<String> {
    ms.annotations().get(ANNOTATION_FORCE_SYNC).cloned()
}

fn force_sync_requested(ms: &ManagedSecret) -> bool {
    let asked = force_sync_value(ms);
    asked.is_some() && asked != ms.status.as_ref().and_then(|s| s.last_force_sync.clone())
}

fn success_status(
    ms: &ManagedSecret,
    mut status: ManagedSecretStatus,
    synced: &Synced,
    now: jiff::Timestamp,
) -> ManagedSecretStatus {
    status.observed_generation = ms.metadata.generation;
    let message = format!(
        "Secret {} holds version {} of KMS secret {}",
        ms.target_name(),
        synced.primary.version_id,
        ms.spec.secret_name
    );
    conditions::upsert(
        &mut status.conditions,
        conditions::condition(
            types::READY,
            true,
            "Synced",
            &message,
            ms.metadata.generation,
        ),
        now,
    );
    conditions::upsert(
        &mut status.conditions,
        conditions::condition(
            types::SYNCED,
            true,
            "Synced",
            message,
            ms.metadata.generation,
        ),
        now,
    );
    status.source = Some(SourceStatus {
        version_id: Some(synced.primary.version_id.clone()),
        version_stages: synced.primary.stages.clone(),
        create_time: synced.primary.create_time.clone(),
    });
    if synced.wrote.is_some() || status.last_sync_time.is_none() {
        status.last_sync_time = Some(now.to_string());
    }
    status.last_force_sync = force_sync_value(ms).or(status.last_force_sync);
    status
}

fn failure_status(
    ms: &ManagedSecret,
    mut status: ManagedSecretStatus,
    error: &Error,
    now: jiff::Timestamp,
) -> ManagedSecretStatus {
    status.observed_generation = ms.metadata.generation;
    let message = error.to_string();
    conditions::upsert(
        &mut status.conditions,
        conditions::condition(
            types::READY,
            false,
            error.reason(),
            &message,
            ms.metadata.generation,
        ),
        now,
    );
    conditions::upsert(
        &mut status.conditions,
        conditions::condition(
            types::SYNCED,
            false,
            error.reason(),
            message,
            ms.metadata.generation,
        ),
        now,
    );
    status
}

/// Writes the whole status when it differs from what was last written (quiet when nothing
/// changed). Every kmsync status write carries the full status: they share one field manager, so
/// a partial apply would drop the fields it leaves out.
pub(crate) async fn persist_status(
    ctx: &Context,
    ms: &ManagedSecret,
    status: &ManagedSecretStatus,
    persisted: &mut Option<ManagedSecretStatus>,
) -> Result<(), Error> {
    if persisted.as_ref() == Some(status) {
        return Ok(());
    }
    let api: Api<ManagedSecret> =
        Api::namespaced(ctx.client.clone(), &ms.namespace().unwrap_or_default());
    let patch =
        json!({"apiVersion": "kmsync.io/v1alpha1", "kind": "ManagedSecret", "status": status});
    api.patch_status(
        &ms.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    ctx.remember_status(&ms.uid().unwrap_or_default(), status);
    *persisted = Some(status.clone());
    Ok(())
}

/// Which of the cached status and our own last write is newer. Only kmsync writes this status
/// (one leader; a replica that loses its Lease exits), so a cached status that is behind ours in
/// generation or sync time is a lagging cache, never someone else's newer write.
fn newer_status(
    cached: Option<ManagedSecretStatus>,
    written: Option<ManagedSecretStatus>,
) -> Option<ManagedSecretStatus> {
    let Some(written) = written else {
        return cached;
    };
    let Some(cached) = cached else {
        return Some(written);
    };
    let sync_time = |s: &ManagedSecretStatus| {
        s.last_sync_time
            .as_deref()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
    };
    let behind = cached.observed_generation < written.observed_generation
        || (cached.observed_generation == written.observed_generation
            && sync_time(&cached) < sync_time(&written));
    Some(if behind { written } else { cached })
}

pub(crate) async fn publish(
    ctx: &Context,
    ms: &ManagedSecret,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.to_string(),
        note: Some(note),
        action: "Sync".into(),
        secondary: None,
    };
    if let Err(error) = ctx.recorder.publish(&event, &ms.object_ref(&())).await {
        tracing::warn!(%error, "cannot publish event");
    }
}

fn deletion_policy(ms: &ManagedSecret) -> DeletionPolicy {
    ms.spec
        .target
        .as_ref()
        .map(|t| t.deletion_policy)
        .unwrap_or_default()
}

/// Keeps the finalizer exactly when `deletionPolicy: Delete` needs it.
async fn ensure_finalizer(api: &Api<ManagedSecret>, ms: &ManagedSecret) -> Result<(), Error> {
    let has = ms.finalizers().iter().any(|f| f == FINALIZER);
    let wants = deletion_policy(ms) == DeletionPolicy::Delete;
    if has == wants {
        return Ok(());
    }
    let mut finalizers: Vec<String> = ms
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    if wants {
        finalizers.push(FINALIZER.into());
    }
    let patch =
        json!({"metadata": {"finalizers": finalizers, "resourceVersion": ms.resource_version()}});
    api.patch(
        &ms.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

/// On deletion with `deletionPolicy: Delete`: remove our Secret (or only our keys under Merge),
/// then release the finalizer. A Secret that is not ours is never touched.
async fn finalize(
    api: &Api<ManagedSecret>,
    ms: &ManagedSecret,
    ctx: &Context,
) -> Result<Action, Error> {
    if !ms.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(Action::await_change());
    }
    let secrets: Api<Secret> =
        Api::namespaced(ctx.client.clone(), &ms.namespace().unwrap_or_default());
    if let Some(secret) = secrets.get_opt(&ms.target_name()).await? {
        let ours = secret.annotations().get(target::ANNOTATION_OWNER) == Some(&ms.name_any());
        let merge = ms
            .spec
            .target
            .as_ref()
            .is_some_and(|t| t.creation_policy == CreationPolicy::Merge);
        if ours && merge {
            // Applying an empty object with our field manager drops every field we own.
            let patch = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": ms.target_name()}});
            secrets
                .patch(
                    &ms.target_name(),
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(&patch),
                )
                .await?;
        } else if ours {
            let preconditions = Preconditions {
                uid: secret.uid(),
                resource_version: None,
            };
            secrets
                .delete(
                    &ms.target_name(),
                    &DeleteParams {
                        preconditions: Some(preconditions),
                        ..Default::default()
                    },
                )
                .await?;
        }
        publish(
            ctx,
            ms,
            EventType::Normal,
            "Deleted",
            format!(
                "Secret {} removed (deletionPolicy Delete)",
                ms.target_name()
            ),
        )
        .await;
    }
    let finalizers: Vec<String> = ms
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    let patch =
        json!({"metadata": {"finalizers": finalizers, "resourceVersion": ms.resource_version()}});
    api.patch(
        &ms.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(generation: i64, synced: &str) -> ManagedSecretStatus {
        ManagedSecretStatus {
            observed_generation: Some(generation),
            last_sync_time: Some(synced.to_string()),
            ..ManagedSecretStatus::default()
        }
    }

    #[test]
    fn our_last_write_wins_only_over_a_cache_that_is_behind_it() {
        let ours = status(2, "2026-11-22T10:00:05Z");
        assert_eq!(newer_status(None, Some(ours.clone())), Some(ours.clone()));
        assert_eq!(
            newer_status(Some(status(1, "2026-11-22T10:00:09Z")), Some(ours.clone())),
            Some(ours.clone()),
            "an older generation in the cache"
        );
        assert_eq!(
            newer_status(Some(status(2, "2026-11-22T10:00:01Z")), Some(ours.clone())),
            Some(ours.clone()),
            "an older sync in the cache"
        );
        let caught_up = status(2, "2026-11-22T10:00:05Z");
        assert_eq!(
            newer_status(Some(caught_up.clone()), Some(ours.clone())),
            Some(caught_up)
        );
        let later = status(3, "2026-11-22T10:00:00Z");
        assert_eq!(
            newer_status(Some(later.clone()), Some(ours)),
            Some(later),
            "a newer generation in the cache"
        );
        let cached = status(1, "2026-11-22T10:00:00Z");
        assert_eq!(newer_status(Some(cached.clone()), None), Some(cached));
        assert_eq!(newer_status(None, None), None);
    }
}
