//! Logging setup: tracing to stderr (the journal under systemd), text or JSON.

use tracing_subscriber::EnvFilter;

/// `RUST_LOG` wins over the configured level so an operator can raise it for one run.
pub fn init(level: &str, format: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = if format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
