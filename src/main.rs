//! The `kmsync` binary: parses the command line and dispatches to a subcommand.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "kmsync",
    version,
    about = "Sync and rotate Alibaba Cloud KMS secrets into Kubernetes Secrets"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print every CustomResourceDefinition as YAML (what `crds/` holds).
    Crd,
}

fn main() -> ExitCode {
    match Cli::parse().command {
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
    }
}
