//! `kubectl kmsync` (this binary installed as `kubectl-kmsync`): status of ManagedSecrets, asking
//! for a sync or a rotation, and the KMS versions of a ManagedSecret's secret. Runs with the
//! user's own kubeconfig and permissions; `versions` reads the store's credentials, so only a user
//! allowed to read them can list versions.

use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use crate::controller::kms_source::{KmsSourceFactory, KmsSourceSettings};
use crate::controller::reconcile::ANNOTATION_FORCE_SYNC;
use crate::controller::stores;
use crate::crd::ManagedSecret;
use crate::crd::conditions::{find, types};
use crate::kms::actions::ListSecretVersionIdsRequest;

use crate::rotation::driver::ANNOTATION_ROTATE;

#[derive(Debug, Parser)]
#[command(
    name = "kubectl kmsync",
    version,
    about = "Inspect and nudge kmsync ManagedSecrets"
)]
pub struct PluginArgs {
    /// Namespace (default: the kubeconfig's current namespace).
    #[arg(short, long, global = true)]
    pub namespace: Option<String>,
    #[arg(short, long, global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    #[command(subcommand)]
    pub command: PluginCommand,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// A table of ManagedSecrets: readiness, version, stage, last sync, next rotation, reason.
    Status {
        /// Every namespace.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
    },
    /// Ask the operator for one sync now (kmsync.io/force-sync).
    Sync { name: String },
    /// Ask the operator for one rotation now (kmsync.io/rotate; needs spec.rotation).
    Rotate { name: String },
    /// The KMS versions and stages of the ManagedSecret's secret, read with the store's credentials.
    Versions { name: String },
}

/// Entry point for `kubectl-kmsync …` and `kmsync plugin …`.
pub async fn main(args: PluginArgs) -> ExitCode {
    let client = match Client::try_default().await {
        Ok(client) => client,
        Err(error) => {
            eprintln!("error: no usable kubeconfig ({error})");
            return ExitCode::FAILURE;
        }
    };
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_string());
    let result = match &args.command {
        PluginCommand::Status { all_namespaces } => {
            status(&client, &namespace, *all_namespaces, args.output).await
        }
        PluginCommand::Sync { name } => {
            annotate(
                &client,
                &namespace,
                name,
                ANNOTATION_FORCE_SYNC,
                args.output,
                false,
            )
            .await
        }
        PluginCommand::Rotate { name } => {
            annotate(
                &client,
                &namespace,
                name,
                ANNOTATION_ROTATE,
                args.output,
                true,
            )
            .await
        }
        PluginCommand::Versions { name } => versions(&client, &namespace, name, args.output).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn kube_message(error: kube::Error, what: &str) -> String {
    match error {
        kube::Error::Api(status) if status.code == 404 => format!("{what} not found"),
        kube::Error::Api(status) if status.code == 403 => {
            format!("not allowed to access {what}: {}", status.message)
        }
        other => format!("{what}: {other}"),
    }
}

/// One row of `status`.
fn row(ms: &ManagedSecret) -> Value {
    let status = ms.status.clone().unwrap_or_default();
    let ready = find(&status.conditions, types::READY);
    json!({
        "namespace": ms.namespace(),
        "name": ms.name_any(),
        "ready": ready.map(|c| c.status.clone()).unwrap_or_else(|| "Unknown".into()),
        "reason": ready.map(|c| c.reason.clone()).unwrap_or_default(),
        "message": ready.map(|c| c.message.clone()).unwrap_or_default(),
        "secretName": ms.spec.secret_name,
        "version": status.source.as_ref().and_then(|s| s.version_id.clone()),
        "stages": status.source.as_ref().map(|s| s.version_stages.clone()).unwrap_or_default(),
        "lastSync": status.last_sync_time,
        "nextRotation": status.rotation.as_ref().and_then(|r| r.next_rotation_time.clone()),
    })
}

async fn status(client: &Client, namespace: &str, all: bool, output: Output) -> Result<(), String> {
    let api: Api<ManagedSecret> = if all {
        Api::all(client.clone())
    } else {
        Api::namespaced(client.clone(), namespace)
    };
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(|e| kube_message(e, "ManagedSecrets"))?;
    let rows: Vec<Value> = list.items.iter().map(row).collect();
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&rows).expect("json"));
        return Ok(());
    }
    if rows.is_empty() {
        println!(
            "No ManagedSecrets found{}.",
            if all {
                String::new()
            } else {
                format!(" in namespace {namespace}")
            }
        );
        return Ok(());
    }
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Array(a) => a
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(","),
        Value::Null => "-".into(),
        other => other.to_string(),
    };
    let columns = [
        "namespace",
        "name",
        "ready",
        "reason",
        "version",
        "stages",
        "lastSync",
        "nextRotation",
    ];
    let headers = [
        "NAMESPACE",
        "NAME",
        "READY",
        "REASON",
        "VERSION",
        "STAGE",
        "LAST SYNC",
        "NEXT ROTATION",
    ];
    let skip = usize::from(!all);
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| columns[skip..].iter().map(|c| text(&r[*c])).collect())
        .collect();
    let widths: Vec<usize> = headers[skip..]
        .iter()
        .enumerate()
        .map(|(i, h)| {
            cells
                .iter()
                .map(|row| row[i].len())
                .chain([h.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |values: Vec<&str>| {
        values
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect::<Vec<_>>()
            .join("   ")
            .trim_end()
            .to_string()
    };
    println!("{}", line(headers[skip..].to_vec()));
    for row in &cells {
        println!("{}", line(row.iter().map(String::as_str).collect()));
    }
    Ok(())
}

async fn annotate(
    client: &Client,
    namespace: &str,
    name: &str,
    key: &str,
    output: Output,
    rotation: bool,
) -> Result<(), String> {
    let api: Api<ManagedSecret> = Api::namespaced(client.clone(), namespace);
    let ms = api
        .get(name)
        .await
        .map_err(|e| kube_message(e, &format!("ManagedSecret {namespace}/{name}")))?;
    if rotation && ms.spec.rotation.is_none() {
        return Err(format!(
            "ManagedSecret {namespace}/{name} has no spec.rotation, so kmsync does not produce its versions"
        ));
    }
    let value = jiff::Timestamp::now().to_string();
    let patch = json!({"metadata": {"annotations": {key: value}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| kube_message(e, &format!("ManagedSecret {namespace}/{name}")))?;
    match output {
        Output::Json => println!(
            "{}",
            json!({"namespace": namespace, "name": name, "annotation": key, "value": value})
        ),
        Output::Table => println!(
            "{} requested for ManagedSecret {namespace}/{name} ({key}={value})",
            if rotation { "Rotation" } else { "Sync" }
        ),
    }
    Ok(())
}

async fn versions(
    client: &Client,
    namespace: &str,
    name: &str,
    output: Output,
) -> Result<(), String> {
    let api: Api<ManagedSecret> = Api::namespaced(client.clone(), namespace);
    let ms = api
        .get(name)
        .await
        .map_err(|e| kube_message(e, &format!("ManagedSecret {namespace}/{name}")))?;
    let found = stores::lookup(client, &ms)
        .await
        .map_err(|e| e.to_string())?;
    let store = stores::resolve(client, found)
        .await
        .map_err(|e| e.to_string())?;
    // The same endpoint allow-list and identity rule as the operator's
    // (`KMSYNC_ALLOWED_ENDPOINT_HOSTS`, `KMSYNC_ALLOW_NAMESPACED_OPERATOR_IDENTITY`).
    let mut settings = KmsSourceSettings {
        allow_namespaced_operator_identity: std::env::var(
            "KMSYNC_ALLOW_NAMESPACED_OPERATOR_IDENTITY",
        )
        .is_ok_and(|v| v == "true"),
        ..KmsSourceSettings::default()
    };
    if let Ok(list) = std::env::var("KMSYNC_ALLOWED_ENDPOINT_HOSTS") {
        settings.endpoint_policy = crate::controller::endpoint_policy::EndpointPolicy::parse(&list)
            .map_err(|e| format!("KMSYNC_ALLOWED_ENDPOINT_HOSTS: {e}"))?;
    }
    let factory = KmsSourceFactory::new(settings, Arc::default());
    let kms = factory.client(&store).map_err(|e| e.to_string())?;
    let mut entries = Vec::new();
    for page in 1..=10u32 {
        let request = ListSecretVersionIdsRequest {
            secret_name: ms.spec.secret_name.clone(),
            include_deprecated: Some(true),
            page_number: Some(page),
            page_size: Some(100),
        };
        let response = kms
            .list_secret_version_ids(&request)
            .await
            .map_err(|e| format!("KMS: {e}"))?;
        let done = response.version_ids.len() < 100;
        entries.extend(response.version_ids);
        if done {
            break;
        }
    }
    let synced = ms
        .status
        .as_ref()
        .and_then(|s| s.source.as_ref()?.version_id.clone());
    let rows: Vec<Value> = entries
        .iter()
        .map(|v| json!({"versionId": v.version_id, "stages": v.version_stages, "createTime": v.create_time,
                        "synced": synced.as_deref() == Some(v.version_id.as_str())}))
        .collect();
    if output == Output::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"secretName": ms.spec.secret_name, "versions": rows})
            )
            .expect("json")
        );
        return Ok(());
    }
    println!("KMS secret {} (store {}):", ms.spec.secret_name, store.key);
    println!(
        "{:<36} {:<32} {:<22} SYNCED",
        "VERSION", "STAGES", "CREATED"
    );
    for v in &entries {
        let mark = if synced.as_deref() == Some(v.version_id.as_str()) {
            "*"
        } else {
            ""
        };
        let stages = if v.version_stages.is_empty() {
            "-".to_string()
        } else {
            v.version_stages.join(",")
        };
        println!(
            "{:<36} {:<32} {:<22} {mark}",
            v.version_id,
            stages,
            v.create_time.as_deref().unwrap_or("-")
        );
    }
    Ok(())
}
