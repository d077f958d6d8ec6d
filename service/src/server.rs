//! The serve loop every program uses: HTTP/1.1 and HTTP/2 on one port, a connection limit,
//! header-read timeout and header-size limit, and graceful drain on shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::Body;
use crate::conn::{Clients, Conn, ConnMetrics, CountingIo, Cut, RequestGuard, Timeouts, Tracked};
use http_body_util::BodyExt;

/// Limits applied to every accepted connection.
#[derive(Debug, Clone)]
pub struct ServerLimits {
    /// Connections served at once; further ones wait in the listen backlog.
    pub max_connections: usize,
    /// Time a client gets to send a request head (slowloris defence), and to send its first
    /// request at all after connecting (a silent socket is closed then).
    pub header_read_timeout: Duration,
    /// Largest request head accepted, in bytes (HTTP/1 buffer, HTTP/2 header list).
    pub max_header_bytes: usize,
    /// How long in-flight requests may run after shutdown is signalled.
    pub drain_timeout: Duration,
    /// A connection with no request in progress for this long is closed (keep-alive idle,
    /// HTTP/1.1 and HTTP/2).
    pub idle_timeout: Duration,
    /// A response whose data the client does not take for this long (a full TCP window, an
    /// HTTP/2 stream without flow-control window) closes its connection.
    pub send_timeout: Duration,
    /// Connections one client address may hold at once (0: no cap).
    pub max_connections_per_client: usize,
    /// Requests one client address may have in progress at once (0: no cap); more get 429.
    pub max_requests_per_client: usize,
    /// Concurrent streams one HTTP/2 connection may open.
    pub h2_max_concurrent_streams: u32,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
            drain_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(30),
            max_connections_per_client: 1024,
            max_requests_per_client: 1024,
            h2_max_concurrent_streams: 100,
        }
    }
}

/// Largest `max_header_bytes` accepted: far above any real request head, and it must fit
/// HTTP/2's 32-bit SETTINGS_MAX_HEADER_LIST_SIZE.
pub const MAX_HEADER_BYTES: usize = 1 << 20;

/// The `[server]` table every program's config shares.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Connections served at once.
    pub max_connections: usize,
    /// Time a client has to send its request head.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Largest request head, bytes.
    pub max_header_bytes: usize,
    /// How long in-flight requests may finish after SIGTERM.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// Runtime worker threads; 0 means one per CPU core.
    pub worker_threads: usize,
    /// Connections the kernel completes and queues before the program accepts them (the
    /// kernel caps it at `net.core.somaxconn`). A kickoff's connection storm overflows a small
    /// queue, and every connection that overflows it waits a SYN retransmit (1 s and up).
    pub listen_backlog: u32,
    /// A connection with no request in progress for this long is closed.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// A response whose data the client does not take for this long closes its connection.
    #[serde(with = "humantime_serde")]
    pub send_timeout: Duration,
    /// Connections one client address may hold (0: no cap).
    pub max_connections_per_client: usize,
    /// Requests one client address may have in progress (0: no cap).
    pub max_requests_per_client: usize,
    /// Concurrent streams per HTTP/2 connection.
    pub h2_max_concurrent_streams: u32,
}

/// Default listen backlog: room for a flash crowd's connects between two accept rounds
/// (std and mio use 128; nginx 511).
pub const DEFAULT_LISTEN_BACKLOG: u32 = 4096;

/// Binds `addr` (with `SO_REUSEADDR`) and listens with `backlog`. Call inside a runtime.
pub fn bind(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

impl Default for ServerConfig {
    fn default() -> Self {
        let d = ServerLimits::default();
        Self {
            max_connections: d.max_connections,
            header_read_timeout: d.header_read_timeout,
            max_header_bytes: d.max_header_bytes,
            drain_timeout: d.drain_timeout,
            worker_threads: 0,
            listen_backlog: DEFAULT_LISTEN_BACKLOG,
            idle_timeout: d.idle_timeout,
            send_timeout: d.send_timeout,
            max_connections_per_client: d.max_connections_per_client,
            max_requests_per_client: d.max_requests_per_client,
            h2_max_concurrent_streams: d.h2_max_concurrent_streams,
        }
    }
}

impl ServerConfig {
    /// Builds the runtime this config asks for: one worker thread gets tokio's
    /// current-thread scheduler, more get the multi-threaded one.
    ///
    /// Why not a one-worker multi-threaded runtime: its scheduler runs the task woken last
    /// first (the LIFO slot) and parks overflow beyond 256 queued tasks in a queue it visits
    /// only now and then, so when one upstream response wakes a herd of waiting requests, the
    /// requests that arrived first are answered last. The current-thread scheduler runs them
    /// in the order they were woken.
    pub fn runtime(&self) -> std::io::Result<tokio::runtime::Runtime> {
        let mut b = if self.worker_threads == 1 {
            tokio::runtime::Builder::new_current_thread()
        } else {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            if self.worker_threads > 0 {
                b.worker_threads(self.worker_threads);
            }
            b
        };
        b.enable_all().build()
    }

    /// As serve-loop limits.
    pub fn limits(&self) -> ServerLimits {
        ServerLimits {
            max_connections: self.max_connections,
            header_read_timeout: self.header_read_timeout,
            max_header_bytes: self.max_header_bytes,
            drain_timeout: self.drain_timeout,
            idle_timeout: self.idle_timeout,
            send_timeout: self.send_timeout,
            max_connections_per_client: self.max_connections_per_client,
            max_requests_per_client: self.max_requests_per_client,
            h2_max_concurrent_streams: self.h2_max_concurrent_streams,
        }
    }

    /// Problems with these values, keyed under `prefix` (e.g. `server`).
    pub fn problems(&self, prefix: &str) -> Vec<crate::Problem> {
        let mut p = Vec::new();
        if !(1..=1_000_000).contains(&self.max_connections) {
            p.push(crate::Problem::new(
                format!("{prefix}.max_connections"),
                "must be from 1 to 1000000",
            ));
        }
        if !(1024..=MAX_HEADER_BYTES).contains(&self.max_header_bytes) {
            p.push(crate::Problem::new(
                format!("{prefix}.max_header_bytes"),
                format!("must be from 1024 to {MAX_HEADER_BYTES}"),
            ));
        }
        for (key, d) in [
            ("header_read_timeout", self.header_read_timeout),
            ("idle_timeout", self.idle_timeout),
            ("send_timeout", self.send_timeout),
        ] {
            if d.is_zero() || d > Duration::from_secs(86_400) {
                p.push(crate::Problem::new(
                    format!("{prefix}.{key}"),
                    "must be more than 0s and at most 1 day",
                ));
            }
        }
        if !(1..=10_000).contains(&self.h2_max_concurrent_streams) {
            p.push(crate::Problem::new(
                format!("{prefix}.h2_max_concurrent_streams"),
                "must be from 1 to 10000",
            ));
        }
        if self.worker_threads > 1024 {
            p.push(crate::Problem::new(
                format!("{prefix}.worker_threads"),
                "must be at most 1024 (0 = one per core)",
            ));
        }
        if self.listen_backlog == 0 || self.listen_backlog > 65_535 {
            p.push(crate::Problem::new(
                format!("{prefix}.listen_backlog"),
                "must be from 1 to 65535",
            ));
        }
        p
    }
}

/// Serves `handler` on `listener` until `shutdown` resolves, then drains open connections for
/// at most `limits.drain_timeout`. One plain listener and no connection metrics; see
/// [`serve_listeners`].
pub async fn serve<H, F>(
    listener: TcpListener,
    handler: H,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()>,
) where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + Unpin + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let listeners = vec![Listener {
        tcp: listener,
        tls: None,
    }];
    serve_listeners(listeners, handler, limits, None, shutdown).await
}

/// A bound listener and, for a TLS port, its acceptor.
pub struct Listener {
    /// The socket.
    pub tcp: TcpListener,
    /// TLS on this port (see [`crate::tls`]); plain HTTP when `None`.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

/// Longest a client may take to complete a TLS handshake.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `handler` on every listener (plain or TLS) until `shutdown` resolves, then
/// drains open connections for at most `limits.drain_timeout`; connection limits and
/// metrics are shared by all listeners.
///
/// Every connection gets a watchdog (see [`crate::conn`]): no request within
/// `header_read_timeout` of accept or `idle_timeout` of the last one, or a response whose
/// data the client does not take for `send_timeout`, closes it. Per client address, at
/// most `max_connections_per_client` connections (more are closed at accept) and
/// `max_requests_per_client` requests in progress (more get 429). On a TLS port the
/// handshake runs in the connection's own task, within [`TLS_HANDSHAKE_TIMEOUT`].
pub async fn serve_listeners<H, F>(
    listeners: Vec<Listener>,
    handler: H,
    limits: ServerLimits,
    metrics: Option<ConnMetrics>,
    shutdown: impl Future<Output = ()>,
) where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + Unpin + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(limits.max_connections.clamp(1, 1_000_000)));
    let clients = Clients::new(
        limits.max_connections_per_client,
        limits.max_requests_per_client,
    );
    let timeouts = Timeouts {
        first_request: limits.header_read_timeout,
        idle: limits.idle_timeout,
        send: limits.send_timeout,
    };
    let metrics = metrics.map(Arc::new);
    // Set when shutdown starts: HTTP/1.1 responses then say `Connection: close`.
    let draining = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut h1 = hyper::server::conn::http1::Builder::new();
    h1.timer(TokioTimer::new())
        // hyper's head timer also runs while a keep-alive connection waits for its next
        // request, so at header_read_timeout (10 s) it closed idle connections that clients
        // still pooled, and a client reusing one at that moment lost its request (a player
        // back from a 12 s outage stalled 10 s longer). The watchdog bounds a first request
        // by header_read_timeout and idle connections by idle_timeout; hyper's timer is
        // only the outer bound of a head that trickles in.
        .header_read_timeout(limits.idle_timeout.max(limits.header_read_timeout))
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(true);
    let mut h2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    h2.timer(TokioTimer::new())
        // Validated to at most MAX_HEADER_BYTES; never a truncating cast.
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(limits.h2_max_concurrent_streams)
        // A peer that stops answering pings is gone: its streams' slots come back.
        .keep_alive_interval(Some(limits.idle_timeout.min(Duration::from_secs(20))))
        .keep_alive_timeout(Duration::from_secs(20));
    let protocols = Arc::new(crate::stream::Protocols { h1, h2 });
    // Turns true in the second half of a drain: connections end after what they are doing.
    let (stop, _) = tokio::sync::watch::channel(false);
    let mut accept_backoff = Duration::from_millis(5);
    let mut first = 0usize;
    tokio::pin!(shutdown);
    loop {
        // Wait for a free slot before accepting: excess connections queue in the kernel
        // backlog instead of costing us memory.
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = &mut shutdown => break,
        };
        // Every listener, starting from a different one each time so none starves.
        let accepted = std::future::poll_fn(|cx| {
            let n = listeners.len();
            for k in 0..n {
                let i = (first + k) % n;
                if let std::task::Poll::Ready(r) = listeners[i].tcp.poll_accept(cx) {
                    return std::task::Poll::Ready((i, r));
                }
            }
            std::task::Poll::Pending
        });
        let (i, stream, peer) = tokio::select! {
            (i, res) = accepted => match res {
                Ok((s, p)) => { accept_backoff = Duration::from_millis(5); (i, s, p) }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed; backing off");
                    tokio::time::sleep(accept_backoff).await;
                    accept_backoff = (accept_backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        first = first.wrapping_add(1);
        let Some(client) = clients.attach(peer.ip()) else {
            // Closed at once: one address cannot take the server's connections.
            count_cut(&metrics, Cut::ClientConnections);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let conn_state = Conn::new();
        let io = CountingIo::new(
            stream,
            conn_state.clone(),
            metrics.as_ref().map(|m| m.sent_bytes.clone()),
        );
        // The connection's protocol gauge, labelled at its first request.
        let labelled: Arc<std::sync::OnceLock<prometheus::IntGauge>> = Default::default();
        let h = handler.clone();
        let state = conn_state.clone();
        let client = Arc::new(client);
        let svc_client = client.clone();
        let svc_draining = draining.clone();
        let svc_labelled = labelled.clone();
        let tls = listeners[i].tls.clone();
        let protocols = protocols.clone();
        let stop = stop.subscribe();
        let metrics = metrics.clone();
        let open_now = OpenGuard::new(&open, metrics.as_ref().map(|m| &m.open));
        let parked_state = conn_state.clone();
        tokio::spawn(async move {
            let _open = open_now;
            let served = async {
                let stream = match tls {
                    None => crate::stream::Stream::Plain(io),
                    Some(acceptor) => {
                        // Boxed: the handshake's state would otherwise size the
                        // connection's task for as long as the connection lives.
                        let handshake = Box::pin(acceptor.accept(io));
                        match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, handshake).await {
                            Ok(Ok(s)) => {
                                count_handshake(&metrics, "ok");
                                crate::stream::Stream::Tls(Box::new(s))
                            }
                            Ok(Err(e)) => {
                                count_handshake(&metrics, "failed");
                                tracing::debug!(error = %e, %peer, "TLS handshake failed");
                                return Ok(());
                            }
                            Err(_) => {
                                count_handshake(&metrics, "timeout");
                                return Ok(());
                            }
                        }
                    }
                };
                let tls = match &stream {
                    crate::stream::Stream::Tls(t) => Some(crate::conn::tls_version_label(
                        t.get_ref().1.protocol_version(),
                    )),
                    crate::stream::Stream::Plain(_) => None,
                };
                let svc_metrics = metrics.clone();
                let svc = service_fn(move |mut req: Request<Incoming>| {
                    let guard = RequestGuard::start(&state, &svc_client);
                    let h1 = req.version() < http::Version::HTTP_2;
                    if let Some(v) = tls {
                        req.extensions_mut().insert(crate::conn::TlsVersion(v));
                    }
                    if let Some(m) = &svc_metrics {
                        svc_labelled.get_or_init(|| {
                            let g = m.open_by_protocol.with_label_values(&[
                                if h1 { "HTTP/1.1" } else { "HTTP/2" },
                                tls.unwrap_or("none"),
                            ]);
                            g.inc();
                            g
                        });
                    }
                    let fut = guard.as_ref().map(|_| h(req, peer));
                    if guard.is_none() {
                        count_cut(&svc_metrics, Cut::ClientRequests);
                    }
                    let draining = svc_draining.clone();
                    // Boxed: parking an HTTP/1.1 connection (crate::stream) needs an Unpin
                    // future.
                    Box::pin(async move {
                        let mut resp = match (guard, fut) {
                            (Some(g), Some(fut)) => {
                                fut.await.map(|b| Tracked::new(b, g).boxed_unsync())
                            }
                            _ => too_many_requests(),
                        };
                        if h1 && draining.load(std::sync::atomic::Ordering::Relaxed) {
                            // The client moves to another server (or the successor that took
                            // the listening sockets) after this response, when it chooses.
                            resp.headers_mut().insert(
                                http::header::CONNECTION,
                                http::HeaderValue::from_static("close"),
                            );
                        }
                        Ok::<_, Infallible>(resp)
                    })
                });
                let parked = metrics.as_ref().map(|m| &m.parked);
                crate::stream::serve(stream, svc, &protocols, stop, &parked_state, parked).await
            };
            tokio::select! {
                r = served => if let Err(e) = r {
                    tracing::debug!(error = %e, %peer, "connection ended with error");
                },
                why = conn_state.watchdog(timeouts) => {
                    tracing::debug!(%peer, reason = why.as_str(), "connection cut");
                    count_cut(&metrics, why);
                }
            }
            if let Some(g) = labelled.get() {
                g.dec();
            }
            drop((permit, client));
        });
    }
    drop(listeners);
    let deadline = tokio::time::Instant::now() + limits.drain_timeout;
    // First half of the drain: HTTP/1.1 connections are closed after their next response
    // rather than at once, since closing an idle keep-alive connection races a request the
    // client may be sending on it at that moment, and that request would be lost. HTTP/2
    // connections keep going until the GOAWAY below, which has no such race.
    draining.store(true, std::sync::atomic::Ordering::Relaxed);
    let grace = tokio::time::Instant::now() + limits.drain_timeout / 2;
    while open.load(std::sync::atomic::Ordering::Relaxed) > 0 && tokio::time::Instant::now() < grace
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Second half: HTTP/2 connections get GOAWAY, HTTP/1.1 ones end after the response in
    // progress, parked ones close.
    stop.send_replace(true);
    while open.load(std::sync::atomic::Ordering::Relaxed) > 0 {
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(timeout = ?limits.drain_timeout, "drain deadline passed; closing remaining connections");
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tracing::info!("all connections drained");
}

/// Counts a connection as open while it lives (and in the `*_connections_open` gauge).
struct OpenGuard(
    Arc<std::sync::atomic::AtomicUsize>,
    Option<prometheus::IntGauge>,
);

impl OpenGuard {
    fn new(
        open: &Arc<std::sync::atomic::AtomicUsize>,
        gauge: Option<&prometheus::IntGauge>,
    ) -> Self {
        open.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Some(g) = gauge {
            g.inc();
        }
        Self(open.clone(), gauge.cloned())
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        if let Some(g) = &self.1 {
            g.dec();
        }
    }
}

fn count_cut(metrics: &Option<Arc<ConnMetrics>>, why: Cut) {
    if let Some(m) = metrics {
        m.cut.with_label_values(&[why.as_str()]).inc();
    }
}

fn count_handshake(metrics: &Option<Arc<ConnMetrics>>, outcome: &str) {
    if let Some(m) = metrics {
        m.tls_handshakes.with_label_values(&[outcome]).inc();
    }
}

/// The answer to a request over its address's `max_requests_per_client`.
fn too_many_requests() -> Response<Body> {
    let mut r = crate::body::text(
        http::StatusCode::TOO_MANY_REQUESTS,
        "too many requests in progress from your address; retry shortly",
    );
    r.headers_mut().insert(
        http::header::RETRY_AFTER,
        http::HeaderValue::from_static("1"),
    );
    r
}

/// Where [`serve_main`] listens: an address to bind, or a listening socket taken over from
/// the server this one upgrades (see [`crate::handoff`]).
#[derive(Debug)]
pub enum Listen {
    /// Bind this address.
    Addr(SocketAddr),
    /// Accept on this socket (non-blocking).
    Taken(std::net::TcpListener),
}

impl From<SocketAddr> for Listen {
    fn from(a: SocketAddr) -> Self {
        Listen::Addr(a)
    }
}

/// The shutdown signal a program's `run` gets: resolves when it should drain and stop.
pub type Shutdown = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// The body of every program's `main` once its config is loaded: builds the runtime, binds
/// `listen`, runs `run(listener, shutdown)` with SIGTERM/Ctrl-C as the shutdown signal, and
/// turns failures into a message on stderr and a failing exit code.
pub fn serve_main<F, E>(
    server: &ServerConfig,
    listen: impl Into<Listen>,
    run: impl FnOnce(TcpListener, Shutdown) -> F + Send + 'static,
) -> std::process::ExitCode
where
    F: Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    use std::process::ExitCode;
    raise_fd_limit();
    let rt = match server.runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let backlog = server.listen_backlog;
    let listen = listen.into();
    // Spawned rather than run inside block_on, which would keep the accept loop on the main
    // thread: every accepted connection would then be handed across threads to a worker.
    let main = rt.spawn(async move {
        let bound = match listen {
            Listen::Addr(a) => bind(a, backlog).map_err(|e| (a.to_string(), e)),
            Listen::Taken(l) => {
                TcpListener::from_std(l).map_err(|e| ("the taken socket".into(), e))
            }
        };
        let listener = match bound {
            Ok(l) => l,
            Err((what, e)) => {
                eprintln!("error: cannot listen on {what} (--listen / `listen`): {e}");
                return ExitCode::FAILURE;
            }
        };
        match run(listener, Box::pin(crate::shutdown::signal())).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    });
    rt.block_on(main).unwrap_or_else(|e| {
        eprintln!("error: the server task failed: {e}");
        ExitCode::FAILURE
    })
}

/// Raises the soft limit on open files to the hard limit: every viewer is a socket, and the
/// usual soft limit (1024) would stop a server long before `max_connections` does.
pub fn raise_fd_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::debug!(limit = n, "open-file limit raised"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
    }
}

/// A program serving on a loopback port of this process (tests, the player-sim demo);
/// dropping it shuts the program down.
#[derive(Debug)]
pub struct InProcess {
    /// Where it listens.
    pub addr: std::net::SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl InProcess {
    /// Binds 127.0.0.1:0 and spawns `run(listener, shutdown)` on the current runtime, as
    /// [`serve_main`] does for a binary; a program that fails logs `{name} failed`.
    pub async fn spawn<F, E>(
        name: &'static str,
        run: impl FnOnce(TcpListener, Shutdown) -> F + Send + 'static,
    ) -> std::io::Result<Self>
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display,
    {
        let listener = bind(([127, 0, 0, 1], 0).into(), DEFAULT_LISTEN_BACKLOG)?;
        let addr = listener.local_addr()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let fut = run(
            listener,
            Box::pin(async move {
                let _ = rx.await;
            }),
        );
        tokio::spawn(async move {
            if let Err(e) = fut.await {
                tracing::error!(error = %e, "{name} failed");
            }
        });
        Ok(Self { addr, _stop: tx })
    }

    /// `http://{addr}{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::runtime::RuntimeFlavor;

    /// One worker means the current-thread scheduler (tasks run in wake order); any other
    /// count the multi-threaded one with that many workers.
    #[test]
    fn worker_threads_pick_the_scheduler() {
        let flavor = |n| {
            ServerConfig {
                worker_threads: n,
                ..ServerConfig::default()
            }
            .runtime()
            .unwrap()
            .handle()
            .runtime_flavor()
        };
        assert_eq!(flavor(1), RuntimeFlavor::CurrentThread);
        assert_eq!(flavor(2), RuntimeFlavor::MultiThread);
        assert_eq!(flavor(0), RuntimeFlavor::MultiThread);
        let rt = ServerConfig {
            worker_threads: 2,
            ..ServerConfig::default()
        }
        .runtime()
        .unwrap();
        assert_eq!(rt.metrics().num_workers(), 2);
    }

    /// Every viewer is a socket: the soft open-file limit goes up to the hard one.
    #[test]
    fn the_open_file_limit_is_raised_to_the_hard_limit() {
        raise_fd_limit();
        let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
        assert_eq!(soft, hard);
    }

    /// The listener queues as many completed connections as asked, not std's and mio's 128:
    /// 300 connects that nobody accepts all wait in its queue (Linux shows a listener's queue
    /// length as the rx_queue column of /proc/net/tcp).
    #[tokio::test]
    async fn bind_listens_with_the_backlog_asked_for() {
        let l = bind(([127, 0, 0, 1], 0).into(), 1000).unwrap();
        let addr = l.local_addr().unwrap();
        let mut held = Vec::new();
        for i in 0..300 {
            // With a full queue the kernel drops handshakes and connect waits on SYN
            // retransmits: fail fast instead.
            let c =
                tokio::time::timeout(Duration::from_secs(3), tokio::net::TcpStream::connect(addr))
                    .await
                    .unwrap_or_else(|_| panic!("connect {i} stalled: the listen queue is full"));
            held.push(c.unwrap());
        }
        let queued = || -> Option<u32> {
            let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
            let row = table.lines().find(|r| {
                let f: Vec<&str> = r.split_whitespace().collect();
                f.get(1)
                    .is_some_and(|a| a.ends_with(&format!(":{:04X}", addr.port())))
                    && f.get(3) == Some(&"0A")
            })?;
            let queues = row.split_whitespace().nth(4)?;
            u32::from_str_radix(queues.split(':').nth(1)?, 16).ok()
        };
        if let Some(mut n) = queued() {
            // The last handshakes may still be completing.
            for _ in 0..50 {
                if n >= 300 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                n = queued().unwrap_or(n);
            }
            assert_eq!(n, 300, "connections queued on the listener");
        }
        assert!(
            ServerConfig {
                listen_backlog: 0,
                ..ServerConfig::default()
            }
            .problems("server")
            .iter()
            .any(|p| p.key == "server.listen_backlog")
        );
    }
}
