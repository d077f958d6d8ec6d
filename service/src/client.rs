//! The HTTP client every program uses (hyper-util's pooled client): one stack for the edge's
//! upstream, the player simulator and the tests.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::Body;

/// A pooled HTTP/1.1 client.
pub type HttpClient = Client<HttpConnector, Body>;

/// Builds a pooled client with TCP_NODELAY and a connect timeout.
pub fn new_client(pool_idle: Duration) -> HttpClient {
    let mut conn = HttpConnector::new();
    conn.set_nodelay(true);
    conn.set_connect_timeout(Some(Duration::from_secs(5)));
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(pool_idle)
        .build(conn)
}

/// A response read in full.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// Status code.
    pub status: StatusCode,
    /// Response headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

impl Fetched {
    /// A header as text ("" when absent or not text).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The URL or headers could not form a request.
    #[error("bad request: {0}")]
    Request(#[from] http::Error),
    /// Connecting or exchanging the head failed.
    #[error("request failed: {0}")]
    Client(#[from] hyper_util::client::legacy::Error),
    /// The body broke off.
    #[error("body failed: {0}")]
    Body(#[from] hyper::Error),
    /// The deadline passed.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

/// Sends `method url` with `headers` and reads the whole response within `timeout`.
pub async fn fetch(
    client: &HttpClient,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> Result<Fetched, FetchError> {
    let mut req = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(crate::body::empty())?;
    let work = async {
        let resp = client.request(req).await?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok::<_, FetchError>(Fetched {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| FetchError::Timeout(timeout))?
}

/// Polls `url` until it answers 200, for at most `limit`; otherwise returns the last answer
/// (status and body) or error, so the caller can say why.
pub async fn wait_ok(client: &HttpClient, url: &str, limit: Duration) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let last = match fetch(client, Method::GET, url, &[], Duration::from_secs(2)).await {
            Ok(r) if r.status == StatusCode::OK => return Ok(()),
            Ok(r) => format!("{}: {}", r.status, String::from_utf8_lossy(&r.body).trim()),
            Err(e) => e.to_string(),
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(last);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
