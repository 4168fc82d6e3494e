//! kmsync as users run it: installed with `helm install`, running as a pod on a real node
//! (`scripts/node.sh`: kubelet + containerd, kube-controller-manager, kube-scheduler), with an
//! application Deployment that mounts the Secret it writes and logs in to PostgreSQL with it.
//! The real garbage collector judges the owner references, the real Deployment controller turns
//! `rolloutRestart` into rollouts. One test, in phases, because the phases share the cluster-wide
//! install (CRDs, ClusterRole) and the last one deletes the CRDs.
//!
//! Run by `make node-test` (part of `make test`): `scripts/node.sh run --images cargo test …`.
#![cfg(feature = "integration")]

mod support;

use std::collections::BTreeSet;
use std::path::PathBuf;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret};
use kmsync::crd::ManagedSecret;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use sha2::Digest as _;
use support::helm::{Helm, chart};
use support::rotation::{annotate, pg_env, postgres_rotation_start, rotation_condition};
use support::sync::{SyncEnv, wait_for};
use support::{describe, kubectl};

const RELEASE: &str = "kmsync";
const KMSYNC_IMAGE: &str = "kmsync.local/kmsync";
const APP_IMAGE: &str = "kmsync.local/app:dev";
const NONROOT_UID: u32 = 65532;

/// What `scripts/node.sh` exported about its nodes (two: 127.0.0.1 and 127.0.0.2).
struct Node {
    names: Vec<String>,
    pod_logs: Vec<PathBuf>,
    containerd_socks: Vec<String>,
    api_port: String,
}

impl Node {
    fn from_env() -> Self {
        let var = |name: &str| {
            std::env::var(name).unwrap_or_else(|_| {
                panic!("{name} is not set: run through `make node-test` (scripts/node.sh run …)")
            })
        };
        let list = |name: &str| var(name).split(':').map(String::from).collect::<Vec<_>>();
        let api_url = var("CP_API_URL");
        let node = Self {
            names: list("KMSYNC_NODE_NAMES"),
            pod_logs: list("KMSYNC_NODE_POD_LOGS")
                .into_iter()
                .map(PathBuf::from)
                .collect(),
            containerd_socks: list("KMSYNC_CONTAINERD_SOCKS"),
            api_port: api_url.rsplit(':').next().expect("port").to_string(),
        };
        assert_eq!(
            node.names.len(),
            2,
            "two nodes (KMSYNC_NODES=2) for the two operator replicas"
        );
        node
    }

    /// Lines a container of the namespace's pods wrote on any node, read from the kubelets' pod
    /// log directories (never through the apiserver, which would have to dial a kubelet).
    fn log_lines(&self, namespace: &str, container: &str) -> Vec<String> {
        let mut lines = Vec::new();
        for dir in &self.pod_logs {
            let Ok(pods) = std::fs::read_dir(dir) else {
                continue;
            };
            for pod in pods.flatten() {
                if !pod
                    .file_name()
                    .to_string_lossy()
                    .starts_with(&format!("{namespace}_"))
                {
                    continue;
                }
                let Ok(files) = std::fs::read_dir(pod.path().join(container)) else {
                    continue;
                };
                for file in files.flatten() {
                    let text = std::fs::read_to_string(file.path()).unwrap_or_default();
                    // CRI format: "<time> <stream> <P|F> <message>".
                    lines.extend(
                        text.lines()
                            .filter_map(|l| Some(l.splitn(4, ' ').nth(3)?.to_string())),
                    );
                }
            }
        }
        lines
    }

    /// The host PID of a container, from the task lists of the nodes' containerd.
    fn container_pid(&self, container_id: &str) -> u32 {
        self.containerd_socks
            .iter()
            .find_map(|sock| {
                let output = std::process::Command::new("ctr")
                    .args(["-a", sock, "-n", "k8s.io", "tasks", "ls"])
                    .output()
                    .expect("ctr tasks ls");
                String::from_utf8_lossy(&output.stdout)
                    .lines()
                    .find_map(|l| {
                        let mut fields = l.split_whitespace();
                        (fields.next()? == container_id).then(|| fields.next()?.parse().ok())?
                    })
            })
            .unwrap_or_else(|| panic!("no task for container {container_id}"))
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn sha(text: &str) -> String {
    hex::encode(sha2::Sha256::digest(text.as_bytes()))[..16].to_string()
}

/// Values that make the chart run on these nodes, each as `[flag, value]`: the imported image;
/// the admin server on the pod's address (the node's 127.0.0.x: pods share the machine's network
/// namespace here, see scripts/node.sh) so two replicas fit; the apiserver given as 127.0.0.1
/// explicitly instead of the ClusterIP. Nothing else differs from the defaults.
fn node_values(node: &Node, admin_port: u16) -> Vec<[String; 2]> {
    let port = &node.api_port;
    vec![
        ["--set".into(), format!("image.repository={KMSYNC_IMAGE}")],
        ["--set".into(), "image.tag=dev".into()],
        ["--set".into(), "image.pullPolicy=Never".into()],
        ["--set".into(), "replicaCount=2".into()],
        // One replica per node: both share the node's network namespace on one machine.
        [
            "--set-json".into(),
            r#"affinity={"podAntiAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":[{"labelSelector":{"matchLabels":{"app.kubernetes.io/name":"kmsync"}},"topologyKey":"kubernetes.io/hostname"}]}}"#.into(),
        ],
        ["--set".into(), "adminBindAddress=$(POD_IP)".into()],
        ["--set".into(), format!("adminPort={admin_port}")],
        [
            "--set".into(),
            "leaderElection.leaseDurationSeconds=6".into(),
        ],
        [
            "--set".into(),
            "leaderElection.renewDeadlineSeconds=4".into(),
        ],
        ["--set".into(), "leaderElection.retryPeriodSeconds=1".into()],
        [
            "--set".into(),
            "operator.logLevel=info\\,kmsync=debug".into(),
        ],
        [
            "--set".into(),
            "operator.extraEnv[0].name=KUBERNETES_SERVICE_HOST".into(),
        ],
        [
            "--set".into(),
            "operator.extraEnv[0].value=127.0.0.1".into(),
        ],
        [
            "--set".into(),
            "operator.extraEnv[1].name=KUBERNETES_SERVICE_PORT".into(),
        ],
        // A string, not the number helm would make of it (env values are strings).
        [
            "--set-string".into(),
            format!("operator.extraEnv[1].value={port}"),
        ],
    ]
}

async fn label_namespace(client: &kube::Client, name: &str, labels: Value) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let patch = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}});
    namespaces
        .patch(
            name,
            &PatchParams::apply("kmsync-test").force(),
            &Patch::Apply(&patch),
        )
        .await
        .expect("label namespace");
}

/// PodSecurity "restricted" is live in the release namespace: the installed operator pods were
/// admitted there, and the same pod with host networking is refused (dry run).
async fn pod_security_is_enforced(client: &kube::Client, namespace: &str) {
    let deployment = Api::<Deployment>::namespaced(client.clone(), namespace)
        .get(RELEASE)
        .await
        .expect("installed Deployment");
    let mut spec =
        serde_json::to_value(deployment.spec.expect("spec").template.spec).expect("pod spec");
    spec["hostNetwork"] = json!(true);
    let pod: Pod = serde_json::from_value(
        json!({"metadata": {"name": "kmsync-host-network-check"}, "spec": spec}),
    )
    .unwrap();
    let dry_run = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let refused = Api::<Pod>::namespaced(client.clone(), namespace)
        .create(&dry_run, &pod)
        .await
        .expect_err("restricted refuses host networking");
    assert!(refused.to_string().contains("hostNetwork"), "{refused}");
}

/// Pods matching `selector` that are Ready and not being deleted, except those in `not`.
async fn ready_pods(
    client: &kube::Client,
    namespace: &str,
    selector: &str,
    not: &BTreeSet<String>,
) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let Ok(list) = pods.list(&ListParams::default().labels(selector)).await else {
        return Vec::new();
    };
    list.items
        .into_iter()
        .filter(|p| {
            p.metadata.deletion_timestamp.is_none()
                && !not.contains(p.metadata.uid.as_deref().unwrap_or_default())
                && p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .collect()
}

async fn wait_pod_ready(
    client: &kube::Client,
    namespace: &str,
    selector: &str,
    not: &BTreeSet<String>,
) -> Pod {
    wait_pods_ready(client, namespace, selector, not, 1)
        .await
        .remove(0)
}

async fn wait_pods_ready(
    client: &kube::Client,
    namespace: &str,
    selector: &str,
    not: &BTreeSet<String>,
    count: usize,
) -> Vec<Pod> {
    wait_for(
        &format!("{count} Ready pod(s) {selector} in {namespace}"),
        180,
        || async {
            let pods = ready_pods(client, namespace, selector, not).await;
            (pods.len() >= count).then_some(pods)
        },
    )
    .await
}

/// The operator's container runs as the non-root user on a read-only root filesystem: asked of
/// the kernel (the process' uid and its root mount), not of the pod spec.
fn assert_runs_restricted(node: &Node, pod: &Pod) {
    let status = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .expect("statuses");
    let kmsync = status
        .iter()
        .find(|c| c.name == "kmsync")
        .expect("container kmsync");
    let id = kmsync
        .container_id
        .as_deref()
        .expect("container id")
        .trim_start_matches("containerd://");
    let pid = node.container_pid(id);
    let proc_status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let uid_line = proc_status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .expect("Uid line");
    assert!(
        uid_line
            .split_whitespace()
            .skip(1)
            .all(|u| u == NONROOT_UID.to_string()),
        "{uid_line}"
    );
    let mounts = std::fs::read_to_string(format!("/proc/{pid}/mounts")).expect("proc mounts");
    let root = mounts
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("/"))
        .expect("root mount");
    let options = root.split_whitespace().nth(3).unwrap_or_default();
    assert!(
        options.split(',').any(|o| o == "ro"),
        "root filesystem is not read-only: {root}"
    );
}

const OPERATOR_PODS: &str = "app.kubernetes.io/name=kmsync";

/// `helm install` of the chart with two replicas; waits for both operator pods to become Ready
/// through their probes, one on each node.
async fn install_operator(
    client: &kube::Client,
    helm: &Helm,
    node: &Node,
    namespace: &str,
) -> Vec<Pod> {
    let admin_port = free_port();
    let mut args = vec![
        "install".to_string(),
        RELEASE.into(),
        chart(),
        "--namespace".into(),
        namespace.into(),
    ];
    for [flag, value] in node_values(node, admin_port) {
        args.extend([flag, value]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = helm.ok(&args);
    assert!(out.contains("STATUS: deployed"), "{out}");
    let pods = wait_pods_ready(client, namespace, OPERATOR_PODS, &BTreeSet::new(), 2).await;
    let nodes: BTreeSet<_> = pods
        .iter()
        .filter_map(|p| p.spec.as_ref()?.node_name.clone())
        .collect();
    assert_eq!(nodes.len(), 2, "one replica per node");
    for pod in &pods {
        assert_runs_restricted(node, pod);
        println!(
            "operator pod {} Ready on node {} through its readiness probe, as uid {NONROOT_UID} on a read-only root filesystem, service account {}",
            pod.metadata.name.as_deref().unwrap_or_default(),
            pod.spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .unwrap_or_default(),
            pod.spec
                .as_ref()
                .and_then(|s| s.service_account_name.as_deref())
                .unwrap_or_default()
        );
    }
    pods
}

/// The pod holding the operator's Lease.
async fn leader(client: &kube::Client, namespace: &str) -> String {
    let leases: Api<Lease> = Api::namespaced(client.clone(), namespace);
    wait_for("a leader", 60, || async {
        leases
            .get_opt("kmsync")
            .await
            .ok()??
            .spec?
            .holder_identity
            .filter(|h| !h.is_empty())
    })
    .await
}

/// Calls that change KMS (what must never happen twice).
fn kms_writes(env: &SyncEnv) -> u64 {
    ["PutSecretValue", "UpdateSecretVersionStage", "CreateSecret"]
        .iter()
        .map(|a| env.calls(a))
        .sum()
}

/// The application: one container logs in to PostgreSQL with the password file it mounts each
/// time the file changes and logs a short digest of what it used; one reads the user name
/// through `env`. PostgreSQL is on 127.0.0.1, which the node's pods reach.
fn app_deployment(role: &str, secret: &str) -> Deployment {
    let (_, port, _, _) = pg_env();
    let script = r#"last=""
while true; do
  cur="$(cat /etc/app/password)"
  if [ "$cur" != "$last" ]; then
    sum="$(printf %s "$cur" | sha256sum | cut -c1-16)"
    if PGPASSWORD="$cur" psql -X -q -t -c "select 1" >/dev/null 2>&1; then
      echo "login ok sha=$sum"
    else
      echo "login failed sha=$sum"
    fi
    last="$cur"
  fi
  sleep 1
done"#;
    let security = json!({"runAsNonRoot": true, "runAsUser": NONROOT_UID, "allowPrivilegeEscalation": false,
        "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]}});
    serde_json::from_value(json!({
        "metadata": {"name": "app"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "app"}},
            "template": {"metadata": {"labels": {"app": "app"}}, "spec": {
                "automountServiceAccountToken": false, "terminationGracePeriodSeconds": 1,
                "containers": [
                    {"name": "reader", "image": APP_IMAGE, "imagePullPolicy": "Never", "args": ["-c", script],
                     "env": [{"name": "PGHOST", "value": "127.0.0.1"}, {"name": "PGPORT", "value": port.to_string()},
                             {"name": "PGUSER", "value": role}, {"name": "PGDATABASE", "value": "postgres"},
                             {"name": "PGCONNECT_TIMEOUT", "value": "5"}, {"name": "PGGSSENCMODE", "value": "disable"},
                             {"name": "HOME", "value": "/tmp"}],
                     "volumeMounts": [{"name": "cred", "mountPath": "/etc/app", "readOnly": true}],
                     "securityContext": security},
                    {"name": "env-reader", "image": APP_IMAGE, "imagePullPolicy": "Never",
                     "args": ["-c", "echo \"env user=$DB_USER\"; exec sleep 100000"],
                     "env": [{"name": "DB_USER", "valueFrom": {"secretKeyRef": {"name": secret, "key": "username"}}}],
                     "securityContext": security}],
                "volumes": [{"name": "cred", "secret": {"secretName": secret}}]}}}
    }))
    .unwrap()
}

async fn replica_sets(client: &kube::Client, namespace: &str) -> usize {
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), namespace);
    sets.list(&ListParams::default().labels("app=app"))
        .await
        .expect("list ReplicaSets")
        .items
        .len()
}

async fn pod_uids(client: &kube::Client, namespace: &str) -> BTreeSet<String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    pods.list(&ListParams::default().labels("app=app"))
        .await
        .expect("list pods")
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| p.metadata.uid)
        .collect()
}

async fn wait_login(node: &Node, namespace: &str, password: &str) {
    let wanted = format!("login ok sha={}", sha(password));
    wait_for(
        &format!("the application to log in ({wanted})"),
        120,
        || async {
            node.log_lines(namespace, "reader")
                .contains(&wanted)
                .then_some(())
        },
    )
    .await;
}

/// Deletes the leader pod; another replica takes the Lease (the standby, or the Deployment's
/// replacement pod when it is quicker). Returns the new leader's name.
async fn fail_over(client: &kube::Client, namespace: &str) -> String {
    let old = leader(client, namespace).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let started = std::time::Instant::now();
    pods.delete(&old, &DeleteParams::default())
        .await
        .expect("delete the leader pod");
    let new = wait_for("another replica to take the Lease", 120, || async {
        let holder = leader(client, namespace).await;
        (holder != old).then_some(holder)
    })
    .await;
    println!(
        "failover: leader pod {old} deleted, {new} took the Lease after {:.1}s",
        started.elapsed().as_secs_f64()
    );
    new
}

/// A ConfigMap owned by the ManagedSecret `owner`: when the garbage collector has deleted it,
/// the collector has processed the owner's deletion, so a Secret still there was kept on purpose.
async fn canary_owned_by(env: &SyncEnv, owner: &str) -> String {
    let ms = env.managed_secrets().get(owner).await.expect("owner");
    let name = format!("canary-{owner}");
    let configmaps: Api<ConfigMap> = Api::namespaced(env.client.clone(), &env.namespace);
    configmaps
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": name,
            "ownerReferences": [{"apiVersion": "kmsync.io/v1alpha1", "kind": "ManagedSecret",
                "name": owner, "uid": ms.metadata.uid}]}}))
            .unwrap(),
        )
        .await
        .expect("create canary");
    name
}

async fn wait_gone_configmap(env: &SyncEnv, name: &str) {
    let configmaps: Api<ConfigMap> = Api::namespaced(env.client.clone(), &env.namespace);
    wait_for(
        &format!("the garbage collector to delete ConfigMap {name}"),
        120,
        || async { configmaps.get_opt(name).await.ok()?.is_none().then_some(()) },
    )
    .await;
}

async fn owner_uids(env: &SyncEnv, secret: &str) -> Option<Vec<String>> {
    let secret: Secret = env.secrets().get_opt(secret).await.ok()??;
    Some(
        secret
            .metadata
            .owner_references
            .unwrap_or_default()
            .into_iter()
            .map(|o| o.uid)
            .collect(),
    )
}

async fn wait_synced(env: &SyncEnv, name: &str) {
    wait_for(&format!("{name} Ready=True Synced"), 120, || async {
        (env.ready(name).await? == ("True".to_string(), "Synced".to_string())).then_some(())
    })
    .await;
}

/// Phase: the Staged rotation with PostgreSQL reaches the application through its volume;
/// `rolloutRestart` gives exactly one rollout per promoted version, none for a no-op refresh or
/// an operator failover; the replica that takes over after the leader pod is deleted rotates
/// again and no KMS write happens twice.
async fn rotation_reaches_the_application(env: &SyncEnv, node: &Node, release_ns: &str) {
    let role = format!("app_{}", &env.namespace[env.namespace.len() - 8..]);
    let first = format!("first-{}", uuid::Uuid::new_v4().simple());
    let register = postgres_rotation_start(env, "app_cred", &role, &first).await;
    env.apply_managed_secret("app-cred", "app_cred", json!({
        "data": [{"key": "username", "property": "uname"}, {"key": "password", "property": "pwd"}],
        "rotation": {"interval": "720h", "minInterval": "1s", "strategy": "Staged", "pendingStage": "MyPendingLabel",
            "generate": {"password": {"length": 24, "excludePunctuation": true},
                         "template": "{\"uname\":\"{{ current.uname }}\",\"pwd\":\"{{ password }}\"}"},
            "register": register},
        "rolloutRestart": [{"kind": "Deployment", "name": "app"}]})).await;
    wait_synced(env, "app-cred").await;
    println!(
        "sync: the operator pod wrote Secret app-cred under the chart's ServiceAccount and RBAC"
    );

    let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), &env.namespace);
    deployments
        .create(&PostParams::default(), &app_deployment(&role, "app-cred"))
        .await
        .expect("create app");
    let app = wait_pod_ready(&env.client, &env.namespace, "app=app", &BTreeSet::new()).await;
    wait_login(node, &env.namespace, &first).await;
    wait_for("env-reader to print the user", 60, || async {
        node.log_lines(&env.namespace, "env-reader")
            .iter()
            .any(|l| *l == format!("env user={role}"))
            .then_some(())
    })
    .await;
    println!(
        "application: the mounted password logs in to PostgreSQL; the env container reads username={role}"
    );
    assert_eq!(replica_sets(&env.client, &env.namespace).await, 1);

    let mut seen = BTreeSet::from([app.metadata.uid.clone().unwrap()]);
    let mut password = first;
    for round in 1..=2 {
        let writes = kms_writes(env);
        password = rotate_once(env, node, round, &password, &mut seen).await;
        // Staged: the pending put, the move of ACSCurrent, the removal of the pending label.
        assert_eq!(
            kms_writes(env) - writes,
            3,
            "rotation {round}: each KMS write exactly once"
        );
        assert_eq!(
            replica_sets(&env.client, &env.namespace).await,
            1 + round as usize,
            "one rollout per promoted version"
        );

        let writes = kms_writes(env);
        let pods = pod_uids(&env.client, &env.namespace).await;
        env.force_sync_and_wait("app-cred").await;
        if round == 1 {
            fail_over(&env.client, release_ns).await;
            env.force_sync_and_wait("app-cred").await;
        }
        assert_eq!(
            kms_writes(env),
            writes,
            "a refresh or a failover writes nothing to KMS"
        );
        assert_eq!(
            replica_sets(&env.client, &env.namespace).await,
            1 + round as usize,
            "no rollout without a new version"
        );
        assert_eq!(pod_uids(&env.client, &env.namespace).await, pods);
    }
    println!(
        "rollouts per change: 1 (ReplicaSets 1 -> 2 -> 3 for two rotations; +0 for a no-op refresh; +0 for a leader failover)"
    );
}

/// One rotation through the annotation: the Secret follows, the application logs in with the
/// new password from a new pod (the rollout). Returns the new password.
async fn rotate_once(
    env: &SyncEnv,
    node: &Node,
    round: u32,
    previous: &str,
    seen: &mut BTreeSet<String>,
) -> String {
    let sequence = |ms: &ManagedSecret| {
        ms.status
            .as_ref()?
            .rotation
            .as_ref()?
            .last_rotation_time
            .clone()
    };
    let before = sequence(&env.managed_secrets().get("app-cred").await.expect("get"));
    annotate(env, "app-cred", "kmsync.io/rotate", &round.to_string()).await;
    // Succeeded and finished: a newer rotation time, nothing pending any more.
    wait_for(&format!("rotation {round} to succeed"), 120, || async {
        let ms = env.managed_secrets().get("app-cred").await.ok()?;
        let (_, reason, _) = rotation_condition(&ms)?;
        let rotation = ms.status.as_ref()?.rotation.as_ref()?;
        (reason == "RotationSucceeded"
            && sequence(&ms) != before
            && rotation.pending_version_id.is_none())
        .then_some(())
    })
    .await;
    let rotated = wait_for("the Secret to follow the rotation", 90, || async {
        env.secret_data("app-cred")
            .await
            .filter(|d| d["password"] != previous)
    })
    .await;
    let password = rotated["password"].clone();
    let new_pod = wait_pod_ready(&env.client, &env.namespace, "app=app", seen).await;
    seen.insert(new_pod.metadata.uid.clone().unwrap());
    wait_login(node, &env.namespace, &password).await;
    println!(
        "rotation {round}: the application logged in to PostgreSQL with the rotated password it read from the mounted file"
    );
    password
}

/// Phase: a data key, label or annotation dropped from the spec is gone from the Secret at the
/// next reconcile, with no new KMS version.
async fn removed_fields_leave_the_secret(env: &SyncEnv) {
    env.create_kms_secret("exact_cred", "v1", r#"{"a":"1","b":"2"}"#)
        .await;
    let spec = |keys: &[&str], target: Value| {
        let data: Vec<Value> = keys
            .iter()
            .map(|k| json!({"key": k, "property": k}))
            .collect();
        json!({"data": data, "target": target})
    };
    env.apply_managed_secret(
        "exact",
        "exact_cred",
        spec(
            &["a", "b"],
            json!({"labels": {"team": "a"}, "annotations": {"note": "x"}}),
        ),
    )
    .await;
    wait_synced(env, "exact").await;
    let has = |secret: &Secret| {
        let data = secret.data.clone().unwrap_or_default();
        let meta = &secret.metadata;
        [
            data.contains_key("b"),
            meta.labels.as_ref().is_some_and(|l| l.contains_key("team")),
            meta.annotations
                .as_ref()
                .is_some_and(|a| a.contains_key("note")),
        ]
    };
    let secret = env.secrets().get("exact").await.expect("Secret exact");
    assert_eq!(has(&secret), [true; 3]);
    env.apply_managed_secret("exact", "exact_cred", spec(&["a"], json!({})))
        .await;
    let secret = wait_for(
        "the dropped key, label and annotation to go",
        60,
        || async {
            let secret = env.secrets().get("exact").await.ok()?;
            (has(&secret) == [false; 3]).then_some(secret)
        },
    )
    .await;
    let annotations = secret.metadata.annotations.unwrap_or_default();
    assert_eq!(
        annotations["kmsync.io/kms-version-id"], "v1",
        "no new KMS version"
    );
    assert!(secret.data.unwrap_or_default().contains_key("a"));
    println!(
        "exactness: removed key 'b', label 'team' and annotation 'note' gone from Secret exact (still KMS v1)"
    );
}

/// Phase: `deletionPolicy: Delete` lets the garbage collector delete the Secret with its
/// ManagedSecret; `Retain`, also after a switch from `Delete`, keeps it.
async fn garbage_collector_follows_the_deletion_policy(env: &SyncEnv) {
    let delete = json!({"target": {"deletionPolicy": "Delete"}});
    env.create_kms_secret("gc_cred", "v1", r#"{"pwd":"gc"}"#)
        .await;
    env.apply_managed_secret("gc-delete", "gc_cred", delete.clone())
        .await;
    env.apply_managed_secret("gc-retain", "gc_cred", delete)
        .await;
    for name in ["gc-delete", "gc-retain"] {
        wait_synced(env, name).await;
        assert_eq!(
            owner_uids(env, name).await.map(|o| o.len()),
            Some(1),
            "{name} has an owner"
        );
    }
    env.managed_secrets()
        .delete("gc-delete", &DeleteParams::default())
        .await
        .expect("delete");
    wait_for(
        "the garbage collector to delete Secret gc-delete",
        120,
        || async {
            env.secrets()
                .get_opt("gc-delete")
                .await
                .ok()?
                .is_none()
                .then_some(())
        },
    )
    .await;
    println!(
        "garbage collection: Delete policy, ManagedSecret deleted -> Secret gc-delete deleted by the garbage collector"
    );

    env.apply_managed_secret(
        "gc-retain",
        "gc_cred",
        json!({"target": {"deletionPolicy": "Retain"}}),
    )
    .await;
    wait_for("the owner reference to go with Retain", 60, || async {
        owner_uids(env, "gc-retain").await.filter(|o| o.is_empty())
    })
    .await;
    let canary = canary_owned_by(env, "gc-retain").await;
    env.managed_secrets()
        .delete("gc-retain", &DeleteParams::default())
        .await
        .expect("delete");
    wait_gone_configmap(env, &canary).await;
    assert!(env.secrets().get_opt("gc-retain").await.unwrap().is_some());
    println!(
        "garbage collection: Retain after a switch from Delete -> Secret gc-retain survived deleting its ManagedSecret"
    );
}

/// Phase: `helm uninstall` and deleting the CRDs leave every Retain Secret in place.
async fn uninstall_and_crd_deletion_keep_retained_secrets(
    env: &SyncEnv,
    helm: &Helm,
    release_ns: &str,
) {
    let canary = canary_owned_by(env, "app-cred").await;
    helm.ok(&["uninstall", RELEASE, "--namespace", release_ns]);
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), release_ns);
    wait_for("the operator pod to go", 120, || async {
        pods.list(&ListParams::default().labels("app.kubernetes.io/name=kmsync"))
            .await
            .ok()?
            .items
            .is_empty()
            .then_some(())
    })
    .await;
    assert!(env.secrets().get_opt("app-cred").await.unwrap().is_some());
    println!("helm uninstall: Secret app-cred kept");

    let out = kubectl(
        &[
            "delete",
            "crd",
            "managedsecrets.kmsync.io",
            "secretstores.kmsync.io",
            "clustersecretstores.kmsync.io",
            "--wait=true",
            "--timeout=120s",
        ],
        None,
    );
    assert!(out.status.success(), "{}", describe(&out));
    wait_gone_configmap(env, &canary).await;
    for name in ["app-cred", "gc-retain"] {
        assert!(
            env.secrets().get_opt(name).await.unwrap().is_some(),
            "Secret {name} kept"
        );
    }
    println!(
        "CRDs deleted: Retain Secrets app-cred and gc-retain kept (the garbage collector removed what the ManagedSecrets owned)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kmsync_as_a_pod_with_an_application_that_mounts_its_secret() {
    let node = Node::from_env();
    let helm = Helm::new();
    let env = SyncEnv::without_operator("app").await;
    let client = env.client.clone();
    let release_ns = support::fresh_namespace(&client, "kmsync-system").await;
    label_namespace(
        &client,
        &release_ns,
        json!({"pod-security.kubernetes.io/enforce": "restricted",
               "pod-security.kubernetes.io/enforce-version": "latest"}),
    )
    .await;
    install_operator(&client, &helm, &node, &release_ns).await;
    pod_security_is_enforced(&client, &release_ns).await;
    println!(
        "pod security: both operator pods admitted in {release_ns}, which enforces 'restricted' (host networking is refused there)"
    );
    rotation_reaches_the_application(&env, &node, &release_ns).await;
    removed_fields_leave_the_secret(&env).await;
    garbage_collector_follows_the_deletion_policy(&env).await;
    uninstall_and_crd_deletion_keep_retained_secrets(&env, &helm, &release_ns).await;
}
