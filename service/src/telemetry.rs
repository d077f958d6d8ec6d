//! Tracing setup: `RUST_LOG` filter (default `info`), human-readable lines on stderr.

use tracing_subscriber::EnvFilter;

/// Installs the global tracing subscriber; later calls are no-ops (tests start many servers).
pub fn init_tracing() {
    init_tracing_at("info");
}

/// Like [`init_tracing`] with another default level when `RUST_LOG` is unset (a client that
/// draws a progress bar wants only warnings).
pub fn init_tracing_at(default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
