//! The HTTP client every program uses (hyper-util's pooled client): one stack for the edge's
//! upstream, the player simulator and the tests.

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::Body;

/// A pooled HTTP/1.1 client for `http://` and `https://` URLs (rustls; the server's name
/// is sent by SNI and checked against its certificate).
pub type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Body>;

/// The system's trust store, read once (`/etc/ssl/certs` on Debian).
fn system_roots() -> Arc<rustls::RootCertStore> {
    static ROOTS: OnceLock<Arc<rustls::RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let mut store = rustls::RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::warn!(error = %e, "a system CA certificate could not be read");
            }
            let (_, ignored) = store.add_parsable_certificates(found.certs);
            if ignored > 0 {
                tracing::warn!(ignored, "system CA certificates that could not be parsed");
            }
            Arc::new(store)
        })
        .clone()
}

/// TLS settings for a client: the system's roots, plus the PEM certificates in `ca_file`
/// (a private CA in front of an origin, say).
pub fn tls_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, crate::tls::TlsError> {
    let mut roots = (*system_roots()).clone();
    if let Some(path) = ca_file {
        let bad = |why: String| crate::tls::TlsError::File {
            path: path.to_path_buf(),
            why,
        };
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(|e| bad(e.to_string()))?
            .collect::<Result<_, _>>()
            .map_err(|e| bad(e.to_string()))?;
        if certs.is_empty() {
            return Err(bad("no CERTIFICATE block in the file".into()));
        }
        for c in certs {
            roots
                .add(c)
                .map_err(|e| bad(format!("not a usable CA certificate: {e}")))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| crate::tls::TlsError::File {
            path: ca_file.map(Path::to_path_buf).unwrap_or_default(),
            why: e.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(cfg)
}

/// TLS settings with the system's roots alone (no file to read, so nothing can fail).
fn system_tls() -> rustls::ClientConfig {
    match tls_config(None) {
        Ok(tls) => tls,
        Err(e) => unreachable!("TLS settings without a CA file: {e}"),
    }
}

/// Builds a pooled client with TCP_NODELAY, a connect timeout and the system's roots.
pub fn new_client(pool_idle: Duration) -> HttpClient {
    build(pool_idle, system_tls(), None)
}

/// [`new_client`] with its own TLS settings (see [`tls_config`]).
pub fn new_client_with(pool_idle: Duration, tls: rustls::ClientConfig) -> HttpClient {
    build(pool_idle, tls, None)
}

/// [`new_client`] whose connections come from local address `from` (a load generator
/// posing as viewers on another host, or a player population attached by address).
pub fn new_client_from(pool_idle: Duration, from: std::net::IpAddr) -> HttpClient {
    build(pool_idle, system_tls(), Some(from))
}

fn build(
    pool_idle: Duration,
    tls: rustls::ClientConfig,
    from: Option<std::net::IpAddr>,
) -> HttpClient {
    let mut conn = HttpConnector::new();
    conn.set_local_address(from);
    conn.set_nodelay(true);
    conn.set_connect_timeout(Some(Duration::from_secs(5)));
    conn.enforce_http(false);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(conn);
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(pool_idle)
        .build(https)
}

/// An error with its causes ("client error (Connect): invalid peer certificate: …"), since
/// the outer message alone rarely says what went wrong.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Whether TLS (a certificate the client does not trust, a failed handshake) is among the
/// causes of `e`.
pub fn is_tls_error(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(c) = cur {
        if c.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        // An io::Error wraps its cause without listing it as its source (and connectors
        // wrap io errors in io errors): step into the wrapped error itself.
        cur = match c.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => c.source(),
        };
    }
    false
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
