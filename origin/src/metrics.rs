//! The origin's Prometheus metrics (`origin_*`), one registry per server instance.

use prometheus::{
    HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// Every metric the origin exports.
#[derive(Debug)]
pub struct Metrics {
    /// The registry they live in (rendered at `/metrics`).
    pub registry: Registry,
    /// Open client connections and the ones the server's limits cut
    /// (`origin_connections_open`, `origin_connections_cut_total{reason}`).
    pub conns: service::conn::ConnMetrics,
    /// HTTP requests by object kind and status.
    pub http_requests: IntCounterVec,
    /// Time to produce a response head, by object kind.
    pub http_duration: HistogramVec,
    /// Segments published, per stream and rendition.
    pub segments_published: IntCounterVec,
    /// Input bytes received, per stream and rendition.
    pub input_bytes: IntCounterVec,
    /// Input problems survived, per stream, rendition and kind.
    pub input_errors: IntCounterVec,
    /// Discontinuities published.
    pub discontinuities: IntCounterVec,
    /// Pushes refused or cut off, by reason.
    pub ingest_rejected: IntCounterVec,
    /// Open ingest connections.
    pub ingest_connections: IntGauge,
    /// From the arrival of the input completing a segment to the playlist listing it.
    pub publish_delay: HistogramVec,
    /// Segments listed per playlist.
    pub window_segments: IntGaugeVec,
    /// Bytes held per rendition (listed and retired segments).
    pub store_bytes: IntGaugeVec,
}

impl Metrics {
    /// Creates and registers every metric in a fresh registry.
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        service::metrics::register_build_info(&registry, "origin")?;
        let sr = &["stream", "rendition"];
        let m = Self {
            http_requests: IntCounterVec::new(
                Opts::new(
                    "origin_http_requests_total",
                    "HTTP requests by object kind and status.",
                ),
                &["kind", "status"],
            )?,
            http_duration: HistogramVec::new(
                HistogramOpts::new(
                    "origin_http_request_duration_seconds",
                    "Time to response head, by object kind.",
                )
                .buckets(service::metrics::LATENCY_BUCKETS.to_vec()),
                &["kind"],
            )?,
            segments_published: IntCounterVec::new(
                Opts::new("origin_segments_published_total", "Segments published."),
                sr,
            )?,
            input_bytes: IntCounterVec::new(
                Opts::new("origin_input_bytes_total", "MPEG-TS bytes received."),
                sr,
            )?,
            input_errors: IntCounterVec::new(
                Opts::new(
                    "origin_input_errors_total",
                    "Input problems survived, by kind.",
                ),
                &["stream", "rendition", "kind"],
            )?,
            discontinuities: IntCounterVec::new(
                Opts::new("origin_discontinuities_total", "Discontinuities published."),
                sr,
            )?,
            ingest_rejected: IntCounterVec::new(
                Opts::new(
                    "origin_ingest_rejected_total",
                    "Pushes refused or cut off, by reason.",
                ),
                &["stream", "reason"],
            )?,
            ingest_connections: IntGauge::new(
                "origin_ingest_connections",
                "Open HTTP ingest connections.",
            )?,
            publish_delay: HistogramVec::new(
                HistogramOpts::new(
                    "origin_segment_publish_delay_seconds",
                    "From the arrival of the input that completes a segment to the playlist listing it.",
                )
                .buckets(vec![
                    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                    0.1, 0.5,
                ]),
                &["stream"],
            )?,
            window_segments: IntGaugeVec::new(
                Opts::new(
                    "origin_window_segments",
                    "Segments listed in the media playlist.",
                ),
                sr,
            )?,
            store_bytes: IntGaugeVec::new(
                Opts::new(
                    "origin_store_bytes",
                    "Segment bytes held in memory (listed and retired).",
                ),
                sr,
            )?,
            conns: service::conn::ConnMetrics::register(&registry, "origin")?,
            registry,
        };
        m.registry.register(Box::new(m.http_requests.clone()))?;
        m.registry.register(Box::new(m.http_duration.clone()))?;
        m.registry
            .register(Box::new(m.segments_published.clone()))?;
        m.registry.register(Box::new(m.input_bytes.clone()))?;
        m.registry.register(Box::new(m.input_errors.clone()))?;
        m.registry.register(Box::new(m.discontinuities.clone()))?;
        m.registry.register(Box::new(m.ingest_rejected.clone()))?;
        m.registry
            .register(Box::new(m.ingest_connections.clone()))?;
        m.registry.register(Box::new(m.publish_delay.clone()))?;
        m.registry.register(Box::new(m.window_segments.clone()))?;
        m.registry.register(Box::new(m.store_bytes.clone()))?;
        Ok(m)
    }
}
