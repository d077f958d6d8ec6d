//! The ordered list of upstreams: failover in order of preference, active health checks,
//! a circuit breaker each, and retries (only before a response head, where GET is safe to
//! repeat) under a budget and a per-fetch deadline.

use http::{Method, Request, Response, header};
use hyper::body::Incoming;
use service::client::HttpClient;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use tokio::time::Instant;

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
}

impl Upstream {
    /// Whether the last health checks passed.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }
}

/// All upstreams, in order of preference.
pub struct Upstreams {
    list: Vec<Arc<Upstream>>,
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
                .and_then(|p| p.list.iter().find(|u| u.base == base).cloned())
        };
        let list = cfg
            .urls
            .iter()
            .map(|u| {
                if let Some(same) = kept(u.trim_end_matches('/')) {
                    return same;
                }
                let uri: http::Uri = u.parse().unwrap_or_default();
                let name = uri
                    .authority()
                    .map(|a| a.to_string())
                    .unwrap_or_else(|| u.clone());
                Arc::new(Upstream {
                    name,
                    base: u.trim_end_matches('/').to_string(),
                    // Unknown until the first check, which runs at once; fetches still try it.
                    healthy: AtomicBool::new(false),
                    checked: AtomicBool::new(false),
                    streak: AtomicU32::new(0),
                    breaker: Breaker::new(cfg.breaker.failure_threshold, cfg.breaker.open_for),
                })
            })
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
        Self {
            list,
            auth,
            client,
            cfg: cfg.clone(),
            budget: RetryBudget::new(cfg.retry_budget_ratio, cfg.retry_budget_min_per_sec),
            metrics,
        }
    }

    /// The upstreams, in order of preference.
    pub fn list(&self) -> &[Arc<Upstream>] {
        &self.list
    }

    /// The client the fetches go through (kept across a reload that keeps the CA file).
    pub fn client(&self) -> &HttpClient {
        &self.client
    }

    /// At least one upstream passes its health checks.
    pub fn any_healthy(&self) -> bool {
        self.list.iter().any(|u| u.is_healthy())
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
        let ranked: Vec<&Arc<Upstream>> = match self.cfg.pick {
            crate::config::Pick::Ordered => self.list.iter().collect(),
            crate::config::Pick::Hashed => {
                let names: Vec<&str> = self.list.iter().map(|u| u.name.as_str()).collect();
                crate::rendezvous::order(key.as_str(), &names)
                    .into_iter()
                    .map(|i| &self.list[i])
                    .collect()
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
        loop {
            for u in &self.list {
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
