//! The `kmsync` binary: parses the command line and dispatches to a subcommand.
#![forbid(unsafe_code)]
fn main() {}
