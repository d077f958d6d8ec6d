//! The ordered list of upstreams: failover in order of preference, active health checks,
//! a circuit breaker each, and retries (only before a response head, where GET is safe to
//! repeat) under a budget and a per-fetch deadline. With `resolve_interval`, a configured
//! name stands for one upstream per address it resolves to, re-resolved as it changes (a
//! shield pool behind a Kubernetes headless Service); in a hashed pool, a node that
//! returns or appears is ramped in (`rendezvous::ramp`).

use http::{Method, Request, Response, header};
use hyper::body::Incoming;
use service::client::HttpClient;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use tokio::time::Instant;

use arc_swap::ArcSwap;

use crate::breaker::{Breaker, Position};
use crate::config::UpstreamConfig;
use crate::flight::FetchError;
use crate::key::CacheKey;
use crate::metrics::Metrics;
use crate::retry::{RetryBudget, backoff};

/// Whether a response is the upstream's answer rather than its failure. Everything below
/// 500 is; so is a 5xx with `Retry-After` (a 503 for a stream not fed yet, say): the server
/// is up and says when to come back, so the answer is passed on as it is — not retried, not
/// failed over, and not counted against the breaker, whose business is upstreams that are
/// down (transport failures, timeouts, unexplained 5xx), not one path's state.
pub fn is_deliberate<B>(resp: &Response<B>) -> bool {
    !resp.status().is_server_error()
        || resp
            .headers()
            .get(header::RETRY_AFTER)
            .is_some_and(|v| !v.as_bytes().is_empty())
}

/// One upstream.
#[derive(Debug)]
pub struct Upstream {
    /// `host:port`, the metrics label.
    pub name: String,
    /// `http://host:port[/prefix]` without a trailing slash.
    pub base: String,
    healthy: AtomicBool,
    /// Whether any health check has run yet (the first one decides at once).
    checked: AtomicBool,
    streak: AtomicU32,
    /// Its circuit breaker.
    pub breaker: Breaker,
    /// Which configured URL it comes from (`urls[source]`).
    source: usize,
    /// When its ramp-in began, ms since the set's epoch ([`NOT_RAMPING`]: not ramping).
    ramp_from_ms: AtomicU64,
}

/// Marker in `ramp_from_ms`.
const NOT_RAMPING: u64 = u64::MAX;

impl Upstream {
    fn new(name: String, base: String, source: usize, cfg: &UpstreamConfig) -> Self {
        Self {
            name,
            base,
            // Unknown until the first check, which runs at once; fetches still try it.
            healthy: AtomicBool::new(false),
            checked: AtomicBool::new(false),
            streak: AtomicU32::new(0),
            breaker: Breaker::new(cfg.breaker.failure_threshold, cfg.breaker.open_for),
            source,
            ramp_from_ms: AtomicU64::new(NOT_RAMPING),
        }
    }

    /// Whether the last health checks passed.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }
}

/// Looks up `host:port`: every address it stands for now.
pub type Resolver = Arc<
    dyn Fn(String) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<SocketAddr>>> + Send>>
        + Send
        + Sync,
>;

/// The system's resolver (`getaddrinfo`: /etc/hosts, then DNS).
pub fn system_resolver() -> Resolver {
    Arc::new(|host_port| {
        Box::pin(async move { Ok(tokio::net::lookup_host(host_port).await?.collect()) })
    })
}

/// A configured URL: its parts, and whether its host is a name to re-resolve.
#[derive(Debug)]
struct Source {
    /// `http` or `https`.
    scheme: String,
    /// `host:port` as written (the port defaulted from the scheme).
    host_port: String,
    /// Path prefix without a trailing slash.
    prefix: String,
    /// Re-resolved into one upstream per address.
    resolve: bool,
    /// Whether a resolution has succeeded yet (addresses found later are ramped in).
    resolved_once: AtomicBool,
}

impl Source {
    fn of(url: &str, resolve_names: bool) -> Self {
        let uri: http::Uri = url.parse().unwrap_or_default();
        let scheme = uri.scheme_str().unwrap_or("http").to_string();
        let host = uri.host().unwrap_or("");
        let port = uri
            .port_u16()
            .unwrap_or(if scheme == "https" { 443 } else { 80 });
        let is_name = host.parse::<std::net::IpAddr>().is_err() && !host.starts_with('[');
        Self {
            host_port: format!("{host}:{port}"),
            prefix: uri.path().trim_end_matches('/').to_string(),
            resolve: resolve_names && is_name,
            scheme,
            resolved_once: AtomicBool::new(false),
        }
    }
}

/// All upstreams, in order of preference.
pub struct Upstreams {
    list: ArcSwap<Vec<Arc<Upstream>>>,
    sources: Vec<Source>,
    resolver: Resolver,
    /// Zero of the ramp-in clocks.
    epoch: Instant,
    /// The header proving to the origin that a request comes from its CDN.
    auth: Option<(http::HeaderName, http::HeaderValue)>,
    client: HttpClient,
    cfg: UpstreamConfig,
    budget: RetryBudget,
    metrics: Arc<Metrics>,
}

impl Upstreams {
    /// Builds the set from config (URLs already validated). An upstream also in `previous`
    /// (a reload) keeps its health and breaker state unless the breaker settings changed.
    pub fn new(
        cfg: &UpstreamConfig,
        client: HttpClient,
        metrics: Arc<Metrics>,
        previous: Option<&Upstreams>,
    ) -> Self {
        let kept = |base: &str| {
            previous
                .filter(|p| p.cfg.breaker == cfg.breaker)
                .and_then(|p| p.list.load().iter().find(|u| u.base == base).cloned())
        };
        let list: Vec<Arc<Upstream>> = cfg
            .urls
            .iter()
            .enumerate()
            .map(|(i, u)| {
                if let Some(same) = kept(u.trim_end_matches('/')).filter(|k| k.source == i) {
                    return same;
                }
                let uri: http::Uri = u.parse().unwrap_or_default();
                let name = uri
                    .authority()
                    .map(|a| a.to_string())
                    .unwrap_or_else(|| u.clone());
                Arc::new(Upstream::new(
                    name,
                    u.trim_end_matches('/').to_string(),
                    i,
                    cfg,
                ))
            })
            .collect();
        let sources = cfg
            .urls
            .iter()
            .map(|u| Source::of(u, cfg.resolve_interval.is_some()))
            .collect();
        // Validated with the config (the variable was set then); read once here.
        let auth = match (&cfg.auth_header, cfg.auth_secret_value()) {
            (Some(h), Some(secret)) => http::HeaderName::from_bytes(h.as_bytes())
                .ok()
                .zip(http::HeaderValue::from_str(&secret).ok())
                .map(|(n, mut v)| {
                    v.set_sensitive(true);
                    (n, v)
                }),
            _ => None,
        };
        metrics.upstream_pool_size.set(list.len() as i64);
        Self {
            list: ArcSwap::from_pointee(list),
            sources,
            resolver: system_resolver(),
            epoch: Instant::now(),
            auth,
            client,
            cfg: cfg.clone(),
            budget: RetryBudget::new(cfg.retry_budget_ratio, cfg.retry_budget_min_per_sec),
            metrics,
        }
    }

    /// Resolves names with `r` instead of the system's resolver (tests, embedders).
    pub fn with_resolver(mut self, r: Resolver) -> Self {
        self.resolver = r;
        self
    }

    /// The upstreams now, in order of preference.
    pub fn list(&self) -> Arc<Vec<Arc<Upstream>>> {
        self.list.load_full()
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(NOT_RAMPING - 1)
    }

    /// Starts `u`'s ramp-in, in a hashed pool with a ramp configured.
    fn start_ramp(&self, u: &Upstream) {
        if self.cfg.pick == crate::config::Pick::Hashed && !self.cfg.ramp_in.is_zero() {
            u.ramp_from_ms.store(self.now_ms(), Ordering::Relaxed);
            tracing::info!(upstream = %u.name, ramp_in = ?self.cfg.ramp_in, "ramping in");
        }
    }

    /// `u`'s ramp-in weight now: its share of its own objects, in [0, 1].
    fn weight(&self, u: &Upstream, now_ms: u64) -> f64 {
        let from = u.ramp_from_ms.load(Ordering::Relaxed);
        if from == NOT_RAMPING {
            return 1.0;
        }
        let ramp = self.cfg.ramp_in.as_millis() as f64;
        let w = now_ms.saturating_sub(from) as f64 / ramp;
        if w >= 1.0 {
            u.ramp_from_ms.store(NOT_RAMPING, Ordering::Relaxed);
        }
        w.min(1.0)
    }

    /// Re-resolves every name source: an address that stays keeps its upstream (health,
    /// breaker), a new one is added (ramped in, unless this is the name's first
    /// resolution), a gone one is dropped. A failed or empty answer keeps what was there.
    pub async fn resolve(&self) {
        let current = self.list.load_full();
        let mut next: Vec<Arc<Upstream>> = Vec::with_capacity(current.len());
        let mut changed = false;
        for (i, src) in self.sources.iter().enumerate() {
            let of_source = current.iter().filter(|u| u.source == i);
            if !src.resolve {
                next.extend(of_source.cloned());
                continue;
            }
            let mut addrs = match (self.resolver)(src.host_port.clone()).await {
                Ok(a) if !a.is_empty() => a,
                answer => {
                    self.metrics.upstream_resolve_failures.inc();
                    let why = match answer {
                        Err(e) => e.to_string(),
                        Ok(_) => "no addresses".to_string(),
                    };
                    tracing::warn!(name = %src.host_port, error = %why, "cannot resolve upstream; keeping the last answer");
                    next.extend(of_source.cloned());
                    continue;
                }
            };
            addrs.sort_unstable();
            addrs.dedup();
            let first = !src.resolved_once.swap(true, Ordering::Relaxed);
            for a in addrs {
                let name = a.to_string();
                if let Some(u) = current.iter().find(|u| u.source == i && u.name == name) {
                    next.push(u.clone());
                    continue;
                }
                changed = true;
                let base = format!("{}://{name}{}", src.scheme, src.prefix);
                let u = Arc::new(Upstream::new(name, base, i, &self.cfg));
                if !first {
                    self.start_ramp(&u);
                }
                tracing::info!(upstream = %u.name, from = %src.host_port, "upstream listed");
                next.push(u);
            }
        }
        for u in current
            .iter()
            .filter(|u| !next.iter().any(|n| Arc::ptr_eq(n, u)))
        {
            changed = true;
            tracing::info!(upstream = %u.name, "upstream no longer listed");
            for g in [&self.metrics.upstream_healthy, &self.metrics.breaker_state] {
                let _ = g.remove_label_values(&[&u.name]);
            }
        }
        if changed {
            self.list.store(Arc::new(next));
        }
        self.metrics
            .upstream_pool_size
            .set(self.list.load().len() as i64);
    }

    /// The client the fetches go through (kept across a reload that keeps the CA file).
    pub fn client(&self) -> &HttpClient {
        &self.client
    }

    /// At least one upstream passes its health checks.
    pub fn any_healthy(&self) -> bool {
        self.list.load().iter().any(|u| u.is_healthy())
    }

    fn note(&self, u: &Upstream, transition: Option<Position>) {
        self.metrics
            .breaker_state
            .with_label_values(&[&u.name])
            .set(u.breaker.position().as_i64());
        if let Some(p) = transition {
            match p {
                Position::Open => tracing::warn!(upstream = %u.name, "circuit breaker opened"),
                Position::HalfOpen => {
                    tracing::info!(upstream = %u.name, "circuit breaker half-open: trying one request")
                }
                Position::Closed => tracing::info!(upstream = %u.name, "circuit breaker closed"),
            }
        }
    }

    /// Fetches `key`, failing over along the list and retrying within budget and deadline.
    /// Returns the response of the upstream that answered (see [`is_deliberate`]: a 4xx or
    /// a 503 with Retry-After is an answer). `via` is sent as the request's `Via`.
    pub async fn fetch(
        &self,
        key: &CacheKey,
        method: Method,
        via: &http::HeaderValue,
    ) -> Result<(Response<Incoming>, Arc<Upstream>), FetchError> {
        let deadline = Instant::now() + self.cfg.deadline;
        self.budget.deposit();
        // In order of preference, or of this object's owners in a shield pool; healthy
        // upstreams first, each group keeping that order.
        let list = self.list.load_full();
        let ranked: Vec<&Arc<Upstream>> = match self.cfg.pick {
            crate::config::Pick::Ordered => list.iter().collect(),
            crate::config::Pick::Hashed => {
                let names: Vec<&str> = list.iter().map(|u| u.name.as_str()).collect();
                let mut order = crate::rendezvous::order(key.as_str(), &names);
                let now = self.now_ms();
                crate::rendezvous::ramp(key.as_str(), &names, &mut order, |i| {
                    self.weight(&list[i], now)
                });
                order.into_iter().map(|i| &list[i]).collect()
            }
        };
        let mut order: Vec<&Arc<Upstream>> =
            ranked.iter().copied().filter(|u| u.is_healthy()).collect();
        order.extend(ranked.iter().copied().filter(|u| !u.is_healthy()));
        let mut last = FetchError::NoUpstream;
        let mut tried = 0u32;
        let mut skipped = 0usize;
        let mut i = 0usize;
        while tried < self.cfg.max_attempts && skipped < order.len() {
            let u = order[i % order.len()];
            i += 1;
            let (allowed, transition) = u.breaker.allow();
            self.note(u, transition);
            if !allowed {
                skipped += 1;
                continue;
            }
            skipped = 0;
            if tried > 0 {
                if !self.budget.withdraw() {
                    self.metrics
                        .retries
                        .with_label_values(&["budget_exhausted"])
                        .inc();
                    break;
                }
                self.metrics.retries.with_label_values(&["retried"]).inc();
                let pause = backoff(
                    tried,
                    self.cfg.backoff_base,
                    self.cfg.backoff_cap,
                    &mut rand::rng(),
                );
                if Instant::now() + pause >= deadline {
                    break;
                }
                tokio::time::sleep(pause).await;
            }
            tried += 1;
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                last = FetchError::Timeout(format!("deadline of {:?} passed", self.cfg.deadline));
                break;
            }
            let mut req = Request::builder().method(method.clone()).uri(format!(
                "{}{}",
                u.base,
                key.as_str()
            ));
            if let Some((n, v)) = &self.auth {
                req = req.header(n, v);
            }
            let req = match req
                .header(
                    header::USER_AGENT,
                    concat!("edge/", env!("CARGO_PKG_VERSION")),
                )
                .header(header::VIA, via.clone())
                .body(service::body::empty())
            {
                Ok(r) => r,
                Err(e) => {
                    return Err(FetchError::Unavailable(format!(
                        "cannot build request: {e}"
                    )));
                }
            };
            let started = std::time::Instant::now();
            let result = tokio::time::timeout(
                self.cfg.head_timeout.min(remaining),
                self.client.request(req),
            )
            .await;
            let label = |s: &str| {
                self.metrics
                    .upstream_requests
                    .with_label_values(&[&u.name, s])
                    .inc()
            };
            self.metrics
                .upstream_duration
                .with_label_values(&[&u.name])
                .observe(started.elapsed().as_secs_f64());
            match result {
                Ok(Ok(resp)) if !is_deliberate(&resp) => {
                    label(resp.status().as_str());
                    last =
                        FetchError::Unavailable(format!("{} answered {}", u.name, resp.status()));
                    let t = u.breaker.failure();
                    self.note(u, t);
                }
                Ok(Ok(resp)) => {
                    label(resp.status().as_str());
                    let t = u.breaker.success();
                    self.note(u, t);
                    return Ok((resp, u.clone()));
                }
                Ok(Err(e)) => {
                    // A certificate the edge does not trust is an upstream failure like any
                    // other (failover, breaker), with its reason in the label and message.
                    label(if service::client::is_tls_error(&e) {
                        "tls_error"
                    } else {
                        "error"
                    });
                    last = FetchError::Unavailable(format!(
                        "{}: {}",
                        u.name,
                        service::client::error_chain(&e)
                    ));
                    let t = u.breaker.failure();
                    self.note(u, t);
                }
                Err(_) => {
                    label("timeout");
                    last = FetchError::Timeout(format!(
                        "{} sent no response head within {:?}",
                        u.name,
                        self.cfg.head_timeout.min(remaining)
                    ));
                    let t = u.breaker.failure();
                    self.note(u, t);
                }
            }
        }
        Err(last)
    }

    /// Reports a body that broke off after the head (counts against the breaker).
    pub fn body_failed(&self, u: &Upstream) {
        let t = u.breaker.failure();
        self.note(u, t);
    }

    /// Runs the health checks forever (spawn it): one probe per upstream per interval.
    pub async fn check_health(self: Arc<Self>) {
        let h = self.cfg.health.clone();
        let mut resolve_at = Instant::now();
        loop {
            if let Some(every) = self.cfg.resolve_interval
                && Instant::now() >= resolve_at
            {
                self.resolve().await;
                resolve_at = Instant::now() + every;
            }
            let list = self.list.load_full();
            for u in list.iter() {
                let url = format!("{}{}", u.base, h.path);
                let ok = matches!(
                    service::client::fetch(&self.client, Method::GET, &url, &[], h.timeout).await,
                    Ok(r) if r.status.is_success()
                );
                let was = u.is_healthy();
                let streak = if ok == was {
                    u.streak.store(0, Ordering::Relaxed);
                    0
                } else {
                    u.streak.fetch_add(1, Ordering::Relaxed) + 1
                };
                let needed = if ok {
                    h.healthy_after
                } else {
                    h.unhealthy_after
                };
                let first = !u.checked.swap(true, Ordering::Relaxed);
                if ok != was && (streak >= needed || first) {
                    u.healthy.store(ok, Ordering::Relaxed);
                    u.streak.store(0, Ordering::Relaxed);
                    if ok && !first {
                        // Back from a failure, most likely with a cold cache.
                        self.start_ramp(u);
                    }
                    if ok {
                        tracing::info!(upstream = %u.name, "upstream healthy");
                    } else {
                        tracing::warn!(upstream = %u.name, "upstream unhealthy");
                    }
                }
                self.metrics
                    .upstream_healthy
                    .with_label_values(&[&u.name])
                    .set(i64::from(u.is_healthy()));
            }
            tokio::time::sleep(h.interval).await;
        }
    }
}
