//! The `kmsync` binary: parses the command line and dispatches to a subcommand.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "kmsync",
    version,
    about = "Sync Alibaba Cloud KMS secrets into Kubernetes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Call Alibaba Cloud KMS with the `aliyun kms` syntax.
    Kms(kmsync::kms::cli::KmsArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Kms(args) => kmsync::kms::cli::run(args).await,
    }
}
