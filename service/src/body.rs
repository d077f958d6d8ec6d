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

/// A body holding `bytes`, handed to the connection in frames of at most `max_frame` bytes:
/// the connection asks for the next frame only when it has sent most of the last, so the
/// body lives (and whatever it holds stays counted) until the client has nearly all of it,
/// and bodies of many clients interleave instead of one large body going out whole first.
pub fn framed(bytes: Bytes, max_frame: usize) -> Body {
    Framed {
        rest: bytes,
        max: max_frame.max(1),
    }
    .boxed_unsync()
}

struct Framed {
    rest: Bytes,
    max: usize,
}

impl http_body::Body for Framed {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BodyError>>> {
        if self.rest.is_empty() {
            return std::task::Poll::Ready(None);
        }
        let n = self.rest.len().min(self.max);
        let frame = self.rest.split_to(n);
        std::task::Poll::Ready(Some(Ok(http_body::Frame::data(frame))))
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.rest.len() as u64)
    }
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
