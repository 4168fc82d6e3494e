//! The `kmsync` binary: parses the command line and dispatches to a subcommand.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "kmsync",
    version,
    about = "Sync and rotate Alibaba Cloud KMS secrets into Kubernetes Secrets"
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the operator: sync ManagedSecrets into Secrets and report status.
    Run(Box<kmsync::controller::run::RunArgs>),
    /// Print every CustomResourceDefinition as YAML (what `crds/` holds).
    Crd {
        /// Print the Markdown field reference instead (docs/reference.md).
        #[arg(long)]
        reference: bool,
    },
    /// The kubectl plugin's commands (also available as `kubectl kmsync` when this binary is
    /// installed as `kubectl-kmsync` on the PATH).
    Plugin(Box<PluginCli>),
    /// Run the local KMS Secrets Manager emulator (with STS and ECS metadata).
    Emulator(Box<kmsync::emulator::cli::EmulatorArgs>),
    /// Call Alibaba Cloud KMS with the `aliyun kms` syntax, e.g.
    /// `kmsync kms GetSecretValue --SecretName db_cred`.
    Kms(Box<kmsync::kms::cli::KmsArgs>),
}

/// Installed as `kubectl-kmsync`, the binary is a kubectl plugin.
fn invoked_as_kubectl_plugin() -> bool {
    std::env::args_os()
        .next()
        .and_then(|argv0| {
            std::path::Path::new(&argv0)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .is_some_and(|name| name.starts_with("kubectl-kmsync"))
}

#[derive(Debug, clap::Args)]
struct PluginCli {
    #[command(flatten)]
    args: kmsync::plugin::PluginArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    if invoked_as_kubectl_plugin() {
        kmsync::telemetry::init(false);
        return kmsync::plugin::main(kmsync::plugin::PluginArgs::parse()).await;
    }
    let cli = Cli::parse();
    kmsync::telemetry::init(cli.log_format == LogFormat::Json);
    match cli.command {
        Command::Run(args) => run(&args).await,
        Command::Crd { reference: true } => {
            print!("{}", kmsync::crd::reference::markdown(&kmsync::crd::all()));
            ExitCode::SUCCESS
        }
        Command::Crd { reference: false } => match kmsync::crd::render_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("kmsync crd: cannot render CRDs: {error}");
                ExitCode::FAILURE
            }
        },
        Command::Plugin(plugin) => kmsync::plugin::main(plugin.args).await,
        Command::Emulator(args) => kmsync::emulator::cli::run(*args).await,
        Command::Kms(args) => kmsync::kms::cli::run(*args).await,
    }
}

async fn run(args: &kmsync::controller::run::RunArgs) -> ExitCode {
    let options = match args.options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("kmsync run: {message}");
            return ExitCode::from(2);
        }
    };
    let client = match kube::Client::try_default().await {
        Ok(client) => client,
        Err(error) => {
            eprintln!(
                "kmsync run: no Kubernetes client (in-cluster config or KUBECONFIG): {error}"
            );
            return ExitCode::FAILURE;
        }
    };
    match kmsync::controller::run::run(client, options).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("kmsync run: {error}");
            ExitCode::FAILURE
        }
    }
}
