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
    Crd,
    /// Run the local KMS Secrets Manager emulator (with STS and ECS metadata).
    Emulator(Box<kmsync::emulator::cli::EmulatorArgs>),
    /// Call Alibaba Cloud KMS with the `aliyun kms` syntax, e.g.
    /// `kmsync kms GetSecretValue --SecretName db_cred`.
    Kms(Box<kmsync::kms::cli::KmsArgs>),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    kmsync::telemetry::init(cli.log_format == LogFormat::Json);
    match cli.command {
        Command::Run(args) => run(&args).await,
        Command::Crd => match kmsync::crd::render_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("kmsync crd: cannot render CRDs: {error}");
                ExitCode::FAILURE
            }
        },
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
