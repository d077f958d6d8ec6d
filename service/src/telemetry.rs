//! Tracing setup: `RUST_LOG` filter (default `info`), human-readable lines on stderr.

use tracing_subscriber::EnvFilter;

/// Installs the global tracing subscriber; later calls are no-ops (tests start many servers).
pub fn init_tracing() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
