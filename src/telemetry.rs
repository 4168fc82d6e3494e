//! Logging setup: `RUST_LOG`-style filters (default `info`), to stderr, JSON with `--log-format json`.
//! Nothing logged anywhere in kmsync carries a secret value; types holding them print `<redacted>`.

/// Installs the global subscriber once.
pub fn init(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
}
