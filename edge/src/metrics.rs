//! The edge's Prometheus metrics (`edge_*`), one registry per server instance.

use prometheus::{
    HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// Every metric the edge exports.
#[derive(Debug)]
pub struct Metrics {
    /// The registry (rendered at `/metrics`).
    pub registry: Registry,
    /// Client requests by object kind, cache phase and status.
    pub requests: IntCounterVec,
    /// Time to response head, by kind and cache phase.
    pub request_duration: HistogramVec,
    /// Upstream requests (attempts) by upstream and status (`error`, `timeout` when none).
    pub upstream_requests: IntCounterVec,
    /// Time to upstream response head.
    pub upstream_duration: HistogramVec,
    /// Upstream fetches started (one per flight), by kind.
    pub upstream_fetches: IntCounterVec,
    /// Requests that joined a fetch already under way, by kind.
    pub coalesced_waiters: IntCounterVec,
    /// Fetches under way.
    pub inflight_fetches: IntGauge,
    /// Stale objects served, by reason.
    pub stale_served: IntCounterVec,
    /// Requests shed, by reason.
    pub shed: IntCounterVec,
    /// Requests in progress (head not yet answered or body still streaming).
    pub active_requests: IntGauge,
    /// Bytes in the cache (as weighed).
    pub cache_bytes: IntGauge,
    /// Objects in the cache.
    pub cache_objects: IntGauge,
    /// 1 when the upstream passes health checks.
    pub upstream_healthy: IntGaugeVec,
    /// Breaker position: 0 closed, 1 open, 2 half-open.
    pub breaker_state: IntGaugeVec,
    /// Retries by result (`retried`, `budget_exhausted`).
    pub retries: IntCounterVec,
    /// Config reloads by outcome (`ok`, `refused`).
    pub reloads: IntCounterVec,
    /// Requests refused for their viewer token, by reason.
    pub token_rejected: IntCounterVec,
    /// Access-log lines dropped because the writer fell behind.
    pub access_log_dropped: prometheus::IntCounter,
    /// Admin actions by action and outcome (`ok`, `refused`, `unauthorized`).
    pub admin_actions: IntCounterVec,
    /// Objects removed by `POST /purge`.
    pub purged: prometheus::IntCounter,
    /// Re-resolutions of an upstream name that failed or found no address.
    pub upstream_resolve_failures: prometheus::IntCounter,
    /// Upstreams listed now (a re-resolved name counts once per address).
    pub upstream_pool_size: IntGauge,
    /// Segments fetched ahead of any viewer (pre-warming).
    pub prefetched: prometheus::IntCounter,
    /// Prefetched segments later served to a viewer (counted once per segment).
    pub prefetched_used: prometheus::IntCounter,
    /// Prefetched segments evicted, expired or replaced before any viewer asked.
    pub prefetched_wasted: prometheus::IntCounter,
    /// Newly listed segments not prefetched, by reason (`busy`: too many under way).
    pub prefetch_skipped: IntCounterVec,
    /// Open client connections and the ones the server's limits cut
    /// (`edge_connections_open`, `edge_connections_cut_total{reason}`).
    pub conns: service::conn::ConnMetrics,
}

impl Metrics {
    /// Creates and registers every metric in a fresh registry.
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        service::metrics::register_build_info(&registry, "edge")?;
        let buckets = service::metrics::LATENCY_BUCKETS.to_vec();
        let m = Self {
            requests: IntCounterVec::new(
                Opts::new(
                    "edge_requests_total",
                    "Client requests by kind, cache phase and status.",
                ),
                &["kind", "cache", "status"],
            )?,
            request_duration: HistogramVec::new(
                HistogramOpts::new(
                    "edge_request_duration_seconds",
                    "Time to response head (time to first byte).",
                )
                .buckets(buckets.clone()),
                &["kind", "cache"],
            )?,
            upstream_requests: IntCounterVec::new(
                Opts::new(
                    "edge_upstream_requests_total",
                    "Upstream attempts by upstream and status.",
                ),
                &["upstream", "status"],
            )?,
            upstream_duration: HistogramVec::new(
                HistogramOpts::new(
                    "edge_upstream_duration_seconds",
                    "Time to upstream response head.",
                )
                .buckets(buckets),
                &["upstream"],
            )?,
            upstream_fetches: IntCounterVec::new(
                Opts::new(
                    "edge_upstream_fetches_total",
                    "Upstream fetches started (one per coalesced flight).",
                ),
                &["kind"],
            )?,
            coalesced_waiters: IntCounterVec::new(
                Opts::new(
                    "edge_coalesced_waiters_total",
                    "Requests that joined a fetch already under way.",
                ),
                &["kind"],
            )?,
            inflight_fetches: IntGauge::new(
                "edge_inflight_fetches",
                "Upstream fetches under way.",
            )?,
            stale_served: IntCounterVec::new(
                Opts::new(
                    "edge_stale_served_total",
                    "Stale objects served, by reason.",
                ),
                &["reason"],
            )?,
            shed: IntCounterVec::new(
                Opts::new("edge_shed_total", "Requests shed with 503, by reason."),
                &["reason"],
            )?,
            active_requests: IntGauge::new("edge_active_requests", "Requests in progress.")?,
            cache_bytes: IntGauge::new("edge_cache_bytes", "Bytes held in the cache.")?,
            cache_objects: IntGauge::new("edge_cache_objects", "Objects held in the cache.")?,
            upstream_healthy: IntGaugeVec::new(
                Opts::new(
                    "edge_upstream_healthy",
                    "1 when the upstream passes health checks.",
                ),
                &["upstream"],
            )?,
            breaker_state: IntGaugeVec::new(
                Opts::new(
                    "edge_upstream_breaker_state",
                    "Circuit breaker: 0 closed, 1 open, 2 half-open.",
                ),
                &["upstream"],
            )?,
            retries: IntCounterVec::new(
                Opts::new("edge_retries_total", "Upstream retries by result."),
                &["result"],
            )?,
            reloads: IntCounterVec::new(
                Opts::new(
                    "edge_reloads_total",
                    "Config reloads by outcome (ok, refused).",
                ),
                &["outcome"],
            )?,
            token_rejected: IntCounterVec::new(
                Opts::new(
                    "edge_token_rejected_total",
                    "Requests refused for their viewer token, by reason (missing, malformed, expired, bad_signature).",
                ),
                &["reason"],
            )?,
            access_log_dropped: prometheus::IntCounter::new(
                "edge_access_log_dropped_total",
                "Access-log lines dropped because the writer fell behind.",
            )?,
            admin_actions: IntCounterVec::new(
                Opts::new(
                    "edge_admin_actions_total",
                    "Admin actions (purge, reload, drain) by outcome (ok, refused, unauthorized).",
                ),
                &["action", "outcome"],
            )?,
            purged: prometheus::IntCounter::new(
                "edge_purged_objects_total",
                "Objects removed by POST /purge.",
            )?,
            upstream_resolve_failures: prometheus::IntCounter::new(
                "edge_upstream_resolve_failures_total",
                "Re-resolutions of an upstream name that failed or found no address (the last answer is kept).",
            )?,
            upstream_pool_size: IntGauge::new(
                "edge_upstream_pool_size",
                "Upstreams listed now (a re-resolved name counts once per address).",
            )?,
            prefetched: prometheus::IntCounter::new(
                "edge_prefetched_total",
                "Newly listed segments fetched before any viewer asked (pre-warming).",
            )?,
            prefetched_used: prometheus::IntCounter::new(
                "edge_prefetched_used_total",
                "Prefetched segments later served to a viewer (once per segment).",
            )?,
            prefetched_wasted: prometheus::IntCounter::new(
                "edge_prefetched_wasted_total",
                "Prefetched segments evicted, expired or replaced before any viewer asked.",
            )?,
            prefetch_skipped: IntCounterVec::new(
                Opts::new(
                    "edge_prefetch_skipped_total",
                    "Newly listed segments not prefetched, by reason (busy: max_concurrent under way).",
                ),
                &["reason"],
            )?,
            conns: service::conn::ConnMetrics::register(&registry, "edge")?,
            registry,
        };
        for c in [
            &m.requests,
            &m.upstream_requests,
            &m.upstream_fetches,
            &m.coalesced_waiters,
            &m.stale_served,
            &m.shed,
            &m.retries,
            &m.reloads,
            &m.token_rejected,
            &m.admin_actions,
            &m.prefetch_skipped,
        ] {
            m.registry.register(Box::new(c.clone()))?;
        }
        m.registry
            .register(Box::new(m.access_log_dropped.clone()))?;
        for c in [
            &m.purged,
            &m.upstream_resolve_failures,
            &m.prefetched,
            &m.prefetched_used,
            &m.prefetched_wasted,
        ] {
            m.registry.register(Box::new(c.clone()))?;
        }
        // process_cpu_seconds_total, process_resident_memory_bytes, process_open_fds, ...
        m.registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        for h in [&m.request_duration, &m.upstream_duration] {
            m.registry.register(Box::new(h.clone()))?;
        }
        for g in [
            &m.inflight_fetches,
            &m.active_requests,
            &m.cache_bytes,
            &m.cache_objects,
            &m.upstream_pool_size,
        ] {
            m.registry.register(Box::new(g.clone()))?;
        }
        for g in [&m.upstream_healthy, &m.breaker_state] {
            m.registry.register(Box::new(g.clone()))?;
        }
        Ok(m)
    }
}
