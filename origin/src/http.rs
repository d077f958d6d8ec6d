//! The origin's HTTP interface: playlists and segments under `/live/`, push ingest under
//! `/ingest/`, and `/metrics`, `/healthz`, `/readyz`. Errors become responses here and only
//! here, each with a reason in the body.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use service::Body;
use service::body::{empty, full, text};
use service::conditional::{
    RangeReq, Validators, content_range, etag_matches, range_for, range_not_satisfiable,
};

use crate::App;
use crate::config::SourceKind;
use crate::input::auth;
use crate::input::lifecycle::{Cutoff, Refusal};
use crate::push::{self, Outcome};
use crate::store::{Rendered, Stream};
use hls::HlsPath;

/// What a request was for, as a metrics label.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Master,
    Media,
    Segment,
    Ingest,
    Ops,
    Other,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Master => "master",
            Kind::Media => "media",
            Kind::Segment => "segment",
            Kind::Ingest => "ingest",
            Kind::Ops => "ops",
            Kind::Other => "other",
        }
    }
}

/// Marks a response already counted in `origin_http_requests_total`.
#[derive(Clone, Copy)]
struct Counted;

fn count(app: &App, kind: Kind, status: StatusCode, start: Instant) {
    app.metrics
        .http_requests
        .with_label_values(&[kind.as_str(), status.as_str()])
        .inc();
    app.metrics
        .http_duration
        .with_label_values(&[kind.as_str()])
        .observe(start.elapsed().as_secs_f64());
}

/// Handles one request.
pub async fn handle(app: Arc<App>, req: Request<Incoming>) -> Response<Body> {
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let (kind, mut resp) = route(&app, req).await;
    let h = resp.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("Content-Length, Content-Range, ETag, Last-Modified"),
    );
    let status = resp.status();
    // A push counts itself when its ingest completes (see `ingest`).
    if resp.extensions_mut().remove::<Counted>().is_none() {
        count(&app, kind, status, start);
    }
    tracing::debug!(%method, %path, kind = kind.as_str(), status = status.as_u16(), "request");
    resp
}

async fn route(app: &Arc<App>, req: Request<Incoming>) -> (Kind, Response<Body>) {
    let path = req.uri().path();
    if req.method() == Method::OPTIONS {
        return (Kind::Other, service::body::preflight());
    }
    match path {
        "/healthz" => return (Kind::Ops, text(StatusCode::OK, "ok")),
        "/readyz" => return (Kind::Ops, readyz(app)),
        "/metrics" => return (Kind::Ops, service::body::metrics(&app.metrics.registry)),
        _ => {}
    }
    if let Some(rest) = path.strip_prefix("/ingest/") {
        let rest = rest.to_string();
        return (Kind::Ingest, ingest(app, &rest, req).await);
    }
    let parsed = match HlsPath::parse(path) {
        Ok(p) => p,
        Err(hls::PathError::NotHls) => {
            return (
                Kind::Other,
                text(StatusCode::NOT_FOUND, format!("no such resource: {path}")),
            );
        }
        Err(e) => return (Kind::Other, text(StatusCode::BAD_REQUEST, e.to_string())),
    };
    let kind = match parsed {
        HlsPath::Master { .. } => Kind::Master,
        HlsPath::Media { .. } => Kind::Media,
        HlsPath::Segment { .. } | HlsPath::Part { .. } => Kind::Segment,
    };
    if let Some(a) = &app.pull_auth {
        let given = req.headers().get(a.header.as_str()).map(|v| v.as_bytes());
        let ok = given.is_some_and(|g| {
            a.secrets
                .iter()
                .any(|s| crate::input::auth::ct_eq(g, s.as_bytes()))
        });
        if !ok {
            let why = if given.is_none() { "missing" } else { "wrong" };
            return (
                kind,
                text(
                    StatusCode::FORBIDDEN,
                    format!("this origin serves its CDN only: {why} {}", a.header),
                ),
            );
        }
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{} is not allowed here; use GET or HEAD", req.method()),
        );
        r.headers_mut().insert(
            header::ALLOW,
            HeaderValue::from_static("GET, HEAD, OPTIONS"),
        );
        return (kind, r);
    }
    let head = req.method() == Method::HEAD;
    let Some(stream) = app.streams.get(parsed.stream()) else {
        return (
            kind,
            not_found(format!("unknown stream {:?}", parsed.stream())),
        );
    };
    let resp = match &parsed {
        HlsPath::Master { .. } => match stream.master() {
            Some(m) => playlist(&m, stream, req.headers(), head, false),
            None => not_yet("no segments published yet"),
        },
        HlsPath::Media { rendition, .. } => match stream.rendition(rendition) {
            None => not_found(format!(
                "unknown rendition {rendition:?} of stream {:?}",
                stream.name
            )),
            Some(r) => match stream.playlist(r) {
                Some(p) => {
                    let ended = stream.has_ended(
                        stream
                            .renditions
                            .iter()
                            .position(|x| x.name == r.name)
                            .unwrap_or(0),
                    );
                    playlist(&p, stream, req.headers(), head, ended)
                }
                None => not_yet("no segments published yet"),
            },
        },
        HlsPath::Segment { rendition, msn, .. } => match stream.rendition(rendition) {
            None => not_found(format!(
                "unknown rendition {rendition:?} of stream {:?}",
                stream.name
            )),
            Some(r) => match stream.segment(r, *msn) {
                Some(seg) => media_object(
                    seg.data.clone(),
                    &seg.etag,
                    seg.published_unix,
                    req.headers(),
                    head,
                ),
                None if stream.is_future(r, *msn) => {
                    not_found(format!("segment {msn} not produced yet"))
                }
                None => not_found(format!("segment {msn} has expired from the window")),
            },
        },
        HlsPath::Part { msn, part, .. } => not_found(format!(
            "part {msn}.{part}: this origin does not publish LL-HLS parts"
        )),
    };
    (kind, resp)
}

fn readyz(app: &App) -> Response<Body> {
    let not_ready: Vec<&str> = app
        .streams
        .values()
        .filter(|s| !s.is_ready())
        .map(|s| s.name.as_str())
        .collect();
    if not_ready.is_empty() {
        text(StatusCode::OK, "ready")
    } else {
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "not ready: streams without a full window: {}",
                not_ready.join(", ")
            ),
        )
    }
}

fn not_found(reason: String) -> Response<Body> {
    let mut r = text(StatusCode::NOT_FOUND, reason);
    // Negative caching must not outlive the gap before the object exists.
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=1"));
    r
}

fn not_yet(reason: &str) -> Response<Body> {
    let mut r = text(StatusCode::SERVICE_UNAVAILABLE, reason);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn hv(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn playlist(
    p: &Rendered,
    stream: &Stream,
    headers: &HeaderMap,
    head: bool,
    ended: bool,
) -> Response<Body> {
    let td = stream.target_duration;
    // About half the target duration, so caches refresh in step with new segments. Only a CDN
    // (RFC 9213 CDN-Cache-Control, which the edge reads instead of Cache-Control) may serve a
    // stale copy while it revalidates or when the origin fails: a browser's HTTP cache honours
    // stale-while-revalidate too, and hls.js in Chromium was handed, at each reload, the copy
    // its previous reload had fetched, learning of each new segment one reload late.
    let (cache, cdn_cache) = if ended {
        ("public, max-age=86400".to_string(), None)
    } else {
        let max_age = (td / 2).max(1);
        (
            format!("public, max-age={max_age}"),
            Some(format!(
                "max-age={max_age}, stale-while-revalidate={td}, stale-if-error={}",
                td.saturating_mul(6)
            )),
        )
    };
    let mut r = if etag_matches(headers, &p.etag) {
        let mut r = Response::new(empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        let mut r = Response::new(if head { empty() } else { full(p.body.clone()) });
        r.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(p.body.len()));
        r
    };
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(hls::PLAYLIST_CONTENT_TYPE),
    );
    h.insert(header::CACHE_CONTROL, hv(&cache));
    if let Some(c) = cdn_cache {
        h.insert(HeaderName::from_static(hls::CDN_CACHE_CONTROL), hv(&c));
    }
    h.insert(header::ETAG, hv(&p.etag));
    r
}

fn media_object(
    data: Bytes,
    etag: &str,
    modified_unix: u64,
    headers: &HeaderMap,
    head: bool,
) -> Response<Body> {
    let len = data.len() as u64;
    let modified = hls::date::format_http_date(i64::try_from(modified_unix).unwrap_or(i64::MAX));
    let mut r = if etag_matches(headers, etag) {
        let mut r = Response::new(empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        let v = Validators {
            etag: Some(etag),
            last_modified: Some(&modified),
        };
        match range_for(headers, len, v) {
            RangeReq::Full => {
                let mut r = Response::new(if head { empty() } else { full(data) });
                r.headers_mut()
                    .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
                r
            }
            RangeReq::Part(s, e) => {
                let slice = data.slice(s as usize..=e as usize);
                let n = slice.len();
                let mut r = Response::new(if head { empty() } else { full(slice) });
                *r.status_mut() = StatusCode::PARTIAL_CONTENT;
                r.headers_mut()
                    .insert(header::CONTENT_RANGE, content_range(s, e, len));
                r.headers_mut()
                    .insert(header::CONTENT_LENGTH, HeaderValue::from(n));
                r
            }
            RangeReq::Unsatisfiable => return range_not_satisfiable(len),
        }
    };
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(hls::TS_CONTENT_TYPE),
    );
    // A segment name never changes content.
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    h.insert(header::ETAG, hv(etag));
    h.insert(header::LAST_MODIFIED, hv(&modified));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    r
}

/// Decrements the open-ingest gauge when a push ends, however it ends.
struct ConnectionGauge(prometheus::IntGauge);
impl Drop for ConnectionGauge {
    fn drop(&mut self) {
        self.0.dec();
    }
}

async fn ingest(app: &Arc<App>, rest: &str, req: Request<Incoming>) -> Response<Body> {
    if req.method() != Method::PUT && req.method() != Method::POST {
        let mut r = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "ingest takes PUT or POST with an MPEG-TS body",
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("PUT, POST"));
        return r;
    }
    let Some((stream_name, rendition)) = rest.split_once('/') else {
        return text(
            StatusCode::BAD_REQUEST,
            "ingest path is /ingest/{stream}/{rendition}",
        );
    };
    if !hls::path::valid_name(stream_name) || !hls::path::valid_name(rendition) {
        return text(
            StatusCode::BAD_REQUEST,
            "stream and rendition names are 1-64 of A-Z a-z 0-9 _ -",
        );
    }
    if !app.streams.contains_key(stream_name) {
        return text(
            StatusCode::NOT_FOUND,
            format!("unknown stream {stream_name:?}"),
        );
    }
    let Some(input) = app
        .inputs
        .get(&(stream_name.to_string(), rendition.to_string()))
    else {
        return text(
            StatusCode::NOT_FOUND,
            format!("unknown rendition {rendition:?} of stream {stream_name:?}"),
        );
    };
    if input.source() != SourceKind::Push {
        return text(
            StatusCode::CONFLICT,
            format!(
                "stream {stream_name:?} is fed by its {:?} source, not HTTP push",
                input.source()
            ),
        );
    }
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let credential = auth::presented(authorization, req.uri().query());
    let session = match input.attach(Instant::now(), credential) {
        Ok(s) => s,
        Err(r) => return refused(r),
    };
    app.metrics.ingest_connections.inc();
    let gauge = ConnectionGauge(app.metrics.ingest_connections.clone());
    // The push runs in its own task, which also counts the request: hyper drops a handler
    // future whose client hung up (ffmpeg closes right after its last chunk without reading
    // the reply), and the input must still be fed to its end and the push counted.
    let start = Instant::now();
    let task_app = app.clone();
    let task = tokio::spawn(async move {
        let _gauge = gauge;
        let outcome = push::run(session, req.into_body()).await;
        let mut resp = push_response(outcome);
        count(&task_app, Kind::Ingest, resp.status(), start);
        resp.extensions_mut().insert(Counted);
        resp
    });
    match task.await {
        Ok(resp) => resp,
        Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "ingest task failed"),
    }
}

/// The reply to a push the input would not take.
fn refused(r: Refusal) -> Response<Body> {
    match r {
        Refusal::Busy | Refusal::Ended => text(StatusCode::CONFLICT, r.to_string()),
        Refusal::Unauthenticated => {
            let mut resp = text(StatusCode::UNAUTHORIZED, r.to_string());
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"ingest\""),
            );
            resp
        }
        Refusal::Forbidden => text(StatusCode::FORBIDDEN, r.to_string()),
        Refusal::TooFast(wait) => too_fast(r.to_string(), wait.as_secs_f64()),
    }
}

/// 429 with a Retry-After of `wait_secs` (whole seconds, at least 1).
fn too_fast(reason: String, wait_secs: f64) -> Response<Body> {
    let mut r = text(StatusCode::TOO_MANY_REQUESTS, reason);
    let secs = wait_secs.ceil().clamp(1.0, 86_400.0) as u64;
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    r
}

/// The reply to a push that ran to its end.
fn push_response(outcome: Outcome) -> Response<Body> {
    match outcome {
        Outcome::Done => {
            let mut r = Response::new(empty());
            *r.status_mut() = StatusCode::NO_CONTENT;
            r
        }
        Outcome::Broken(reason) => text(StatusCode::BAD_REQUEST, reason),
        Outcome::Cut(cut) => match cut {
            Cutoff::Idle(_) => text(StatusCode::REQUEST_TIMEOUT, cut.to_string()),
            Cutoff::TooFast(lead) => too_fast(cut.to_string(), lead),
            Cutoff::TooLarge(_) => text(StatusCode::PAYLOAD_TOO_LARGE, cut.to_string()),
        },
    }
}
