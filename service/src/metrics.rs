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

/// Sum of every sample of metric `name` (all label sets) in exposition-format `text`, as a
/// scraper reads another program's `/metrics`; `None` when the metric is absent.
pub fn sum_samples(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        // The name must end here: `edge_requests_total{...} 3` or `edge_requests_total 3`.
        let value = if rest.starts_with('{') {
            rest.rsplit_once('}').map(|(_, v)| v)
        } else if rest.starts_with(' ') {
            Some(rest)
        } else {
            None
        };
        if let Some(v) = value.and_then(|v| v.split_whitespace().next())
            && let Ok(v) = v.parse::<f64>()
        {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

/// Content-Type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Histogram buckets for request latencies in seconds (100 µs to 10 s: a cache hit takes
/// well under a millisecond, and a coarser first bucket would hide a miss among the hits).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_every_label_set_of_one_metric() {
        let text =
            "# HELP x_total t\nx_total{a=\"1\"} 3\nx_total{a=\"}\"} 4\nx_total_other 100\ny 1\n";
        assert_eq!(sum_samples(text, "x_total"), Some(7.0));
        assert_eq!(sum_samples("x 2.5\n", "x"), Some(2.5));
        assert_eq!(sum_samples(text, "z"), None);
    }
}
