//! The response body type every program uses, and constructors for the common cases.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty, Full, combinators::UnsyncBoxBody};
use prometheus::Registry;

/// Error a streamed body can fail with (an upstream that broke off mid-body, say).
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// A boxed response body: full buffers and streams share one type. `Send` but not `Sync`,
/// which is all hyper needs and lets streaming bodies hold futures.
pub type Body = UnsyncBoxBody<Bytes, BodyError>;

/// A body holding `bytes` in full.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// An empty body (HEAD, 304, 204).
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// A plain-text response whose body states the reason, for every 4xx/5xx the programs emit.
pub fn text(status: StatusCode, reason: impl Into<String>) -> Response<Body> {
    let mut msg = reason.into();
    msg.push('\n');
    let mut resp = Response::new(full(msg));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// The answer to a CORS preflight (`OPTIONS`): any origin may GET and HEAD with the headers
/// players send (Range, conditional requests).
pub fn preflight() -> Response<Body> {
    let mut r = Response::new(empty());
    *r.status_mut() = StatusCode::NO_CONTENT;
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, HEAD, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Range, If-None-Match, If-Modified-Since"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    r
}

/// `/metrics`: every metric in `registry` in the Prometheus text format.
pub fn metrics(registry: &Registry) -> Response<Body> {
    let mut r = Response::new(full(crate::metrics::encode(registry)));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
    );
    r
}
