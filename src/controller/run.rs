//! Wiring of `kmsync run`: the ManagedSecret controller (watching our Secrets by label and metadata
//! only, and the stores), the store checks, the admin server and graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};

use crate::admin::{self, Health};
use crate::controller::kms_source::{KmsSourceFactory, KmsSourceSettings};
use crate::controller::reconcile::{self, Context, Settings};
use crate::controller::store_check;
use crate::controller::target::{ANNOTATION_OWNER, LABEL_MANAGED};
use crate::controller::watch_backoff::{NoBackoff, watch_backoff};
use crate::crd::managed_secret::StoreKind;
use crate::crd::{ClusterSecretStore, ManagedSecret, SecretStore};
use crate::metrics::Metrics;

/// Options of `kmsync run`.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Watch only these namespaces; empty: the whole cluster.
    pub namespaces: Vec<String>,
    pub concurrency: u16,
    pub admin_addr: SocketAddr,
    pub settings: Settings,
    pub kms: KmsSourceSettings,
    /// Event reporter instance (the pod name).
    pub instance: Option<String>,
    /// Leader election; `None` runs as the only replica.
    pub leader: Option<crate::lease::LeaseConfig>,
}

fn api<K>(client: &Client, scope: &Option<String>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match scope {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Runs until SIGTERM/SIGINT. Errors only when start-up fails.
pub async fn run(
    client: Client,
    options: RunOptions,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let metrics = Arc::new(Metrics::default());
    let health = Arc::new(Health::default());
    let bound = admin::serve(
        options.admin_addr,
        admin::router(health.clone(), metrics.clone()),
    )
    .await?;
    tracing::info!(admin = %bound, namespaces = ?options.namespaces, "kmsync starting");

    let mut held_since = None;
    if let Some(lease) = &options.leader {
        // A standby is healthy and ready; it only waits.
        health.set_ready(true);
        tokio::select! {
            acquired = crate::lease::acquire(&client, lease) => {
                held_since = Some(acquired);
                health.set_ready(false);
            }
            _ = shutdown_signal() => return Ok(()),
        }
    }
    let controllers = run_controllers(client.clone(), &options, health, metrics);
    match (&options.leader, held_since) {
        (Some(lease), Some(held_since)) => {
            tokio::select! {
                _ = controllers => crate::lease::release(&client, lease).await,
                _ = crate::lease::keep(&client, lease, held_since) => {
                    return Err("leadership lost; stopping so that two replicas never write".into());
                }
            }
        }
        _ => controllers.await,
    }
    tracing::info!("kmsync stopped");
    Ok(())
}

/// Runs the controllers until shutdown.
async fn run_controllers(
    client: Client,
    options: &RunOptions,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
) {
    let reporter = Reporter {
        controller: "kmsync".into(),
        instance: options.instance.clone(),
    };
    let ctx = Arc::new(Context::new(
        client.clone(),
        Recorder::new(client.clone(), reporter),
        Arc::new(KmsSourceFactory::new(options.kms.clone(), metrics.clone())),
        options.settings.clone(),
        metrics.clone(),
    ));
    // One controller per watched namespace (or one for the cluster), sharing the context so
    // clients, read coalescing and backoff are common.
    let scopes: Vec<Option<String>> = if options.namespaces.is_empty() {
        vec![None]
    } else {
        options.namespaces.iter().cloned().map(Some).collect()
    };
    let mut running: Vec<BoxFuture<'static, ()>> = Vec::new();
    let mut caches = Vec::new();
    for scope in &scopes {
        let (managed, cache) =
            managed_secret_controller(&client, scope, options.concurrency, ctx.clone());
        running.push(managed);
        caches.push(cache);
        running.push(
            Controller::new(
                api::<SecretStore>(&client, scope),
                watcher::Config::default(),
            )
            .trigger_backoff(watch_backoff())
            .graceful_shutdown_on(shutdown_signal())
            .run(
                store_check::reconcile_secret_store,
                store_check::error_policy,
                ctx.clone(),
            )
            .for_each(|_| async {})
            .boxed(),
        );
    }
    running.push(
        Controller::new(
            Api::<ClusterSecretStore>::all(client.clone()),
            watcher::Config::default(),
        )
        .trigger_backoff(watch_backoff())
        .graceful_shutdown_on(shutdown_signal())
        .run(
            store_check::reconcile_cluster_store,
            store_check::error_policy,
            ctx.clone(),
        )
        .for_each(|_| async {})
        .boxed(),
    );
    // Per-object series leave with their object (deleted ManagedSecrets are never reconciled).
    let pruned_caches = caches.clone();
    let pruned_ctx = ctx.clone();
    let prune = async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            every.tick().await;
            metrics.retain_objects(|object| {
                let key = ObjectRef::new(&object.name).within(&object.namespace);
                pruned_caches.iter().any(|cache| cache.get(&key).is_some())
            });
            let live: std::collections::HashSet<String> = pruned_caches
                .iter()
                .flat_map(|cache| cache.state())
                .filter_map(|ms| ms.metadata.uid.clone())
                .collect();
            pruned_ctx.retain_written(|uid| live.contains(uid));
        }
    };
    let readiness = async move {
        let synced = futures::future::join_all(caches.iter().map(|c| c.wait_until_ready())).await;
        if synced.iter().all(Result::is_ok) {
            health.set_ready(true);
            tracing::info!("caches synced; ready");
        }
        futures::future::pending::<()>().await
    };
    // Readiness and pruning never finish; the controllers end on shutdown and so does this.
    tokio::select! {
        _ = futures::future::join_all(running) => {},
        _ = futures::future::join(readiness, prune) => {},
    }
}

/// The ManagedSecret controller of one scope: triggered by ManagedSecrets, by our labelled Secrets
/// (metadata only, so memory follows managed Secrets rather than every Secret) and by stores.
fn managed_secret_controller(
    client: &Client,
    scope: &Option<String>,
    concurrency: u16,
    ctx: Arc<Context>,
) -> (
    BoxFuture<'static, ()>,
    kube::runtime::reflector::Store<ManagedSecret>,
) {
    // Every watch backs off on its own, briefly (see `watch_backoff`): with the controller's one
    // shared backoff, each watch's error after an apiserver restart paused all of them.
    let (cache, writer) = kube::runtime::reflector::store();
    let managed = watcher(
        api::<ManagedSecret>(client, scope),
        watcher::Config::default().any_semantic(),
    )
    .backoff(watch_backoff())
    .reflect(writer)
    .applied_objects();
    let controller = Controller::for_stream(managed, cache.clone())
        .with_config(ControllerConfig::default().concurrency(concurrency))
        .trigger_backoff(NoBackoff);
    let secrets = watcher(
        api::<PartialObjectMeta<Secret>>(client, scope),
        watcher::Config::default().labels(&format!("{LABEL_MANAGED}=true")),
    )
    .backoff(watch_backoff())
    .touched_objects();
    let stores = watcher(
        api::<SecretStore>(client, scope),
        watcher::Config::default(),
    )
    .backoff(watch_backoff())
    .touched_objects();
    let cluster_stores = watcher(
        Api::<ClusterSecretStore>::all(client.clone()),
        watcher::Config::default(),
    )
    .backoff(watch_backoff())
    .touched_objects();
    let (by_store, by_cluster_store) = (cache.clone(), cache.clone());
    let running = controller
        .watches_stream(secrets, |secret| {
            let owner = secret.annotations().get(ANNOTATION_OWNER).cloned();
            owner.map(|name| ObjectRef::new(&name).within(&secret.namespace().unwrap_or_default()))
        })
        .watches_stream(stores, move |store| {
            let namespace = store.namespace();
            readers(
                &by_store,
                StoreKind::SecretStore,
                &store.name_any(),
                namespace.as_deref(),
            )
        })
        .watches_stream(cluster_stores, move |store| {
            readers(
                &by_cluster_store,
                StoreKind::ClusterSecretStore,
                &store.name_any(),
                None,
            )
        })
        .graceful_shutdown_on(shutdown_signal())
        .run(reconcile::reconcile, reconcile::error_policy, ctx)
        .for_each(|_| async {})
        .boxed();
    (running, cache)
}

/// ManagedSecrets that read through the named store.
fn readers(
    cache: &kube::runtime::reflector::Store<ManagedSecret>,
    kind: StoreKind,
    name: &str,
    namespace: Option<&str>,
) -> Vec<ObjectRef<ManagedSecret>> {
    cache
        .state()
        .iter()
        .filter(|ms| ms.spec.store_ref.kind == kind && ms.spec.store_ref.name == name)
        .filter(|ms| namespace.is_none() || ms.namespace().as_deref() == namespace)
        .map(|ms| ObjectRef::from_obj(ms.as_ref()))
        .collect()
}

async fn shutdown_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = terminate.recv() => {},
    }
}

/// Command-line flags of `kmsync run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Watch only these namespaces (repeat the flag or separate with commas; default: the whole
    /// cluster).
    #[arg(long = "namespace", env = "KMSYNC_NAMESPACES", value_delimiter = ',')]
    pub namespaces: Vec<String>,
    /// ManagedSecrets reconciled at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: u16,
    /// Address of /live, /ready and /metrics.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub admin_addr: SocketAddr,
    /// First retry delay after a failed sync, in milliseconds (doubles up to --backoff-max-ms).
    #[arg(long, default_value_t = 5_000)]
    pub backoff_base_ms: u64,
    #[arg(long, default_value_t = 300_000)]
    pub backoff_max_ms: u64,
    /// Rotations in flight at once across all ManagedSecrets.
    #[arg(long, default_value_t = 4)]
    pub max_concurrent_rotations: usize,
    /// STS endpoint for RRSA and AssumeRole (default: derived from the store).
    #[arg(long, env = "KMSYNC_STS_ENDPOINT")]
    pub sts_endpoint: Option<String>,
    /// Hosts a store's endpoint may name, comma-separated: exact names, `*.domain` for any host
    /// below a domain, `loopback` (localhost, 127.0.0.0/8, ::1), or `*` for any. A store pointing
    /// elsewhere is refused with EndpointNotAllowed before any request is sent.
    #[arg(long, env = "KMSYNC_ALLOWED_ENDPOINT_HOSTS", default_value = crate::controller::endpoint_policy::DEFAULT_ALLOWED_HOSTS)]
    pub allowed_endpoint_hosts: String,
    /// Hosts a rotation's webhook URL or PostgreSQL host may name, in the same syntax as
    /// --allowed-endpoint-hosts. Instance metadata addresses (169.254.0.0/16, fe80::/10,
    /// 100.100.100.200) are refused whatever the list says. Anything else is BackendNotAllowed
    /// before a single packet.
    #[arg(long, env = "KMSYNC_ALLOWED_BACKEND_HOSTS", default_value = crate::controller::endpoint_policy::DEFAULT_BACKEND_HOSTS)]
    pub allowed_backend_hosts: String,
    /// Let namespaced SecretStores use the operator's own identity (the default credential chain,
    /// the ECS RAM role, RRSA without serviceAccountRef, and AssumeRole on top of these). Off: only
    /// ClusterSecretStores may, and such a SecretStore is OperatorIdentityNotAllowed. For
    /// single-tenant clusters.
    #[arg(long, env = "KMSYNC_ALLOW_NAMESPACED_OPERATOR_IDENTITY")]
    pub allow_namespaced_operator_identity: bool,
    /// Timeout of one KMS or STS request attempt, in seconds; a slower answer counts as a failed
    /// attempt (retried within the client's retry policy, then `KmsUnavailable`).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub kms_timeout_secs: u64,
    /// ECS metadata service base URL (default http://100.100.100.200).
    #[arg(long, env = "KMSYNC_METADATA_BASE", hide = true)]
    pub metadata_base: Option<String>,
    /// Event reporter instance and leader identity, normally the pod name.
    #[arg(long, env = "POD_NAME")]
    pub instance: Option<String>,
    /// Elect a leader among replicas through a Lease; only the leader reconciles.
    #[arg(long)]
    pub leader_elect: bool,
    /// Name of the leader Lease.
    #[arg(long, default_value = "kmsync")]
    pub lease_name: String,
    /// Namespace of the leader Lease (normally the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// Seconds a leader Lease stays valid without renewal: how long standbys wait before taking
    /// over from a leader that died without releasing it. Must exceed --lease-renew-deadline-secs.
    #[arg(long, default_value_t = 15)]
    pub lease_duration_secs: u64,
    /// Seconds the leader keeps failing to renew before it stops (so it stops writing before a
    /// standby may take over). Must exceed --lease-retry-period-secs.
    #[arg(long, default_value_t = 10)]
    pub lease_renew_deadline_secs: u64,
    /// Seconds between attempts to acquire or renew the leader Lease (at least 1).
    #[arg(long, default_value_t = 2)]
    pub lease_retry_period_secs: u64,
}

impl RunArgs {
    /// The leader election timing, checked so that a leader stops before its Lease expires.
    fn lease_timing(&self) -> Result<[std::time::Duration; 3], String> {
        let (duration, deadline, retry) = (
            self.lease_duration_secs,
            self.lease_renew_deadline_secs,
            self.lease_retry_period_secs,
        );
        if !(retry >= 1 && deadline > retry && duration > deadline && duration <= i32::MAX as u64) {
            return Err(format!(
                "lease timing needs --lease-duration-secs ({duration}) > --lease-renew-deadline-secs \
                 ({deadline}) > --lease-retry-period-secs ({retry}) >= 1"
            ));
        }
        Ok([duration, deadline, retry].map(std::time::Duration::from_secs))
    }

    pub fn options(&self) -> Result<RunOptions, String> {
        let [lease_duration, renew_deadline, retry_period] = self.lease_timing()?;
        let sts_endpoint = self
            .sts_endpoint
            .as_deref()
            .map(crate::kms::Endpoint::parse)
            .transpose()
            .map_err(|e| format!("--sts-endpoint: {e}"))?;
        Ok(RunOptions {
            namespaces: self
                .namespaces
                .iter()
                .filter(|n| !n.is_empty())
                .cloned()
                .collect(),
            concurrency: self.concurrency.max(1),
            admin_addr: self.admin_addr,
            settings: Settings {
                backoff_base: std::time::Duration::from_millis(self.backoff_base_ms.max(1)),
                backoff_max: std::time::Duration::from_millis(
                    self.backoff_max_ms.max(self.backoff_base_ms),
                ),
                max_concurrent_rotations: self.max_concurrent_rotations.max(1),
                backend_policy: crate::controller::endpoint_policy::EndpointPolicy::parse(
                    &self.allowed_backend_hosts,
                )
                .map_err(|e| format!("--allowed-backend-hosts: {e}"))?,
            },
            kms: KmsSourceSettings {
                sts_endpoint,
                metadata_base: self.metadata_base.clone(),
                endpoint_policy: crate::controller::endpoint_policy::EndpointPolicy::parse(
                    &self.allowed_endpoint_hosts,
                )
                .map_err(|e| format!("--allowed-endpoint-hosts: {e}"))?,
                request_timeout: Some(std::time::Duration::from_secs(self.kms_timeout_secs)),
                allow_namespaced_operator_identity: self.allow_namespaced_operator_identity,
            },
            instance: self.instance.clone(),
            leader: self.leader_elect.then(|| {
                let identity = self.instance.clone().unwrap_or_else(|| {
                    format!(
                        "kmsync-{}-{}",
                        std::process::id(),
                        &uuid::Uuid::new_v4().simple().to_string()[..8]
                    )
                });
                crate::lease::LeaseConfig {
                    lease_duration,
                    renew_deadline,
                    retry_period,
                    ..crate::lease::LeaseConfig::new(
                        &self.lease_namespace,
                        &self.lease_name,
                        identity,
                    )
                }
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::RunArgs;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    fn options(args: &[&str]) -> Result<super::RunOptions, String> {
        let mut argv = vec!["kmsync", "--leader-elect", "--instance", "a"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).unwrap().run.options()
    }

    #[test]
    fn lease_timing_defaults_and_flags() {
        let lease = options(&[]).unwrap().leader.unwrap();
        assert_eq!(lease.lease_duration.as_secs(), 15);
        assert_eq!(lease.renew_deadline.as_secs(), 10);
        assert_eq!(lease.retry_period.as_secs(), 2);
        let short = [
            "--lease-duration-secs=4",
            "--lease-renew-deadline-secs=3",
            "--lease-retry-period-secs=1",
        ];
        let lease = options(&short).unwrap().leader.unwrap();
        assert_eq!(
            [
                lease.lease_duration,
                lease.renew_deadline,
                lease.retry_period
            ]
            .map(|d| d.as_secs()),
            [4, 3, 1]
        );
    }

    #[test]
    fn a_leader_must_stop_before_its_lease_expires() {
        let error =
            options(&["--lease-duration-secs=5", "--lease-renew-deadline-secs=5"]).unwrap_err();
        assert!(
            error.contains("--lease-duration-secs (5) > --lease-renew-deadline-secs (5)"),
            "{error}"
        );
        assert!(options(&["--lease-retry-period-secs=0"]).is_err());
        assert!(
            options(&["--lease-renew-deadline-secs=2"]).is_err(),
            "retry period 2 is not less"
        );
    }

    fn timeout(args: &[&str]) -> Result<Option<std::time::Duration>, clap::Error> {
        let cli = Cli::try_parse_from(std::iter::once("kmsync").chain(args.iter().copied()))?;
        Ok(cli.run.options().expect("options").kms.request_timeout)
    }

    #[test]
    fn the_kms_timeout_defaults_to_the_clients_30_s_and_is_bounded() {
        let secs = std::time::Duration::from_secs;
        assert_eq!(timeout(&[]).unwrap(), Some(secs(30)));
        assert_eq!(
            timeout(&["--kms-timeout-secs", "2"]).unwrap(),
            Some(secs(2))
        );
        assert_eq!(
            crate::kms::transport::HttpOptions::default().request_timeout,
            secs(30),
            "the default does not change behaviour"
        );
        assert!(timeout(&["--kms-timeout-secs", "0"]).is_err());
        assert!(timeout(&["--kms-timeout-secs", "601"]).is_err());
    }
}
