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
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::Body;

/// Limits applied to every accepted connection.
#[derive(Debug, Clone)]
pub struct ServerLimits {
    /// Connections served at once; further ones wait in the listen backlog.
    pub max_connections: usize,
    /// Time a client gets to send a request head (slowloris defence).
    pub header_read_timeout: Duration,
    /// Largest request head accepted, in bytes (HTTP/1 buffer, HTTP/2 header list).
    pub max_header_bytes: usize,
    /// How long in-flight requests may run after shutdown is signalled.
    pub drain_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// The `[server]` table every program's config shares.
#[derive(Debug, Clone, serde::Deserialize)]
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
        }
    }

    /// Problems with these values, keyed under `prefix` (e.g. `server`).
    pub fn problems(&self, prefix: &str) -> Vec<crate::Problem> {
        let mut p = Vec::new();
        if self.max_connections == 0 {
            p.push(crate::Problem::new(
                format!("{prefix}.max_connections"),
                "must be at least 1",
            ));
        }
        if self.max_header_bytes < 1024 {
            p.push(crate::Problem::new(
                format!("{prefix}.max_header_bytes"),
                "must be at least 1024",
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
        if self.header_read_timeout.is_zero() {
            p.push(crate::Problem::new(
                format!("{prefix}.header_read_timeout"),
                "must be more than 0s",
            ));
        }
        p
    }
}

/// Serves `handler` on `listener` until `shutdown` resolves, then drains open connections for
/// at most `limits.drain_timeout`.
pub async fn serve<H, F>(
    listener: TcpListener,
    handler: H,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()>,
) where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(limits.max_header_bytes as u32)
        .max_concurrent_streams(256);
    let mut accept_backoff = Duration::from_millis(5);
    tokio::pin!(shutdown);
    loop {
        // Wait for a free slot before accepting: excess connections queue in the kernel
        // backlog instead of costing us memory.
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            res = listener.accept() => match res {
                Ok(c) => { accept_backoff = Duration::from_millis(5); c }
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
        let _ = stream.set_nodelay(true);
        let h = handler.clone();
        let svc = service_fn(move |req| {
            let fut = h(req, peer);
            async move { Ok::<_, Infallible>(fut.await) }
        });
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), svc)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, %peer, "connection ended with error");
            }
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all connections drained"),
        _ = tokio::time::sleep(limits.drain_timeout) => {
            tracing::warn!(timeout = ?limits.drain_timeout, "drain deadline passed; closing remaining connections");
        }
    }
}

/// The shutdown signal a program's `run` gets: resolves when it should drain and stop.
pub type Shutdown = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// The body of every program's `main` once its config is loaded: builds the runtime, binds
/// `listen`, runs `run(listener, shutdown)` with SIGTERM/Ctrl-C as the shutdown signal, and
/// turns failures into a message on stderr and a failing exit code.
pub fn serve_main<F, E>(
    server: &ServerConfig,
    listen: std::net::SocketAddr,
    run: impl FnOnce(TcpListener, Shutdown) -> F + Send + 'static,
) -> std::process::ExitCode
where
    F: Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    use std::process::ExitCode;
    let rt = match server.runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let backlog = server.listen_backlog;
    // Spawned rather than run inside block_on, which would keep the accept loop on the main
    // thread: every accepted connection would then be handed across threads to a worker.
    let main = rt.spawn(async move {
        let listener = match bind(listen, backlog) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: cannot listen on {listen} (--listen / `listen`): {e}");
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
