//! The simulator's Prometheus metrics (`player_*`) during a live run.

use prometheus::{
    Counter, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

/// Every metric a live run exports.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// The registry (rendered at `/metrics`).
    pub registry: Registry,
    /// Players currently in a session.
    pub active: IntGauge,
    /// Players currently stalled (after startup).
    pub stalled: IntGauge,
    /// Players that joined.
    pub joined: IntCounter,
    /// Sessions that ended in a fatal error (master playlist or a segment failed for good).
    pub failed: IntCounter,
    /// HTTP requests by kind (`master`, `playlist`, `segment`) and result (status class,
    /// `timeout`, `error`, `abandoned`, `resync`, `unparsable`).
    pub requests: IntCounterVec,
    /// Media bytes received.
    pub bytes: IntCounter,
    /// Stall time after startup, seconds.
    pub rebuffer_seconds: Counter,
    /// Stalls after startup.
    pub rebuffers: IntCounter,
    /// Join to first frame, seconds.
    pub startup_seconds: Histogram,
    /// Quality switches by direction.
    pub switches: IntCounterVec,
}

impl Metrics {
    /// Creates and registers every metric in a fresh registry.
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        service::metrics::register_build_info(&registry, "player")?;
        let m = Self {
            active: IntGauge::new("player_active", "Players currently in a session.")?,
            stalled: IntGauge::new("player_stalled", "Players currently stalled.")?,
            joined: IntCounter::new("player_joined_total", "Players that joined.")?,
            failed: IntCounter::new(
                "player_failed_total",
                "Sessions that ended in a fatal error.",
            )?,
            requests: IntCounterVec::new(
                Opts::new("player_requests_total", "HTTP requests by kind and result."),
                &["kind", "result"],
            )?,
            bytes: IntCounter::new("player_bytes_total", "Bytes received.")?,
            rebuffer_seconds: Counter::new(
                "player_rebuffer_seconds_total",
                "Stall time after startup, seconds.",
            )?,
            rebuffers: IntCounter::new("player_rebuffers_total", "Stalls after startup.")?,
            startup_seconds: Histogram::with_opts(
                HistogramOpts::new("player_startup_seconds", "Join to first frame, seconds.")
                    .buckets(vec![
                        0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 20.0, 30.0,
                    ]),
            )?,
            switches: IntCounterVec::new(
                Opts::new("player_switches_total", "Quality switches by direction."),
                &["direction"],
            )?,
            registry,
        };
        for c in [
            Box::new(m.active.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.stalled.clone()),
            Box::new(m.joined.clone()),
            Box::new(m.failed.clone()),
            Box::new(m.requests.clone()),
            Box::new(m.bytes.clone()),
            Box::new(m.rebuffer_seconds.clone()),
            Box::new(m.rebuffers.clone()),
            Box::new(m.startup_seconds.clone()),
            Box::new(m.switches.clone()),
        ] {
            m.registry.register(c)?;
        }
        Ok(m)
    }
}
