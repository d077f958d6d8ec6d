//! What the serve loop knows about each connection and each client address, so that no
//! client can hold the server's resources for nothing:
//!
//! - a connection that has no request in progress is closed after `header_read_timeout` from
//!   accept (a socket that never sends a byte) and after `idle_timeout` between requests
//!   (HTTP/1.1 keep-alive and HTTP/2 alike);
//! - a response whose data the client does not take (a full TCP window, or an HTTP/2 stream
//!   that never grants flow-control window) for `send_timeout` closes its connection, which
//!   releases every slot its requests held;
//! - one client address may hold at most `max_connections_per_client` connections and
//!   `max_requests_per_client` requests in progress.
//!
//! The decision ([`verdict`]) is pure; the serve loop's per-connection watchdog asks it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use tokio::time::Instant;

use crate::Body;

/// Why the serve loop cut a connection or refused a request; the metrics label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// No request within `header_read_timeout` of accept, or within `idle_timeout` of the
    /// last one.
    Idle,
    /// A response's data was not taken for `send_timeout`.
    SendStall,
    /// The client address already holds `max_connections_per_client` connections.
    ClientConnections,
    /// The client address already has `max_requests_per_client` requests in progress (the
    /// request gets 429).
    ClientRequests,
}

impl Cut {
    /// The metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Cut::Idle => "idle",
            Cut::SendStall => "send_stall",
            Cut::ClientConnections => "client_connections",
            Cut::ClientRequests => "client_requests",
        }
    }
}

/// The serve loop's connection metrics, registered under a program's prefix
/// (`{prefix}_connections_open`, `{prefix}_connections_cut_total{reason}`).
#[derive(Debug, Clone)]
pub struct ConnMetrics {
    /// Connections open now.
    pub open: IntGauge,
    /// Connections closed or requests refused by the serve loop, by [`Cut`].
    pub cut: IntCounterVec,
    /// TLS handshakes by outcome (`ok`, `failed`, `timeout`).
    pub tls_handshakes: IntCounterVec,
    /// Connections open now that have made a request, by HTTP version and TLS version.
    pub open_by_protocol: prometheus::IntGaugeVec,
    /// Bytes written to client sockets (TLS records included: what leaves the host).
    pub sent_bytes: prometheus::IntCounter,
    /// Idle HTTP/1.1 connections parked without HTTP state (see `PARK_AFTER`).
    pub parked: IntGauge,
}

/// The TLS version a request came over (a request extension; absent on plain HTTP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsVersion(pub &'static str);

/// The label for a negotiated TLS version.
pub(crate) fn tls_version_label(v: Option<rustls::ProtocolVersion>) -> &'static str {
    match v {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
        _ => "TLS",
    }
}

impl ConnMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &Registry, prefix: &str) -> prometheus::Result<Self> {
        let m = Self {
            open: IntGauge::new(
                format!("{prefix}_connections_open"),
                "Client connections open now.",
            )?,
            cut: IntCounterVec::new(
                Opts::new(
                    format!("{prefix}_connections_cut_total"),
                    "Connections closed (idle, send_stall, client_connections) or requests refused (client_requests) by the server's own limits.",
                ),
                &["reason"],
            )?,
            tls_handshakes: IntCounterVec::new(
                Opts::new(
                    format!("{prefix}_tls_handshakes_total"),
                    "TLS handshakes by outcome (ok, failed, timeout).",
                ),
                &["outcome"],
            )?,
            open_by_protocol: prometheus::IntGaugeVec::new(
                Opts::new(
                    format!("{prefix}_connections_open_by_protocol"),
                    "Client connections open now that have made a request, by protocol (HTTP/1.1, HTTP/2) and TLS version (none on plain HTTP).",
                ),
                &["protocol", "tls"],
            )?,
            sent_bytes: prometheus::IntCounter::new(
                format!("{prefix}_sent_bytes_total"),
                "Bytes written to client sockets, TLS records included.",
            )?,
            parked: IntGauge::new(
                format!("{prefix}_connections_parked"),
                "Idle HTTP/1.1 connections parked: the socket kept, the HTTP state freed until the next request.",
            )?,
        };
        registry.register(Box::new(m.open.clone()))?;
        registry.register(Box::new(m.open_by_protocol.clone()))?;
        registry.register(Box::new(m.sent_bytes.clone()))?;
        registry.register(Box::new(m.parked.clone()))?;
        registry.register(Box::new(m.cut.clone()))?;
        registry.register(Box::new(m.tls_handshakes.clone()))?;
        Ok(m)
    }
}

/// The time limits a connection's watchdog applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// From accept to the first request.
    pub first_request: Duration,
    /// From the end of one request to the next.
    pub idle: Duration,
    /// Longest a response may wait for the client to take its data.
    pub send: Duration,
}

/// What a connection looks like to its watchdog at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    /// Requests in progress (handler running or body not finished).
    pub requests: usize,
    /// Whether any request has been seen.
    pub served_any: bool,
    /// When the connection was accepted or its last request ended.
    pub last_active: Instant,
    /// Since when the longest-waiting response has had data the client did not take.
    pub oldest_waiting: Option<Instant>,
}

/// Whether to cut the connection now, or when to look again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Close it.
    Cut(Cut),
    /// Check again at this moment (sooner if nothing can change before).
    RecheckAt(Instant),
}

/// The watchdog's decision for a connection in state `s` at `now`.
pub fn verdict(s: &Snapshot, now: Instant, t: &Timeouts) -> Verdict {
    // Without a wake-up from every state change, look at least this often while requests
    // run (a response may start waiting at any moment).
    let mut next = now + t.send / 2;
    if let Some(w) = s.oldest_waiting {
        let due = w + t.send;
        if now >= due {
            return Verdict::Cut(Cut::SendStall);
        }
        next = next.min(due);
    }
    if s.requests == 0 {
        let limit = if s.served_any {
            t.idle
        } else {
            t.first_request
        };
        let due = s.last_active + limit;
        if now >= due {
            return Verdict::Cut(Cut::Idle);
        }
        next = next.min(due);
    }
    Verdict::RecheckAt(next)
}

/// Whether an HTTP/1.1 connection in state `s` may be parked at `now`: `None` when it may
/// (no request in progress, nothing waiting for the client, quiet for `after`), else when
/// to look again.
pub fn park_due(s: &Snapshot, now: Instant, after: Duration) -> Option<Instant> {
    if s.requests > 0 || s.oldest_waiting.is_some() {
        return Some(now + after);
    }
    let due = s.last_active + after;
    (now < due).then_some(due)
}

/// Marker in a response's waiting slot: its body is not waiting for the client.
const NOT_WAITING: u64 = u64::MAX;

/// One connection's shared state: updated by its requests, read by its watchdog.
#[derive(Debug)]
pub(crate) struct Conn {
    epoch: Instant,
    requests: AtomicUsize,
    served_any: std::sync::atomic::AtomicBool,
    last_active_ms: AtomicU64,
    /// One slot per open response body: ms (since `epoch`) since which it has been waiting
    /// for the client to take its data, or [`NOT_WAITING`].
    waiting: Mutex<Vec<Arc<AtomicU64>>>,
    /// Bytes written to the socket.
    written: AtomicU64,
    /// When bytes were last written (ms since `epoch`).
    last_write_ms: AtomicU64,
    /// Body bytes handed to the connection, all responses together.
    handed: AtomicU64,
    /// Finished bodies whose last bytes are still queued for the socket, with the `written`
    /// mark at which they will have gone out. Kept alive until then, so whatever they hold
    /// (an admission ticket, say) counts until the client has the data, not merely until
    /// the connection has queued it.
    lingering: Mutex<Vec<(u64, Body)>>,
    lingering_n: AtomicUsize,
}

impl Conn {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            epoch: Instant::now(),
            requests: AtomicUsize::new(0),
            served_any: std::sync::atomic::AtomicBool::new(false),
            last_active_ms: AtomicU64::new(0),
            waiting: Mutex::new(Vec::new()),
            written: AtomicU64::new(0),
            last_write_ms: AtomicU64::new(0),
            handed: AtomicU64::new(0),
            lingering: Mutex::new(Vec::new()),
            lingering_n: AtomicUsize::new(0),
        })
    }

    /// `n` bytes went to the socket: releases the lingering bodies they complete.
    fn wrote(&self, n: usize) {
        let total = self.written.fetch_add(n as u64, Ordering::AcqRel) + n as u64;
        self.last_write_ms
            .store(self.ms(Instant::now()), Ordering::Relaxed);
        if self.lingering_n.load(Ordering::Acquire) > 0 {
            let done: Vec<(u64, Body)> = {
                let mut l = self.lingering.lock().unwrap_or_else(|p| p.into_inner());
                let done = l.extract_if(.., |(m, _)| *m <= total).collect();
                self.lingering_n.store(l.len(), Ordering::Release);
                done
            };
            // Dropped outside the lock: a body's drop may do work of its own.
            drop(done);
        }
    }

    /// Keeps `body` until the socket has written `mark` bytes.
    fn linger(&self, mark: u64, body: Body) {
        let mut l = self.lingering.lock().unwrap_or_else(|p| p.into_inner());
        if self.written.load(Ordering::Acquire) >= mark {
            return;
        }
        l.push((mark, body));
        self.lingering_n.store(l.len(), Ordering::Release);
    }

    fn ms(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX - 1)
    }

    fn at(&self, ms: u64) -> Instant {
        self.epoch + Duration::from_millis(ms)
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        let bodies = self
            .waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|w| w.load(Ordering::Relaxed))
            .min()
            .filter(|&m| m != NOT_WAITING);
        // Queued data of finished bodies waits on the socket: it stalls when nothing has
        // been written for a while.
        let queued = (self.lingering_n.load(Ordering::Acquire) > 0)
            .then(|| self.last_write_ms.load(Ordering::Relaxed));
        let oldest = match (bodies, queued) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Snapshot {
            requests: self.requests.load(Ordering::Acquire),
            served_any: self.served_any.load(Ordering::Relaxed),
            last_active: self.at(self.last_active_ms.load(Ordering::Relaxed)),
            oldest_waiting: oldest.map(|m| self.at(m)),
        }
    }

    /// Runs until the connection should be cut, and says why.
    pub(crate) async fn watchdog(self: Arc<Self>, t: Timeouts) -> Cut {
        loop {
            match verdict(&self.snapshot(), Instant::now(), &t) {
                Verdict::Cut(c) => return c,
                Verdict::RecheckAt(at) => tokio::time::sleep_until(at).await,
            }
        }
    }
}

/// The socket of one connection, counting what it writes for the connection's [`Conn`].
/// Most bytes one read asks a TLS stream for.
///
/// hyper offers each read the whole free part of its read buffer (8 to 16 KiB), and
/// tokio-rustls zeroes whatever it is offered before copying plaintext in, so every kept-alive
/// TLS connection had its whole buffer resident (about 16 KiB each: 10,000 idle viewers cost
/// 150 MiB more than they need). A request head fits in far less, and rustls keeps the rest
/// of a record for the next read.
pub(crate) const TLS_READ_CHUNK: usize = 2048;

/// Reads from `inner` at most [`TLS_READ_CHUNK`] bytes at a time.
pub(crate) fn poll_read_capped<R: tokio::io::AsyncRead + ?Sized>(
    inner: Pin<&mut R>,
    cx: &mut Context<'_>,
    buf: &mut tokio::io::ReadBuf<'_>,
) -> Poll<std::io::Result<()>> {
    if buf.remaining() <= TLS_READ_CHUNK {
        return inner.poll_read(cx, buf);
    }
    let mut part = buf.take(TLS_READ_CHUNK);
    let r = inner.poll_read(cx, &mut part);
    let (filled, initialized) = (part.filled().len(), part.initialized().len());
    // SAFETY: `part` is the start of `buf`'s unfilled region, and the inner reader has
    // initialized its first `initialized` bytes (ReadBuf's own contract).
    unsafe { buf.assume_init(initialized) };
    buf.advance(filled);
    r
}

pub(crate) struct CountingIo<T> {
    inner: T,
    conn: Arc<Conn>,
    /// The program's bytes-sent counter, when it keeps one.
    sent: Option<prometheus::IntCounter>,
}

impl<T> CountingIo<T> {
    pub(crate) fn new(inner: T, conn: Arc<Conn>, sent: Option<prometheus::IntCounter>) -> Self {
        Self { inner, conn, sent }
    }

    /// The stream inside.
    pub(crate) fn get_ref(&self) -> &T {
        &self.inner
    }

    fn count(&self, n: usize) {
        self.conn.wrote(n);
        if let Some(c) = &self.sent {
            c.inc_by(n as u64);
        }
    }
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for CountingIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for CountingIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            self.count(*n);
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = &r {
            self.count(*n);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The connections and requests in progress of one client address.
#[derive(Debug, Default)]
pub(crate) struct Client {
    conns: AtomicUsize,
    requests: AtomicUsize,
}

/// Every client address with a connection open.
#[derive(Debug)]
pub(crate) struct Clients {
    map: Mutex<HashMap<IpAddr, Arc<Client>>>,
    max_conns: usize,
    max_requests: usize,
}

impl Clients {
    /// Caps of 0 mean no cap.
    pub(crate) fn new(max_conns: usize, max_requests: usize) -> Arc<Self> {
        Arc::new(Self {
            map: Mutex::new(HashMap::new()),
            max_conns: if max_conns == 0 {
                usize::MAX
            } else {
                max_conns
            },
            max_requests: if max_requests == 0 {
                usize::MAX
            } else {
                max_requests
            },
        })
    }

    /// Registers a connection from `ip`, or `None` when the address is at its cap.
    pub(crate) fn attach(self: &Arc<Self>, ip: IpAddr) -> Option<ClientGuard> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let c = map.entry(ip).or_default().clone();
        if c.conns.load(Ordering::Relaxed) >= self.max_conns {
            return None;
        }
        c.conns.fetch_add(1, Ordering::Relaxed);
        Some(ClientGuard {
            clients: self.clone(),
            ip,
            client: c,
        })
    }
}

/// A connection's registration with its client address; dropping it deregisters.
#[derive(Debug)]
pub(crate) struct ClientGuard {
    clients: Arc<Clients>,
    ip: IpAddr,
    client: Arc<Client>,
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        let mut map = self.clients.map.lock().unwrap_or_else(|p| p.into_inner());
        if self.client.conns.fetch_sub(1, Ordering::Relaxed) == 1 {
            map.remove(&self.ip);
        }
    }
}

/// One request in progress on a connection, counted for its connection and its client
/// address until dropped (with the response body, or with the handler if it never answers).
pub(crate) struct RequestGuard {
    conn: Arc<Conn>,
    client: Arc<Client>,
}

impl RequestGuard {
    /// Starts counting a request, or `None` when its client address is at its cap.
    pub(crate) fn start(conn: &Arc<Conn>, client: &ClientGuard) -> Option<Self> {
        let c = &client.client;
        if c.requests.fetch_add(1, Ordering::AcqRel) >= client.clients.max_requests {
            c.requests.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        conn.requests.fetch_add(1, Ordering::AcqRel);
        conn.served_any.store(true, Ordering::Relaxed);
        Some(Self {
            conn: conn.clone(),
            client: c.clone(),
        })
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let now = self.conn.ms(Instant::now());
        self.conn.last_active_ms.store(now, Ordering::Relaxed);
        self.conn.requests.fetch_sub(1, Ordering::AcqRel);
        self.client.requests.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that tells its connection's watchdog when it waits for the client: from
/// the moment it hands out data until the connection asks for more. It also holds its
/// request's [`RequestGuard`].
pub(crate) struct Tracked {
    inner: Body,
    slot: Arc<AtomicU64>,
    guard: RequestGuard,
}

impl Tracked {
    pub(crate) fn new(inner: Body, guard: RequestGuard) -> Self {
        // The response head goes out first: until the connection first asks for data, the
        // body counts as waiting (an HTTP/2 stream without window is never asked).
        let slot = Arc::new(AtomicU64::new(guard.conn.ms(Instant::now())));
        guard
            .conn
            .waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(slot.clone());
        Self { inner, slot, guard }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        let conn = &self.guard.conn;
        {
            let mut w = conn.waiting.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(i) = w.iter().position(|s| Arc::ptr_eq(s, &self.slot)) {
                w.swap_remove(i);
            }
        }
        let mark = conn.handed.load(Ordering::Acquire);
        if conn.written.load(Ordering::Acquire) < mark {
            let body = std::mem::replace(&mut self.inner, crate::body::empty());
            conn.linger(mark, body);
        }
    }
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = crate::body::BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        this.slot.store(NOT_WAITING, Ordering::Relaxed);
        let r = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(f))) = &r
            && let Some(d) = f.data_ref()
        {
            let conn = &this.guard.conn;
            conn.handed.fetch_add(d.len() as u64, Ordering::AcqRel);
            this.slot.store(conn.ms(Instant::now()), Ordering::Relaxed);
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader whose reads are capped at [`TLS_READ_CHUNK`] bytes (see [`poll_read_capped`]).
    struct CappedRead<T>(T);

    impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for CappedRead<T> {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            poll_read_capped(Pin::new(&mut self.0), cx, buf)
        }
    }

    /// A read offered 16 KiB takes at most TLS_READ_CHUNK, and the bytes arrive whole and in
    /// order over as many reads as it takes.
    #[tokio::test]
    async fn capped_reads_take_small_chunks_and_lose_nothing() {
        use tokio::io::AsyncReadExt;
        let data: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        let mut r = CappedRead(&data[..]);
        let mut got = Vec::new();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = r.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            assert!(n <= TLS_READ_CHUNK, "read {n} bytes at once");
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, data);
        // A small offer passes through as it is.
        let mut r = CappedRead(&data[..]);
        let mut small = [0u8; 100];
        assert_eq!(r.read(&mut small).await.unwrap(), 100);
    }

    const T: Timeouts = Timeouts {
        first_request: Duration::from_secs(10),
        idle: Duration::from_secs(60),
        send: Duration::from_secs(30),
    };

    fn snap(t0: Instant) -> Snapshot {
        Snapshot {
            requests: 0,
            served_any: false,
            last_active: t0,
            oldest_waiting: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_socket_is_cut_after_the_first_request_timeout() {
        let t0 = Instant::now();
        let s = snap(t0);
        assert_eq!(
            verdict(&s, t0, &T),
            Verdict::RecheckAt(t0 + T.first_request)
        );
        assert_eq!(
            verdict(&s, t0 + T.first_request, &T),
            Verdict::Cut(Cut::Idle)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn keep_alive_idles_out_but_a_running_request_never_does() {
        let t0 = Instant::now();
        let mut s = snap(t0);
        s.served_any = true;
        assert!(matches!(
            verdict(&s, t0 + Duration::from_secs(59), &T),
            Verdict::RecheckAt(_)
        ));
        assert_eq!(
            verdict(&s, t0 + Duration::from_secs(60), &T),
            Verdict::Cut(Cut::Idle)
        );
        s.requests = 1; // a long blocking request or an upload
        assert!(matches!(
            verdict(&s, t0 + Duration::from_secs(3600), &T),
            Verdict::RecheckAt(_)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn data_not_taken_for_the_send_timeout_cuts() {
        let t0 = Instant::now();
        let mut s = snap(t0);
        s.requests = 3;
        s.oldest_waiting = Some(t0 + Duration::from_secs(5));
        assert_eq!(
            verdict(&s, t0 + Duration::from_secs(20), &T),
            Verdict::RecheckAt(t0 + Duration::from_secs(35))
        );
        assert_eq!(
            verdict(&s, t0 + Duration::from_secs(35), &T),
            Verdict::Cut(Cut::SendStall)
        );
    }

    #[test]
    fn client_caps_hold_and_release() {
        let clients = Clients::new(2, 1);
        let ip: IpAddr = [10, 0, 0, 1].into();
        let a = clients.attach(ip).unwrap();
        let b = clients.attach(ip).unwrap();
        assert!(clients.attach(ip).is_none(), "third connection refused");
        assert!(clients.attach([10, 0, 0, 2].into()).is_some());
        let conn = Conn::new();
        let r = RequestGuard::start(&conn, &a).unwrap();
        assert!(RequestGuard::start(&conn, &b).is_none(), "per address");
        drop(r);
        assert!(RequestGuard::start(&conn, &b).is_some());
        drop((a, b));
        assert!(clients.map.lock().unwrap().get(&ip).is_none(), "forgotten");
    }
}
