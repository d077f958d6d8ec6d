//! Prometheus helpers: per-instance registries, build info and text encoding.

use prometheus::{Encoder, IntGaugeVec, Opts, Registry, TextEncoder};

/// Registers `<program>_build_info{version} 1` in `registry`.
pub fn register_build_info(registry: &Registry, program: &str) -> prometheus::Result<()> {
    let g = IntGaugeVec::new(
        Opts::new(
            format!("{program}_build_info"),
            "Build information; the value is always 1.",
        ),
        &["version"],
    )?;
    g.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
    registry.register(Box::new(g))
}

/// Renders every metric in `registry` in the Prometheus text exposition format.
pub fn encode(registry: &Registry) -> String {
    let mut buf = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&registry.gather(), &mut buf) {
        tracing::warn!(error = %e, "cannot encode metrics");
    }
    String::from_utf8(buf).unwrap_or_default()
}

/// Content-Type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Histogram buckets for request latencies in seconds (1 ms to 10 s).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
