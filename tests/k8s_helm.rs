//! The Helm chart with the real helm (v4.1.4, `scripts/helm.sh`) and the real apiserver:
//! `helm lint`/`helm template` and assertions on the rendered objects (restricted pods,
//! least-privilege RBAC in both scopes); then `helm install` (never `--wait`: nothing runs pods
//! here) and the operator binary running **as the chart's ServiceAccount** (a kubeconfig that
//! impersonates it) with the arguments of the installed Deployment, which shows the chart's RBAC
//! is sufficient (sync, events, Lease) and, in namespaced scope, that nothing outside the watched
//! namespaces is readable or reconciled.
#![cfg(feature = "integration")]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Secret, Service, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kmsync::crd::ManagedSecret;
use kube::api::{Api, ListParams};
use serde_json::{Value, json};
use support::helm::{Helm, chart, parse_documents};
use support::sync::{SyncEnv, wait_for};
use support::{describe, fresh_namespace, kubectl, repo};

const RELEASE: &str = "kmsync";
const TEMPLATE_NAMESPACE: &str = "kmsync-system";

/// Tests that run an operator over the shared control plane take turns: a cluster-scoped
/// operator would otherwise reconcile the namespaced test's "outside" ManagedSecret.
static OPERATOR_TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `helm template` with `--set` values, parsed into one JSON value per object.
fn render(helm: &Helm, sets: &[&str]) -> Vec<Value> {
    let chart = chart();
    let mut args = vec![
        "template",
        RELEASE,
        &chart,
        "--namespace",
        TEMPLATE_NAMESPACE,
    ];
    for set in sets {
        args.extend(["--set", set]);
    }
    parse_documents(&helm.ok(&args))
}

fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Every (kind, namespace, apiGroup, resource, verb) a rendered Role/ClusterRole grants.
fn grants(objects: &[Value]) -> Vec<(String, String, String, String, String)> {
    let mut out = Vec::new();
    for role in objects
        .iter()
        .filter(|o| o["kind"] == "Role" || o["kind"] == "ClusterRole")
    {
        let namespace = role["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string();
        for rule in role["rules"].as_array().expect("rules") {
            for group in strings(&rule["apiGroups"]) {
                for resource in strings(&rule["resources"]) {
                    for verb in strings(&rule["verbs"]) {
                        out.push((
                            role["kind"].as_str().unwrap().to_string(),
                            namespace.clone(),
                            group.clone(),
                            resource.clone(),
                            verb,
                        ));
                    }
                }
            }
        }
    }
    out
}

fn assert_restricted(container: &Value) {
    let sc = &container["securityContext"];
    let name = &container["name"];
    assert_eq!(sc["runAsNonRoot"], true, "{name}: runAsNonRoot");
    assert_eq!(
        sc["readOnlyRootFilesystem"], true,
        "{name}: readOnlyRootFilesystem"
    );
    assert_eq!(
        sc["allowPrivilegeEscalation"], false,
        "{name}: allowPrivilegeEscalation"
    );
    assert_eq!(
        sc["capabilities"]["drop"],
        json!(["ALL"]),
        "{name}: drop ALL"
    );
    assert!(
        sc["capabilities"]["add"].is_null(),
        "{name}: adds capabilities"
    );
    assert_eq!(
        sc["seccompProfile"]["type"], "RuntimeDefault",
        "{name}: seccomp"
    );
}

fn deployment(objects: &[Value]) -> &Value {
    let deployments = of_kind(objects, "Deployment");
    assert_eq!(deployments.len(), 1, "one Deployment");
    deployments[0]
}

fn operator_container(objects: &[Value]) -> &Value {
    deployment(objects)["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .find(|c| c["name"] == "kmsync")
        .expect("container kmsync")
}

// ---------------------------------------------------------------------------------------------
// Rendering

#[test]
fn lint_passes_for_default_and_namespaced_values() {
    let helm = Helm::new();
    let chart = chart();
    helm.ok(&["lint", "--strict", &chart]);
    helm.ok(&[
        "lint",
        "--strict",
        &chart,
        "--set",
        "rbac.scope=namespaced",
        "--set",
        "watchNamespaces={team-a,team-b}",
    ]);
    helm.ok(&[
        "lint",
        "--strict",
        &chart,
        "--set",
        "emulator.enabled=true,metrics.dashboard.enabled=true,metrics.serviceMonitor.enabled=true,networkPolicy.enabled=true",
    ]);
}

#[test]
fn default_values_render_a_restricted_leader_elected_deployment() {
    let helm = Helm::new();
    let objects = render(&helm, &[]);
    let deploy = deployment(&objects);
    assert_eq!(deploy["spec"]["replicas"], 1);
    let pod = &deploy["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert_eq!(pod["serviceAccountName"], RELEASE);
    let container = operator_container(&objects);
    assert_restricted(container);
    assert_eq!(
        container["image"], "ghcr.io/kmsync/kmsync:0.1.0",
        "tag = appVersion"
    );
    let args = strings(&container["args"]);
    for expected in [
        "run",
        "--admin-addr=0.0.0.0:8080",
        "--leader-elect",
        "--lease-name=kmsync",
    ] {
        assert!(
            args.contains(&expected.to_string()),
            "{expected} in {args:?}"
        );
    }
    assert!(
        !args.iter().any(|a| a.starts_with("--namespace")),
        "cluster scope watches everything: {args:?}"
    );
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/live");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/ready");
    assert_eq!(container["livenessProbe"]["httpGet"]["port"], "admin");
    assert_eq!(container["ports"][0]["containerPort"], 8080);
    assert!(container["resources"]["requests"].is_object());
    let env = container["env"].as_array().expect("env");
    for (name, field) in [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
    ] {
        let var = env.iter().find(|e| e["name"] == name).expect(name);
        assert_eq!(var["valueFrom"]["fieldRef"]["fieldPath"], field);
    }
    assert!(
        of_kind(&objects, "PodDisruptionBudget").is_empty(),
        "no PDB for one replica"
    );
    assert_eq!(of_kind(&objects, "ServiceAccount").len(), 1);
    let service = of_kind(&objects, "Service");
    assert_eq!(service.len(), 1);
    assert_eq!(service[0]["spec"]["ports"][0]["targetPort"], "admin");
    for absent in [
        "ServiceMonitor",
        "NetworkPolicy",
        "ConfigMap",
        "SecretStore",
        "Secret",
    ] {
        assert!(of_kind(&objects, absent).is_empty(), "{absent} is opt-in");
    }

    let two = render(&helm, &["replicaCount=2"]);
    let pdb = of_kind(&two, "PodDisruptionBudget");
    assert_eq!(pdb.len(), 1, "PDB with two replicas");
    assert_eq!(pdb[0]["spec"]["minAvailable"], 1);

    let refused = helm.run(&[
        "template",
        RELEASE,
        &chart(),
        "--set",
        "replicaCount=2,leaderElection.enabled=false",
    ]);
    assert!(
        !refused.status.success(),
        "two replicas without leader election must be refused"
    );
}

#[test]
fn cluster_scope_rbac_is_least_privilege() {
    let helm = Helm::new();
    let objects = render(&helm, &[]);
    let grants = grants(&objects);
    assert!(
        !grants
            .iter()
            .any(|(_, _, g, r, v)| g == "*" || r == "*" || v == "*"),
        "no wildcards: {grants:?}"
    );
    let cluster: Vec<_> = grants.iter().filter(|g| g.0 == "ClusterRole").collect();
    let has = |group: &str, resource: &str, verb: &str| {
        cluster
            .iter()
            .any(|(_, _, g, r, v)| g == group && r == resource && v == verb)
    };
    for verb in ["get", "list", "watch", "create", "patch", "delete"] {
        assert!(has("", "secrets", verb), "secrets {verb}");
    }
    assert!(
        !has("", "secrets", "update"),
        "Secrets are written by server-side apply only"
    );
    for verb in ["get", "list", "watch", "patch"] {
        assert!(
            has("kmsync.io", "managedsecrets", verb),
            "managedsecrets {verb}"
        );
    }
    assert!(has("kmsync.io", "managedsecrets/status", "patch"));
    assert!(has("kmsync.io", "secretstores/status", "patch"));
    assert!(has("kmsync.io", "clustersecretstores", "watch"));
    assert!(has("kmsync.io", "clustersecretstores/status", "patch"));
    assert!(has("", "namespaces", "get") && !has("", "namespaces", "list"));
    assert!(has("events.k8s.io", "events", "create") && has("events.k8s.io", "events", "patch"));
    assert!(
        has("apps", "deployments", "patch"),
        "rolloutRestart is on by default"
    );
    assert!(!has("apps", "deployments", "get") && !has("apps", "deployments", "update"));

    // Leases: only in a Role in the release namespace.
    let lease_grants: Vec<_> = grants.iter().filter(|g| g.3 == "leases").collect();
    assert!(!lease_grants.is_empty());
    assert!(
        lease_grants
            .iter()
            .all(|(kind, ns, ..)| kind == "Role" && ns == TEMPLATE_NAMESPACE),
        "{lease_grants:?}"
    );
    // TokenRequest only when asked for.
    assert!(
        !grants.iter().any(|g| g.3 == "serviceaccounts/token"),
        "no TokenRequest by default"
    );
    let per_tenant = grants_of(&helm, &["rrsa.perTenant=true"]);
    assert!(per_tenant.iter().any(|(k, _, g, r, v)| k == "ClusterRole"
        && g.is_empty()
        && r == "serviceaccounts/token"
        && v == "create"));
    let no_rollout = grants_of(&helm, &["rolloutRestart.enabled=false"]);
    assert!(
        !no_rollout.iter().any(|g| g.2 == "apps"),
        "no apps permissions: {no_rollout:?}"
    );
    // The binding points at the chart's ServiceAccount.
    let binding = of_kind(&objects, "ClusterRoleBinding")[0];
    assert_eq!(binding["subjects"][0]["name"], RELEASE);
    assert_eq!(binding["subjects"][0]["namespace"], TEMPLATE_NAMESPACE);
}

fn grants_of(helm: &Helm, sets: &[&str]) -> Vec<(String, String, String, String, String)> {
    grants(&render(helm, sets))
}

#[test]
fn namespaced_scope_grants_secrets_only_in_watched_namespaces() {
    let helm = Helm::new();
    let objects = render(
        &helm,
        &["rbac.scope=namespaced", "watchNamespaces={team-a,team-b}"],
    );
    let grants = grants(&objects);
    let cluster: Vec<_> = grants.iter().filter(|g| g.0 == "ClusterRole").collect();
    assert!(
        !cluster.iter().any(|g| g.3 == "secrets"),
        "a ClusterRole grants Secrets: {cluster:?}"
    );
    // The only cluster-wide rules: ClusterSecretStores and namespaces get.
    for (_, _, group, resource, verb) in &cluster {
        let allowed = matches!(
            (group.as_str(), resource.as_str(), verb.as_str()),
            ("kmsync.io", "clustersecretstores", "get" | "list" | "watch")
                | ("kmsync.io", "clustersecretstores/status", "patch")
                | ("", "namespaces", "get")
        );
        assert!(
            allowed,
            "unexpected cluster-wide grant {group}/{resource} {verb}"
        );
    }
    let secret_namespaces: std::collections::BTreeSet<_> = grants
        .iter()
        .filter(|g| g.3 == "secrets")
        .map(|g| g.1.as_str())
        .collect();
    assert_eq!(
        secret_namespaces.into_iter().collect::<Vec<_>>(),
        ["team-a", "team-b"]
    );
    let lease_namespaces: Vec<_> = grants
        .iter()
        .filter(|g| g.3 == "leases")
        .map(|g| g.1.as_str())
        .collect();
    assert!(
        !lease_namespaces.is_empty() && lease_namespaces.iter().all(|ns| *ns == TEMPLATE_NAMESPACE)
    );
    assert!(!grants.iter().any(|g| g.3 == "serviceaccounts/token"));
    for role in of_kind(&objects, "RoleBinding") {
        assert_eq!(role["subjects"][0]["namespace"], TEMPLATE_NAMESPACE);
    }
    let args = strings(&operator_container(&objects)["args"]);
    assert!(
        args.contains(&"--namespace=team-a".into()) && args.contains(&"--namespace=team-b".into()),
        "{args:?}"
    );

    // Per-tenant RRSA in namespaced scope: TokenRequest only in the watched namespaces.
    let token: Vec<_> = grants_of(
        &helm,
        &[
            "rbac.scope=namespaced",
            "watchNamespaces={team-a}",
            "rrsa.perTenant=true",
        ],
    )
    .into_iter()
    .filter(|g| g.3 == "serviceaccounts/token")
    .collect();
    assert_eq!(token.len(), 1);
    assert_eq!(
        (token[0].0.as_str(), token[0].1.as_str()),
        ("Role", "team-a")
    );

    // Credentials of ClusterSecretStores elsewhere: `get` Secrets there, nothing more.
    let creds: Vec<_> = grants_of(
        &helm,
        &[
            "rbac.scope=namespaced",
            "watchNamespaces={team-a}",
            "rbac.credentialsNamespaces={kmsync-system}",
        ],
    )
    .into_iter()
    .filter(|g| g.1 == TEMPLATE_NAMESPACE && g.3 == "secrets")
    .collect();
    assert_eq!(creds.len(), 1, "{creds:?}");
    assert_eq!(creds[0].4, "get");

    // No ClusterRole at all when cluster stores are switched off.
    let none = render(
        &helm,
        &[
            "rbac.scope=namespaced",
            "watchNamespaces={team-a}",
            "rbac.clusterSecretStores=false",
        ],
    );
    assert!(
        of_kind(&none, "ClusterRole").is_empty() && of_kind(&none, "ClusterRoleBinding").is_empty()
    );

    let refused = helm.run(&[
        "template",
        RELEASE,
        &chart(),
        "--set",
        "rbac.scope=namespaced",
    ]);
    assert!(
        !refused.status.success(),
        "namespaced scope without watchNamespaces must be refused"
    );
}

#[test]
fn optional_parts_render_when_enabled() {
    let helm = Helm::new();
    let objects = render(
        &helm,
        &[
            "emulator.enabled=true,metrics.dashboard.enabled=true,metrics.serviceMonitor.enabled=true,networkPolicy.enabled=true",
        ],
    );
    let pod = &deployment(&objects)["spec"]["template"]["spec"];
    let emulator = pod["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "emulator")
        .expect("emulator sidecar");
    assert_restricted(emulator);
    let args = strings(&emulator["args"]);
    assert!(
        args.contains(&"emulator".into()) && args.contains(&"--listen=127.0.0.1:8090".into()),
        "{args:?}"
    );
    let store = of_kind(&objects, "SecretStore");
    assert_eq!(store.len(), 1);
    assert_eq!(store[0]["spec"]["endpoint"], "http://127.0.0.1:8090");
    let seed = of_kind(&objects, "ConfigMap")
        .into_iter()
        .find(|c| c["data"]["seed.yaml"].is_string())
        .expect("seed ConfigMap");
    assert!(
        seed["data"]["seed.yaml"]
            .as_str()
            .unwrap()
            .contains("db_cred")
    );
    let dashboard = of_kind(&objects, "ConfigMap")
        .into_iter()
        .find(|c| c["data"]["kmsync.json"].is_string())
        .expect("dashboard ConfigMap");
    let json: Value = serde_json::from_str(dashboard["data"]["kmsync.json"].as_str().unwrap())
        .expect("dashboard JSON");
    let text = json.to_string();
    assert!(
        text.contains("kmsync_reconciles_total")
            && text.contains("kmsync_reconcile_duration_seconds_bucket")
    );
    assert_eq!(of_kind(&objects, "ServiceMonitor").len(), 1);
    let policy = of_kind(&objects, "NetworkPolicy");
    assert_eq!(policy.len(), 1);
    assert_eq!(
        policy[0]["spec"]["policyTypes"],
        json!(["Ingress", "Egress"])
    );
}

// ---------------------------------------------------------------------------------------------
// Installing into the real apiserver and running as the chart's ServiceAccount

/// A copy of the admin kubeconfig whose user impersonates `system:serviceaccount:<ns>:<sa>`
/// (kube-rs 5 honours `as` / `as-groups`; so does kubectl).
fn impersonating_kubeconfig(dir: &Path, namespace: &str, service_account: &str) -> PathBuf {
    let admin = std::env::var("KUBECONFIG").expect("KUBECONFIG");
    let mut config: Value =
        serde_norway::from_str(&std::fs::read_to_string(admin).expect("read kubeconfig"))
            .expect("parse kubeconfig");
    for user in config["users"].as_array_mut().expect("users") {
        user["user"]["as"] = json!(format!(
            "system:serviceaccount:{namespace}:{service_account}"
        ));
        user["user"]["as-groups"] = json!([
            "system:serviceaccounts",
            format!("system:serviceaccounts:{namespace}"),
            "system:authenticated"
        ]);
    }
    let path = dir.join(format!("{namespace}-{service_account}.kubeconfig"));
    std::fs::write(&path, serde_norway::to_string(&config).expect("yaml"))
        .expect("write kubeconfig");
    path
}

/// The operator binary started with the installed Deployment's arguments, as the
/// ServiceAccount; stopped (by its own PID) when dropped.
struct ChartOperator {
    child: Child,
    log_path: PathBuf,
}

impl Drop for ChartOperator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ChartOperator {
    async fn start(client: &kube::Client, release_namespace: &str, kubeconfig: &Path) -> Self {
        let deploy = Api::<Deployment>::namespaced(client.clone(), release_namespace)
            .get(RELEASE)
            .await
            .expect("installed Deployment");
        let container = deploy
            .spec
            .and_then(|s| s.template.spec)
            .map(|p| p.containers)
            .unwrap_or_default()
            .into_iter()
            .find(|c| c.name == "kmsync")
            .expect("container kmsync");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        // Same arguments as the pod, but the admin server on loopback.
        let args: Vec<String> = container
            .args
            .unwrap_or_default()
            .into_iter()
            .map(|a| {
                if a.starts_with("--admin-addr=") {
                    format!("--admin-addr=127.0.0.1:{port}")
                } else {
                    a
                }
            })
            .collect();
        let log_path = std::env::temp_dir().join(format!("kmsync-helm-{release_namespace}.log"));
        let log = std::fs::File::create(&log_path).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_kmsync"))
            .args(&args)
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info")
            // What the downward API gives the pod.
            .env("POD_NAME", format!("{RELEASE}-test-pod"))
            .env("POD_NAMESPACE", release_namespace)
            .env_remove("KMSYNC_NAMESPACES")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start kmsync");
        eprintln!(
            "operator (as the chart's ServiceAccount) logs to {}",
            log_path.display()
        );
        Self { child, log_path }
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    fn assert_never_forbidden(&self) {
        let logs = self.logs();
        let denied: Vec<&str> = logs
            .lines()
            .filter(|l| l.to_lowercase().contains("forbidden"))
            .collect();
        assert!(
            denied.is_empty(),
            "the chart's RBAC denied the operator:\n{}",
            denied.join("\n")
        );
    }
}

fn helm_install(helm: &Helm, namespace: &str, sets: &[&str]) {
    let chart = chart();
    let mut args = vec!["install", RELEASE, &chart, "--namespace", namespace];
    for set in sets {
        args.extend(["--set", set]);
    }
    let out = helm.ok(&args);
    assert!(out.contains("STATUS: deployed"), "{out}");
    let list = helm.ok(&["list", "--namespace", namespace, "--output", "json"]);
    let releases: Value = serde_json::from_str(&list).expect("helm list json");
    assert_eq!(releases[0]["name"], RELEASE);
    assert_eq!(releases[0]["status"], "deployed");
}

async fn wait_synced(client: &kube::Client, namespace: &str, name: &str) {
    wait_for(
        &format!("{namespace}/{name} Ready=True Synced"),
        90,
        || async {
            let ms = Api::<ManagedSecret>::namespaced(client.clone(), namespace)
                .get_opt(name)
                .await
                .ok()??;
            let status = ms.status?;
            status
                .conditions
                .iter()
                .any(|c| {
                    c.type_ == "Ready"
                        && c.status == "True"
                        && c.reason == "Synced"
                        && c.observed_generation == ms.metadata.generation
                })
                .then_some(())
        },
    )
    .await;
}

/// The example ManagedSecret (`examples/managedsecret.yaml`) applied with the real kubectl.
fn apply_example(namespace: &str) {
    let out = kubectl(
        &[
            "apply",
            "-n",
            namespace,
            "-f",
            &repo("examples/managedsecret.yaml").display().to_string(),
        ],
        None,
    );
    assert!(out.status.success(), "{}", describe(&out));
}

async fn assert_events_and_lease(
    client: &kube::Client,
    app_namespace: &str,
    release_namespace: &str,
) {
    let events = Api::<Event>::namespaced(client.clone(), app_namespace)
        .list(&ListParams::default())
        .await
        .expect("events")
        .items;
    assert!(
        events.iter().any(|e| e.reason.as_deref() == Some("Created")
            && e.reporting_controller.as_deref() == Some("kmsync")),
        "no Created event from kmsync: {:?}",
        events.iter().map(|e| &e.reason).collect::<Vec<_>>()
    );
    let lease = Api::<Lease>::namespaced(client.clone(), release_namespace)
        .get("kmsync")
        .await
        .expect("the leader Lease in the release namespace");
    assert_eq!(
        lease.spec.and_then(|s| s.holder_identity).as_deref(),
        Some("kmsync-test-pod")
    );
}

/// A ClusterSecretStore admitting `env`'s namespace (credentials in that namespace, the test's
/// emulator), and a ManagedSecret `db-cred-shared` reading through it; waits until both are
/// Ready. Exercises the ClusterSecretStore rules: watch, get, status patch, namespaces get.
async fn sync_through_a_cluster_store(env: &SyncEnv) {
    let name = format!("helm-{}", env.namespace);
    let store = json!({"apiVersion": "kmsync.io/v1alpha1", "kind": "ClusterSecretStore",
        "metadata": {"name": name},
        "spec": {"regionId": "cn-hangzhou", "endpoint": env.emulator.base_url(),
                 "auth": {"accessKey": {"secretRef": {"name": "kms-credentials", "namespace": env.namespace}}},
                 "conditions": [{"namespaces": [env.namespace]}]}});
    let resource = kube::api::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
        "kmsync.io",
        "v1alpha1",
        "ClusterSecretStore",
    ));
    let api: Api<kube::api::DynamicObject> = Api::all_with(env.client.clone(), &resource);
    api.patch(
        &name,
        &kube::api::PatchParams::apply("kmsync-test").force(),
        &kube::api::Patch::Apply(&store),
    )
    .await
    .expect("apply ClusterSecretStore");
    env.apply_managed_secret(
        "db-cred-shared",
        "db_cred",
        json!({"storeRef": {"name": name, "kind": "ClusterSecretStore"}}),
    )
    .await;
    wait_synced(&env.client, &env.namespace, "db-cred-shared").await;
    wait_for("the ClusterSecretStore Ready=True", 60, || async {
        let store = kube::Api::<kmsync::crd::ClusterSecretStore>::all(env.client.clone())
            .get(&name)
            .await
            .ok()?;
        store
            .status?
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
            .then_some(())
    })
    .await;
}

/// `kubectl auth can-i VERB RESOURCE -n NS` as the chart's ServiceAccount.
fn can_i(release_namespace: &str, verb: &str, resource: &str, namespace: Option<&str>) -> bool {
    let user = format!("system:serviceaccount:{release_namespace}:{RELEASE}");
    let group = format!("system:serviceaccounts:{release_namespace}");
    let mut args = vec![
        "auth",
        "can-i",
        verb,
        resource,
        "--as",
        &user,
        "--as-group",
        "system:serviceaccounts",
        "--as-group",
        &group,
    ];
    match namespace {
        Some(ns) => args.extend(["-n", ns]),
        None => args.push("--all-namespaces"),
    }
    let out = kubectl(&args, None);
    let answer = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        answer == "yes" || answer == "no",
        "kubectl auth can-i: {}",
        describe(&out)
    );
    answer == "yes"
}

#[tokio::test]
async fn cluster_install_creates_the_objects_and_its_service_account_syncs() {
    let _turn = OPERATOR_TURN.lock().await;
    let helm = Helm::new();
    let env = SyncEnv::without_operator("helm-app").await;
    let client = env.client.clone();
    let release_ns = fresh_namespace(&client, "helm-rel").await;
    helm_install(&helm, &release_ns, &[]);

    // The objects exist.
    Api::<Deployment>::namespaced(client.clone(), &release_ns)
        .get(RELEASE)
        .await
        .expect("Deployment");
    Api::<ServiceAccount>::namespaced(client.clone(), &release_ns)
        .get(RELEASE)
        .await
        .expect("ServiceAccount");
    Api::<Service>::namespaced(client.clone(), &release_ns)
        .get(&format!("{RELEASE}-metrics"))
        .await
        .expect("metrics Service");
    let cluster_name = format!("{RELEASE}-{release_ns}");
    Api::<ClusterRole>::all(client.clone())
        .get(&cluster_name)
        .await
        .expect("ClusterRole");
    Api::<ClusterRoleBinding>::all(client.clone())
        .get(&cluster_name)
        .await
        .expect("ClusterRoleBinding");
    Api::<Role>::namespaced(client.clone(), &release_ns)
        .get(&format!("{RELEASE}-leader-election"))
        .await
        .expect("leases Role");
    Api::<RoleBinding>::namespaced(client.clone(), &release_ns)
        .get(&format!("{RELEASE}-leader-election"))
        .await
        .expect("leases RoleBinding");

    // What the ServiceAccount may do, as the apiserver's authorizer sees it.
    assert!(can_i(&release_ns, "list", "secrets", None));
    assert!(can_i(&release_ns, "create", "leases", Some(&release_ns)));
    assert!(
        !can_i(&release_ns, "create", "leases", Some(&env.namespace)),
        "leases outside the release namespace"
    );
    assert!(!can_i(
        &release_ns,
        "create",
        "serviceaccounts/token",
        Some(&env.namespace)
    ));
    assert!(!can_i(
        &release_ns,
        "update",
        "secrets",
        Some(&env.namespace)
    ));
    assert!(!can_i(
        &release_ns,
        "list",
        "configmaps",
        Some(&env.namespace)
    ));

    // The operator, as the ServiceAccount, with the Deployment's arguments (cluster-wide).
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = impersonating_kubeconfig(dir.path(), &release_ns, RELEASE);
    let operator = ChartOperator::start(&client, &release_ns, &kubeconfig).await;
    env.create_kms_secret("db_cred", "v1", r#"{"uname":"alice","pwd":"p1"}"#)
        .await;
    apply_example(&env.namespace);
    wait_synced(&client, &env.namespace, "db-cred").await;
    let data = env.secret_data("db-cred").await.expect("Secret db-cred");
    assert_eq!(data.get("username").map(String::as_str), Some("alice"));
    assert_eq!(data.get("password").map(String::as_str), Some("p1"));
    assert_events_and_lease(&client, &env.namespace, &release_ns).await;
    sync_through_a_cluster_store(&env).await;
    operator.assert_never_forbidden();
    drop(operator);

    // Uninstalling removes the chart's objects but never the synced Secret (nor the CRDs).
    helm.ok(&["uninstall", RELEASE, "--namespace", &release_ns]);
    assert!(
        Api::<ClusterRole>::all(client.clone())
            .get_opt(&cluster_name)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        env.secret_data("db-cred").await.is_some(),
        "uninstall must keep synced Secrets"
    );
}

#[tokio::test]
async fn namespaced_install_is_confined_to_its_namespaces() {
    let _turn = OPERATOR_TURN.lock().await;
    let helm = Helm::new();
    let env = SyncEnv::without_operator("helm-team").await;
    let client = env.client.clone();
    let other = fresh_namespace(&client, "helm-other").await;
    env.add_store_in(&other).await;
    let release_ns = fresh_namespace(&client, "helm-nsrel").await;
    helm_install(
        &helm,
        &release_ns,
        &[
            "rbac.scope=namespaced",
            &format!("watchNamespaces={{{}}}", env.namespace),
        ],
    );
    // Roles in the watched namespace and the release namespace only; the small ClusterRole.
    Api::<Role>::namespaced(client.clone(), &env.namespace)
        .get(RELEASE)
        .await
        .expect("Role");
    assert!(
        Api::<Role>::namespaced(client.clone(), &other)
            .get_opt(RELEASE)
            .await
            .unwrap()
            .is_none()
    );
    let cluster_role = Api::<ClusterRole>::all(client.clone())
        .get(&format!("{RELEASE}-{release_ns}-cluster-stores"))
        .await
        .expect("cluster-stores ClusterRole");
    assert!(
        !cluster_role.rules.unwrap_or_default().iter().any(|r| r
            .resources
            .iter()
            .flatten()
            .any(|x| x.contains("secrets") && !x.contains("secretstores"))),
        "the ClusterRole must not grant Secrets"
    );

    // Denied outside, allowed inside (the apiserver's own answer).
    assert!(
        !can_i(&release_ns, "get", "secrets", Some(&other)),
        "get secrets in {other}"
    );
    assert!(
        !can_i(&release_ns, "list", "secrets", None),
        "list secrets cluster-wide"
    );
    assert!(!can_i(
        &release_ns,
        "get",
        "managedsecrets.kmsync.io",
        Some(&other)
    ));
    assert!(can_i(&release_ns, "get", "secrets", Some(&env.namespace)));
    assert!(can_i(
        &release_ns,
        "patch",
        "managedsecrets.kmsync.io/status",
        Some(&env.namespace)
    ));
    assert!(can_i(&release_ns, "create", "leases", Some(&release_ns)));
    assert!(!can_i(
        &release_ns,
        "create",
        "leases",
        Some(&env.namespace)
    ));
    assert!(!can_i(
        &release_ns,
        "create",
        "serviceaccounts/token",
        Some(&env.namespace)
    ));

    // And with a kube-rs client as the ServiceAccount: the credentials Secret in the other
    // namespace is Forbidden.
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = impersonating_kubeconfig(dir.path(), &release_ns, RELEASE);
    let as_sa = kube::Client::try_from(
        kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(&kubeconfig).expect("read kubeconfig"),
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .expect("config"),
    )
    .expect("client");
    match Api::<Secret>::namespaced(as_sa.clone(), &other)
        .get("kms-credentials")
        .await
    {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("expected 403 Forbidden, got {other:?}"),
    }
    Api::<Secret>::namespaced(as_sa, &env.namespace)
        .get("kms-credentials")
        .await
        .expect("the watched namespace is readable");

    // The operator syncs in its namespace and leaves the other alone.
    let operator = ChartOperator::start(&client, &release_ns, &kubeconfig).await;
    env.create_kms_secret("db_cred", "v1", r#"{"uname":"alice","pwd":"p1"}"#)
        .await;
    apply_example(&other);
    apply_example(&env.namespace);
    wait_synced(&client, &env.namespace, "db-cred").await;
    assert_events_and_lease(&client, &env.namespace, &release_ns).await;
    sync_through_a_cluster_store(&env).await;
    // Give it time to (wrongly) reach the other namespace, then check it did not.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let outside = Api::<ManagedSecret>::namespaced(client.clone(), &other)
        .get("db-cred")
        .await
        .expect("ManagedSecret outside");
    assert!(
        outside.status.is_none(),
        "reconciled outside its namespaces: {:?}",
        outside.status
    );
    assert!(outside.metadata.finalizers.unwrap_or_default().is_empty());
    assert!(
        Api::<Secret>::namespaced(client.clone(), &other)
            .get_opt("db-cred")
            .await
            .unwrap()
            .is_none(),
        "wrote a Secret outside its namespaces"
    );
    operator.assert_never_forbidden();
}

/// The optional parts are valid for the real apiserver (server-side dry run, so the demo
/// SecretStore passes the CRD's endpoint rule), and the emulator sidecar's arguments, seed and
/// AccessKey work with the real binary: `kmsync kms GetSecretValue` reads the seeded secret.
#[tokio::test]
async fn emulator_sidecar_and_optional_objects_are_valid() {
    let helm = Helm::new();
    let client = support::client().await;
    let namespace = fresh_namespace(&client, "helm-emu").await;
    let chart = chart();
    let yaml = helm.ok(&[
        "template",
        RELEASE,
        &chart,
        "--namespace",
        &namespace,
        "--set",
        "emulator.enabled=true,metrics.dashboard.enabled=true,networkPolicy.enabled=true",
    ]);
    let out = kubectl(
        &["apply", "--dry-run=server", "-n", &namespace, "-f", "-"],
        Some(&yaml),
    );
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("secretstore.kmsync.io/kms-demo created (server dry run)"),
        "{}",
        describe(&out)
    );

    let objects = parse_documents(&yaml);
    let emulator = deployment(&objects)["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "emulator")
        .expect("emulator container")
        .clone();
    let access_key = of_kind(&objects, "Secret")
        .into_iter()
        .find_map(|s| s["stringData"]["access-key"].as_str().map(String::from))
        .expect("emulator access key");
    let seed = of_kind(&objects, "ConfigMap")
        .into_iter()
        .find_map(|c| c["data"]["seed.yaml"].as_str().map(String::from))
        .expect("seed");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("seed.yaml"), seed).expect("seed file");
    let port_file = dir.path().join("url");
    // The container's arguments, with what the kubelet would substitute and mount.
    let args: Vec<String> = strings(&emulator["args"])
        .into_iter()
        .map(|a| {
            if a.starts_with("--listen=") {
                "--listen=127.0.0.1:0".into()
            } else if a.starts_with("--seed=") {
                format!("--seed={}", dir.path().join("seed.yaml").display())
            } else {
                a.replace("$(KMSYNC_EMULATOR_ACCESS_KEY)", &access_key)
            }
        })
        .collect();
    assert!(
        args.iter()
            .any(|a| a == &format!("--access-key={access_key}"))
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_kmsync"))
        .args(&args)
        .arg(format!("--port-file={}", port_file.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the emulator");
    let url = wait_for("the emulator's port file", 30, || async {
        std::fs::read_to_string(&port_file)
            .ok()
            .filter(|u| !u.is_empty())
    })
    .await;
    let (id, secret) = access_key.split_once(':').expect("ID:SECRET");
    let read = Command::new(env!("CARGO_BIN_EXE_kmsync"))
        .args(["kms", "--region", "cn-hangzhou", "--endpoint", url.trim()])
        .args(["--access-key-id", id, "--access-key-secret", secret])
        .args(["GetSecretValue", "--SecretName", "db_cred"])
        .output()
        .expect("kmsync kms");
    let _ = child.kill();
    let _ = child.wait();
    assert!(read.status.success(), "{}", describe(&read));
    assert!(
        String::from_utf8_lossy(&read.stdout).contains("demo-password-v1"),
        "{}",
        describe(&read)
    );
}
