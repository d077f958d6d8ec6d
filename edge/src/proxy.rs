//! The request path: classify → cache lookup → hit | stale-while-revalidate | join or start
//! the single flight → stream. Every error becomes a response here and only here.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use service::Body;
use service::body::{empty, full, text};
use service::conditional::{
    RangeReq, Validators, content_range, etag_matches, has_range, range_for, range_not_satisfiable,
};
use tokio::time::Instant;

use crate::App;
use crate::cache_control::Directives;
use crate::classify::Kind;
use crate::flight::{FlightBody, Head, Outcome, Role, WaitError, Writer};
use crate::key::{CacheKey, normalize};
use crate::object::{CachedObject, Freshness, State, end_to_end, upstream_age};
use crate::overload::Ticketed;
use crate::pace::BodyPace;

/// How a response was produced: the `X-Cache` value and the `cache` metrics label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Fresh from the cache.
    Hit,
    /// This request started the upstream fetch.
    Miss,
    /// Joined a fetch another request started.
    Coalesced,
    /// A stale copy (while revalidating, or because the upstream failed).
    Stale,
    /// Answered by the edge itself (errors, shedding, refusals).
    Bypass,
}

impl Phase {
    /// Header value and metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Hit => "hit",
            Phase::Miss => "miss",
            Phase::Coalesced => "coalesced",
            Phase::Stale => "stale",
            Phase::Bypass => "bypass",
        }
    }
}

/// Handles one client request from `peer`.
pub async fn handle(
    app: Arc<App>,
    req: Request<Incoming>,
    peer: std::net::SocketAddr,
) -> Response<Body> {
    let started = Instant::now();
    // The wall clock only when a log line will need it (the hit path pays for nothing else).
    let arrived = app.access_log.is_some().then(std::time::SystemTime::now);
    let (kind, phase, cache_status, mut resp) = route(&app, &req, peer).await;
    let h = resp.headers_mut();
    h.insert("x-cache", HeaderValue::from_static(phase.as_str()));
    let node = &app.cfg.node_id;
    crate::via::append_entries(h, &app.via, format!("{node}; {cache_status}"));
    let status = resp.status();
    app.metrics
        .requests
        .with_label_values(&[kind.as_str(), phase.as_str(), status.as_str()])
        .inc();
    app.metrics
        .request_duration
        .with_label_values(&[kind.as_str(), phase.as_str()])
        .observe(started.elapsed().as_secs_f64());
    tracing::debug!(method = %req.method(), path = %req.uri().path(), kind = kind.as_str(), cache = phase.as_str(), status = status.as_u16(), "request");
    if let Some(arrived) = arrived {
        let used = resp.extensions().get::<UpstreamUsed>();
        let entry = access_entry(
            &app,
            &req,
            peer,
            (arrived, status, phase, started.elapsed()),
            used,
        );
        return resp.map(|b| {
            crate::access_log::Logged::new(b, entry, app.clone(), started).boxed_unsync()
        });
    }
    resp
}

/// What the access log says about `req`, but for the bytes sent and the last byte.
fn access_entry(
    app: &App,
    req: &Request<Incoming>,
    peer: std::net::SocketAddr,
    (arrived, status, phase, ttfb): (std::time::SystemTime, StatusCode, Phase, Duration),
    used: Option<&UpstreamUsed>,
) -> crate::access_log::Entry {
    let h = req.headers();
    let text = |name| h.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
    let forwarded = app
        .cfg
        .access_log
        .trusted_proxies
        .contains(&peer.ip())
        .then(|| {
            text("forwarded")
                .or(text("x-forwarded-for"))
                .map(str::to_string)
        })
        .flatten();
    crate::access_log::Entry {
        time: Some(arrived),
        client: peer.to_string(),
        forwarded,
        method: req.method().to_string(),
        path: req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default(),
        protocol: match req.version() {
            http::Version::HTTP_2 => "HTTP/2",
            http::Version::HTTP_10 => "HTTP/1.0",
            _ => "HTTP/1.1",
        },
        tls: req
            .extensions()
            .get::<service::conn::TlsVersion>()
            .map(|v| v.0),
        status: status.as_u16(),
        bytes: 0,
        ttfb,
        last_byte: ttfb,
        cache: phase.as_str(),
        upstream: used.map(|u| u.name.to_string()),
        upstream_status: used.map(|u| u.status),
        user_agent: text("user-agent").unwrap_or("").to_string(),
        cmcd: crate::access_log::cmcd_of(req.uri().query(), h),
    }
}

type Routed = (Kind, Phase, String, Response<Body>);

fn local(kind: Kind, resp: Response<Body>) -> Routed {
    (kind, Phase::Bypass, "fwd=bypass".to_string(), resp)
}

/// The 403 for a request under a `[[tokens]]` prefix without a valid viewer token.
fn token_refusal(
    app: &App,
    req: &Request<Incoming>,
    key: &CacheKey,
    peer: std::net::SocketAddr,
) -> Option<Response<Body>> {
    let rule = crate::token::rule_for(&app.cfg.tokens, key.path())?;
    let cookies: Vec<&str> = req
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let token = rule.token_of(req.uri().query(), &cookies);
    let now = u64::try_from(hls::date::now_unix_ms() / 1000).unwrap_or(0);
    let why = rule.verify(token, now, peer.ip()).err()?;
    app.metrics
        .token_rejected
        .with_label_values(&[why.as_str()])
        .inc();
    let mut r = text(
        StatusCode::FORBIDDEN,
        format!(
            "token {}: this stream needs a valid viewer token",
            why.as_str()
        ),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Some(r)
}

async fn route(app: &Arc<App>, req: &Request<Incoming>, peer: std::net::SocketAddr) -> Routed {
    if crate::via::passed(req.headers(), &app.cfg.node_id) {
        let mut r = text(
            StatusCode::LOOP_DETECTED,
            format!(
                "loop detected: this request already passed {} (see its Via)",
                app.cfg.node_id
            ),
        );
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return local(Kind::Other, r);
    }
    if req.method() == Method::OPTIONS {
        return local(Kind::Other, service::body::preflight());
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(
            StatusCode::METHOD_NOT_ALLOWED,
            format!(
                "{} is not allowed: this cache serves GET and HEAD",
                req.method()
            ),
        );
        r.headers_mut().insert(
            header::ALLOW,
            HeaderValue::from_static("GET, HEAD, OPTIONS"),
        );
        return local(Kind::Other, r);
    }
    let target = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let key = match normalize(target, &app.cfg.cache.query_allowlist) {
        Ok(k) => k,
        Err(e) => {
            return local(
                Kind::Other,
                text(StatusCode::BAD_REQUEST, format!("bad request target: {e}")),
            );
        }
    };
    if let Some(refused) = token_refusal(app, req, &key, peer) {
        return local(Kind::of_request(&key), refused);
    }
    let cached = app.cache.get(&key);
    let kind = cached
        .as_ref()
        .map(|o| o.kind)
        .unwrap_or_else(|| Kind::of_request(&key));
    let ticket = match app.admission.admit(kind) {
        Ok(t) => t,
        Err(why) => {
            app.metrics.shed.with_label_values(&[why.as_str()]).inc();
            let mut r = text(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded: serving viewers already watching first; retry shortly",
            );
            r.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(app.admission.retry_after_secs()),
            );
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            return local(kind, r);
        }
    };
    let (phase, status, resp) = serve(app, req, key, kind, cached).await;
    let resp = resp.map(|b| Ticketed::new(b, ticket).boxed_unsync());
    (kind, phase, status, resp)
}

async fn serve(
    app: &Arc<App>,
    req: &Request<Incoming>,
    key: CacheKey,
    kind: Kind,
    cached: Option<Arc<CachedObject>>,
) -> (Phase, String, Response<Body>) {
    let now = Instant::now();
    let mut fallback = None;
    if let Some(obj) = cached {
        match obj.state(now) {
            State::Fresh => {
                if obj.claim_prefetched() {
                    app.metrics.prefetched_used.inc();
                }
                let cs = format!("hit; ttl={}", obj.ttl_secs(now));
                return (Phase::Hit, cs, from_object(&obj, req, now));
            }
            State::StaleWhileRevalidate => {
                if obj.claim_prefetched() {
                    app.metrics.prefetched_used.inc();
                }
                refresh(app, req, &key, kind);
                app.metrics
                    .stale_served
                    .with_label_values(&["while_revalidate"])
                    .inc();
                let cs = format!(
                    "hit; ttl={}; detail=stale-while-revalidate",
                    obj.ttl_secs(now)
                );
                return (Phase::Stale, cs, from_object(&obj, req, now));
            }
            State::StaleIfError => fallback = Some(obj),
            State::Expired => {}
        }
    }
    let (flight, phase) = match app.flights.join_or_start(&key) {
        Role::Writer(w) => {
            let f = w.flight().clone();
            let via = crate::via::upstream_via(req.headers(), &app.cfg.node_id);
            tokio::spawn(fill(app.clone(), w, key.clone(), kind, via));
            (f, Phase::Miss)
        }
        Role::Waiter(f) => {
            if f.claim_prefetch() {
                app.metrics.prefetched_used.inc();
            }
            app.metrics
                .coalesced_waiters
                .with_label_values(&[kind.as_str()])
                .inc();
            (f, Phase::Coalesced)
        }
    };
    // Held until this request's response head exists (dropped when `serve` returns), so the
    // flight's bodies hold their data back until every waiter's head has gone out.
    let _head_ticket = flight.head_ticket();
    let wait = app.cfg.upstream.deadline + Duration::from_secs(1);
    let head = match flight.head(wait).await {
        Ok(h) => h,
        Err(e) => return upstream_failed(app, req, e, fallback, now),
    };
    let used = UpstreamUsed {
        name: head.upstream.clone(),
        status: head.status.as_u16(),
    };
    let (phase, cs, mut resp) = from_head(app, req, phase, &flight, &head, fallback, now).await;
    resp.extensions_mut().insert(used);
    (phase, cs, resp)
}

/// Which upstream answered a response's fetch, and with what status (a response
/// extension, read by the access log).
#[derive(Debug, Clone)]
pub struct UpstreamUsed {
    /// Its `host:port`.
    pub name: std::sync::Arc<str>,
    /// Its status.
    pub status: u16,
}

/// The response to a request whose flight has its head.
async fn from_head(
    app: &Arc<App>,
    req: &Request<Incoming>,
    phase: Phase,
    flight: &Arc<crate::flight::Flight>,
    head: &Head,
    fallback: Option<Arc<CachedObject>>,
    now: Instant,
) -> (Phase, String, Response<Body>) {
    let collapsed = if phase == Phase::Coalesced {
        "; collapsed"
    } else {
        ""
    };
    let wait = app.cfg.upstream.deadline + Duration::from_secs(1);
    if head.status.is_server_error()
        && let Some(obj) = fallback
    {
        // The upstream answered with an error on purpose (503 + Retry-After, say): for the
        // viewers a stale copy beats an error, as stale-if-error allows (RFC 5861 §4).
        return stale_if_error(app, req, &obj, head.status, now);
    }
    let cs = format!("fwd=miss; fwd-status={}{collapsed}", head.status.as_u16());
    let mut headers = head.headers.clone();
    if head.status == StatusCode::OK
        && let Some(etag) = headers.get(header::ETAG).and_then(|v| v.to_str().ok())
        && etag_matches(req.headers(), etag)
    {
        headers.remove(header::CONTENT_LENGTH);
        return (
            phase,
            cs,
            with_headers(StatusCode::NOT_MODIFIED, headers, empty()),
        );
    }
    if head.status == StatusCode::OK && has_range(req.headers()) && !flight.is_pass_through() {
        // Ranges on a miss are cut from the complete body (rare in HLS; keeps one code path).
        return match flight.complete(wait).await {
            Ok((_, body)) => (phase, cs, ranged(StatusCode::OK, headers, body, req)),
            Err(e) => upstream_failed(app, req, e, fallback, now),
        };
    }
    if req.method() == Method::HEAD {
        return (phase, cs, with_headers(head.status, headers, empty()));
    }
    let body = FlightBody::new(flight.clone(), head.content_length).boxed_unsync();
    (phase, cs, with_headers(head.status, headers, body))
}

/// The fetch failed before a response head: a stale copy if the upstream allowed one, else
/// a fast 502/504 with the reason.
fn upstream_failed(
    app: &App,
    req: &Request<Incoming>,
    e: WaitError,
    fallback: Option<Arc<CachedObject>>,
    now: Instant,
) -> (Phase, String, Response<Body>) {
    if let Some(obj) = fallback {
        return stale_if_error(app, req, &obj, e.status(), now);
    }
    let status = e.status();
    let mut r = text(status, format!("upstream fetch failed: {e}"));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    (
        Phase::Miss,
        format!(
            "fwd=miss; fwd-status={}; detail=upstream-error",
            status.as_u16()
        ),
        r,
    )
}

/// Serves `obj` stale because the upstream failed or answered `upstream_status`.
fn stale_if_error(
    app: &App,
    req: &Request<Incoming>,
    obj: &CachedObject,
    upstream_status: StatusCode,
    now: Instant,
) -> (Phase, String, Response<Body>) {
    app.metrics
        .stale_served
        .with_label_values(&["if_error"])
        .inc();
    let cs = format!(
        "fwd=miss; fwd-status={}; detail=stale-if-error",
        upstream_status.as_u16()
    );
    (Phase::Stale, cs, from_object(obj, req, now))
}

fn with_headers(status: StatusCode, headers: HeaderMap, body: Body) -> Response<Body> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    *r.headers_mut() = headers;
    r
}

fn from_object(obj: &CachedObject, req: &Request<Incoming>, now: Instant) -> Response<Body> {
    let mut headers = obj.headers.clone();
    headers.insert(header::AGE, HeaderValue::from(obj.age(now).as_secs()));
    if obj.status == StatusCode::OK
        && let Some(etag) = obj.etag()
        && etag_matches(req.headers(), etag)
    {
        return with_headers(StatusCode::NOT_MODIFIED, headers, empty());
    }
    ranged(obj.status, headers, obj.body.clone(), req)
}

fn ranged(
    status: StatusCode,
    mut headers: HeaderMap,
    body: Bytes,
    req: &Request<Incoming>,
) -> Response<Body> {
    let head = req.method() == Method::HEAD;
    let len = body.len() as u64;
    if status == StatusCode::OK {
        headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        match range_for(req.headers(), len, Validators::of(&headers)) {
            RangeReq::Full => {}
            RangeReq::Part(s, e) => {
                let part = body.slice(s as usize..=e as usize);
                headers.insert(header::CONTENT_RANGE, content_range(s, e, len));
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(part.len()));
                return with_headers(
                    StatusCode::PARTIAL_CONTENT,
                    headers,
                    if head { empty() } else { full(part) },
                );
            }
            RangeReq::Unsatisfiable => return range_not_satisfiable(len),
        }
    }
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    with_headers(status, headers, if head { empty() } else { full(body) })
}

/// Starts one background refresh of `key` unless a fetch for it is already under way.
fn refresh(app: &Arc<App>, req: &Request<Incoming>, key: &CacheKey, kind: Kind) {
    if let Role::Writer(w) = app.flights.join_or_start(key) {
        let via = crate::via::upstream_via(req.headers(), &app.cfg.node_id);
        tokio::spawn(fill(app.clone(), w, key.clone(), kind, via));
    }
}

/// Pre-warming: starts fetches for the segments the media playlist `playlist` (just fetched,
/// `body`) lists that its previous version did not, within `prefetch.max_concurrent`.
fn prewarm(app: &Arc<App>, playlist: &CacheKey, body: &[u8], via: &HeaderValue) {
    let seen = app.prefetch_seen.get(playlist);
    let max = app.cfg.prefetch.max_per_playlist;
    let Ok(listing) = crate::prefetch::newly_listed(playlist.as_str(), body, seen, max) else {
        return;
    };
    if let Some(last) = listing.last {
        app.prefetch_seen.set(playlist, last);
    }
    for target in listing.new {
        let Ok(key) = normalize(&target, &app.cfg.cache.query_allowlist) else {
            continue;
        };
        if app.cache.contains_key(&key) {
            continue;
        }
        let Ok(permit) = app.prefetch_permits.clone().try_acquire_owned() else {
            app.metrics
                .prefetch_skipped
                .with_label_values(&["busy"])
                .inc();
            continue;
        };
        if let Role::Writer(w) = app.flights.join_or_start(&key) {
            w.mark_prefetch();
            app.metrics.prefetched.inc();
            let kind = Kind::of_request(&key);
            let (app, via) = (app.clone(), via.clone());
            tokio::spawn(async move {
                let _permit = permit;
                fill(app, w, key, kind, via).await;
            });
        }
    }
}

/// Drops the in-flight gauge when a fill ends, however it ends.
struct InflightGauge(prometheus::IntGauge);
impl Drop for InflightGauge {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The writer's side of a flight: fetch from upstream, stream into the flight, store the
/// complete object, then end the flight (in that order, so later requests find the object).
async fn fill(app: Arc<App>, w: Writer, key: CacheKey, kind: Kind, via: HeaderValue) {
    app.metrics
        .upstream_fetches
        .with_label_values(&[kind.as_str()])
        .inc();
    app.metrics.inflight_fetches.inc();
    let _gauge = InflightGauge(app.metrics.inflight_fetches.clone());
    let (resp, upstream) = match app.upstreams.fetch(&key, Method::GET, &via).await {
        Ok(r) => r,
        Err(e) => {
            if let Some(suppressed) = app.log_limit.check(e.as_str()) {
                tracing::warn!(key = %key, error = %e, suppressed, "upstream fetch failed (logged at most every 5 s per kind; `suppressed` since the last line)");
            }
            w.finish(Outcome::TransientError(e));
            return;
        }
    };
    let (parts, mut body) = resp.into_parts();
    let content_length = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse::<u64>().ok());
    let initial_age = upstream_age(&parts.headers);
    // What the cache stores; the flight's readers also get Age and Content-Length.
    let stored = end_to_end(&parts.headers);
    let mut headers = stored.clone();
    headers.insert(header::AGE, HeaderValue::from(initial_age.as_secs()));
    if let Some(n) = content_length {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
    }
    let max = app.cfg.cache.max_object_bytes;
    if content_length.is_some_and(|n| n > max) {
        // Will not be stored: stream it through with bounded buffering (before the head is
        // out, so no reader asks for the whole body to cut a range from).
        w.pass_through();
    }
    w.head(Head {
        status: parts.status,
        headers,
        content_length,
        upstream: upstream.name.as_str().into(),
    });
    let mut pace = BodyPace::new(&app.cfg.upstream, Instant::now());
    loop {
        if w.flight().is_pass_through() {
            let waited = Instant::now();
            if !w.room().await {
                // Every reader left and nothing will be stored: stop pulling from upstream.
                w.finish(Outcome::TransientError(crate::flight::FetchError::Body(
                    "every reader left a body too large to store".into(),
                )));
                return;
            }
            // Time spent waiting for slow readers is not the upstream's.
            pace.exclude(waited.elapsed());
        }
        let wait = match pace.next_wait(Instant::now()) {
            Ok(d) => d,
            Err(why) => {
                app.upstreams.body_failed(&upstream);
                if let Some(suppressed) = app.log_limit.check(&format!("slow:{}", upstream.name)) {
                    tracing::warn!(key = %key, upstream = %upstream.name, suppressed, "{why}");
                }
                w.finish(Outcome::TransientError(crate::flight::FetchError::Timeout(
                    why,
                )));
                return;
            }
        };
        match tokio::time::timeout(wait, body.frame()).await {
            Ok(None) => break,
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    pace.received(data.len(), Instant::now());
                    w.push(data);
                    if w.flight().received() as u64 > max {
                        w.pass_through();
                    }
                }
            }
            Ok(Some(Err(e))) => {
                app.upstreams.body_failed(&upstream);
                if let Some(suppressed) = app.log_limit.check(&format!("body:{}", upstream.name)) {
                    tracing::warn!(key = %key, upstream = %upstream.name, error = %e, suppressed, "upstream body broke off");
                }
                w.finish(Outcome::TransientError(crate::flight::FetchError::Body(
                    e.to_string(),
                )));
                return;
            }
            Err(_) => continue, // next_wait says which limit passed
        }
    }
    if w.flight().is_pass_through() {
        w.finish(Outcome::Done);
        return;
    }
    let bytes = w.body();
    if content_length.is_some_and(|n| n != bytes.len() as u64) {
        w.finish(Outcome::TransientError(crate::flight::FetchError::Body(
            "body shorter than Content-Length".into(),
        )));
        return;
    }
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let kind = kind.refine(content_type, &bytes[..bytes.len().min(4096)]);
    if parts.status == StatusCode::OK
        && matches!(kind, Kind::Playlist | Kind::BlockingPlaylist)
        && app.cfg.prefetch.watches(key.as_str())
    {
        // Before the object is stored and the flight ends: the viewers reading this
        // playlist are about to ask for what it newly lists.
        prewarm(&app, &key, &bytes, &via);
    }
    let directives = Directives::from_headers(&parts.headers);
    if let Some(freshness) = Freshness::of(parts.status, &directives, kind, &app.cfg.cache)
        && bytes.len() as u64 <= app.cfg.cache.max_object_bytes
    {
        app.cache.insert(
            key,
            Arc::new(CachedObject {
                status: parts.status,
                headers: stored,
                body: bytes,
                stored_at: Instant::now(),
                initial_age,
                freshness,
                kind,
                prefetched: w.flight().claim_prefetch().into(),
            }),
        );
        // Evict now: moka otherwise applies inserts in batches, and until it does the
        // objects it will evict stay alive, beyond capacity_bytes (a miss is rare next to
        // hits, so paying for it here is cheap).
        app.cache.run_pending_tasks();
    }
    w.finish(Outcome::Done);
}
