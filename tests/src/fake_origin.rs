//! A scriptable origin for fault and timing tests: per path, a status, headers, a delay
//! before the head, and body chunks that can each wait for a gate the test opens; it counts
//! requests per path and can be killed.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::{Notify, oneshot};

/// A body chunk, sent after its gate (if any) opens.
#[derive(Clone)]
pub struct Chunk {
    /// The bytes.
    pub data: Bytes,
    /// Wait for this before sending.
    pub gate: Option<Arc<Gate>>,
}

/// A one-shot gate a test opens to let a chunk through.
#[derive(Default)]
pub struct Gate {
    open: Mutex<bool>,
    notify: Notify,
}

impl Gate {
    /// A closed gate.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
    /// Opens it for good.
    pub fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.notify.notify_waiters();
    }
    async fn wait(&self) {
        loop {
            let n = self.notify.notified();
            tokio::pin!(n);
            n.as_mut().enable();
            if *self.open.lock().unwrap() {
                return;
            }
            n.await;
        }
    }
}

/// What the origin answers for a path.
#[derive(Clone)]
pub struct Script {
    /// Status code.
    pub status: u16,
    /// Response headers.
    pub headers: Vec<(String, String)>,
    /// Delay before the response head.
    pub head_delay: Duration,
    /// Body chunks.
    pub chunks: Vec<Chunk>,
    /// Send Content-Length (otherwise chunked).
    pub content_length: bool,
    /// Break the connection after the chunks instead of ending the body.
    pub break_after: bool,
}

impl Script {
    /// A 200 with `body` in one chunk and `cache_control`.
    pub fn ok(body: impl Into<Bytes>, content_type: &str, cache_control: &str) -> Self {
        Self {
            status: 200,
            headers: vec![
                ("content-type".into(), content_type.into()),
                ("cache-control".into(), cache_control.into()),
            ],
            head_delay: Duration::ZERO,
            chunks: vec![Chunk {
                data: body.into(),
                gate: None,
            }],
            content_length: true,
            break_after: false,
        }
    }
}

/// A running fake origin.
pub struct FakeOrigin {
    /// Where it listens.
    pub addr: SocketAddr,
    routes: Arc<Mutex<HashMap<String, Script>>>,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    stop: Option<oneshot::Sender<()>>,
}

impl FakeOrigin {
    /// Starts one on 127.0.0.1:0. Unknown paths answer 404 (`/healthz` answers 200);
    /// `/__hits` lists request counts per path.
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1:0".parse().expect("addr")).await
    }

    /// Starts one on `addr`.
    pub async fn start_on(addr: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let routes: Arc<Mutex<HashMap<String, Script>>> = Default::default();
        let hits: Arc<Mutex<HashMap<String, usize>>> = Default::default();
        let (tx, mut rx) = oneshot::channel::<()>();
        let (r, h) = (routes.clone(), hits.clone());
        tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    _ = &mut rx => break,
                    acc = listener.accept() => {
                        let Ok((stream, _)) = acc else { continue };
                        let (r, h) = (r.clone(), h.clone());
                        conns.spawn(async move {
                            let svc = service_fn(move |req| answer(req, r.clone(), h.clone()));
                            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                                .serve_connection(TokioIo::new(stream), svc)
                                .await;
                        });
                    }
                }
            }
            // Killed: every open connection goes down with it.
            conns.abort_all();
        });
        Self {
            addr,
            routes,
            hits,
            stop: Some(tx),
        }
    }

    /// Base URL (`http://127.0.0.1:port`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sets the answer for `path` (with query, if the edge forwards one).
    pub fn route(&self, path: &str, script: Script) {
        self.routes.lock().unwrap().insert(path.to_string(), script);
    }

    /// Requests received for `path` so far.
    pub fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    /// Stops listening and drops every connection.
    pub fn kill(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

impl Drop for FakeOrigin {
    fn drop(&mut self) {
        self.kill();
    }
}

type FakeBody = http_body_util::combinators::UnsyncBoxBody<Bytes, std::io::Error>;

async fn answer(
    req: Request<Incoming>,
    routes: Arc<Mutex<HashMap<String, Script>>>,
    hits: Arc<Mutex<HashMap<String, usize>>>,
) -> Result<Response<FakeBody>, Infallible> {
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    *hits.lock().unwrap().entry(path.clone()).or_default() += 1;
    if path == "/__hits" {
        // Request counts per path, one `count path` line each (for benchmark scripts).
        let mut lines: Vec<String> = hits
            .lock()
            .unwrap()
            .iter()
            .map(|(p, n)| format!("{n} {p}"))
            .collect();
        lines.sort();
        let text = lines.join("\n") + "\n";
        return Ok(Response::new(
            http_body_util::Full::new(Bytes::from(text))
                .map_err(|n| match n {})
                .boxed_unsync(),
        ));
    }
    let script = routes.lock().unwrap().get(&path).cloned();
    let Some(script) = script else {
        let status = if path == "/healthz" {
            StatusCode::OK
        } else {
            StatusCode::NOT_FOUND
        };
        let mut r = Response::new(
            http_body_util::Full::new(Bytes::from_static(b"fake origin\n"))
                .map_err(|n| match n {})
                .boxed_unsync(),
        );
        *r.status_mut() = status;
        return Ok(r);
    };
    tokio::time::sleep(script.head_delay).await;
    let total: usize = script.chunks.iter().map(|c| c.data.len()).sum();
    let (tx, body) = http_body_util::channel::Channel::<Bytes, std::io::Error>::new(4);
    let mut tx = tx;
    let chunks = script.chunks.clone();
    let break_after = script.break_after;
    tokio::spawn(async move {
        for c in chunks {
            if let Some(g) = &c.gate {
                g.wait().await;
            }
            if tx.send_data(c.data).await.is_err() {
                return;
            }
        }
        if break_after {
            tx.abort(std::io::Error::other("scripted break"));
        }
    });
    let mut r = Response::new(body.boxed_unsync());
    *r.status_mut() = StatusCode::from_u16(script.status).unwrap();
    for (k, v) in &script.headers {
        r.headers_mut().insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    if script.content_length {
        r.headers_mut()
            .insert(http::header::CONTENT_LENGTH, total.into());
    }
    Ok(r)
}
