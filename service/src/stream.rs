//! One accepted connection, from its first byte to its end: HTTP/2 (ALPN, or the preface
//! on plain HTTP) or HTTP/1.1, and HTTP/1.1 connections *parked* while idle.
//!
//! hyper keeps an HTTP/1.1 connection's read and write buffers (24 KiB and more) for as long
//! as the connection lives, even while it waits for the next request; with tens of thousands
//! of viewers between two segment requests that is most of the server's memory. So once a
//! connection has had no request in progress for [`PARK_AFTER`], hyper is asked to finish it
//! without closing the socket (`graceful_shutdown` + `poll_without_shutdown`: an idle
//! connection ends at once, a request that just started is served first), its buffers are
//! freed, and the bare socket waits for readability. The next request starts a fresh hyper
//! connection with whatever hyper had already read. The client sees one kept-alive
//! connection throughout; no request can be lost, since bytes that arrive meanwhile wait in
//! the socket or in the handed-back read buffer.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::Body;
use crate::conn::{Conn, CountingIo, park_due, poll_read_capped};

/// An HTTP/1.1 connection with no request in progress for this long is parked.
pub(crate) const PARK_AFTER: Duration = Duration::from_millis(500);

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The configured protocol builders.
pub(crate) struct Protocols {
    pub(crate) h1: hyper::server::conn::http1::Builder,
    pub(crate) h2: hyper::server::conn::http2::Builder<TokioExecutor>,
}

/// A client's byte stream, plain or TLS.
pub(crate) enum Stream {
    /// Plain TCP.
    Plain(CountingIo<TcpStream>),
    /// TLS over TCP (reads capped, see [`poll_read_capped`]).
    Tls(Box<tokio_rustls::server::TlsStream<CountingIo<TcpStream>>>),
}

impl Stream {
    /// Waits until the client has sent something (or closed).
    async fn readable(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.get_ref().readable().await,
            Stream::Tls(t) => {
                // Plaintext rustls already holds needs no wait.
                let (io, session) = t.get_mut();
                match session.process_new_packets() {
                    Ok(state) if state.plaintext_bytes_to_read() > 0 => Ok(()),
                    _ => io.get_ref().readable().await,
                }
            }
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(t) => poll_read_capped(Pin::new(&mut **t), cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        b: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, b),
            Stream::Tls(t) => Pin::new(&mut **t).poll_write(cx, b),
        }
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(t) => Pin::new(&mut **t).poll_write_vectored(cx, bufs),
        }
    }
    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(t) => t.is_write_vectored(),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(t) => Pin::new(&mut **t).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(t) => Pin::new(&mut **t).poll_shutdown(cx),
        }
    }
}

/// A stream with bytes already read from it put back in front.
pub(crate) struct Prefixed {
    pre: Bytes,
    io: Stream,
}

impl Prefixed {
    fn into_parts(self) -> (Bytes, Stream) {
        (self.pre, self.io)
    }
}

impl AsyncRead for Prefixed {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.pre.has_remaining() {
            let n = this.pre.len().min(buf.remaining());
            buf.put_slice(&this.pre[..n]);
            this.pre.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        b: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, b)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Why a connection ended other than by the client or the watchdog.
pub(crate) type ConnError = Box<dyn std::error::Error + Send + Sync>;

/// Resolves once `stop` says true.
async fn stopped(mut stop: tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Serves `stream` with `svc` until the client leaves or `stop` turns true (then in-flight
/// requests finish: HTTP/2 gets GOAWAY, HTTP/1.1 ends after its current response).
pub(crate) async fn serve<S>(
    mut stream: Stream,
    svc: S,
    p: &Protocols,
    stop: tokio::sync::watch::Receiver<bool>,
    conn: &Arc<Conn>,
    parked: Option<&prometheus::IntGauge>,
) -> Result<(), ConnError>
where
    S: hyper::service::HttpService<Incoming, ResBody = Body> + Clone + Send + Unpin + 'static,
    S::Future: Send + Unpin + 'static,
    S::Error: Into<ConnError>,
{
    let (h2, mut pre) = match &stream {
        Stream::Tls(t) => (t.get_ref().1.alpn_protocol() == Some(b"h2"), Bytes::new()),
        Stream::Plain(_) => {
            let pre = read_preface(&mut stream).await?;
            (pre == H2_PREFACE, pre)
        }
    };
    // The stop signal and the park timer are polled once to register the task's waker;
    // after that each poll of a busy connection only reads two atomics (`has_changed`,
    // `is_elapsed`): polling a watch channel or a timer takes a lock, and a 1 MiB response
    // wakes its task dozens of times.
    let mut stop_wait = Box::pin(stopped(stop.clone()));
    let stop_now = |stop: &tokio::sync::watch::Receiver<bool>| stop.has_changed().unwrap_or(true);
    if h2 {
        // Boxed, as the HTTP/1.1 one below: the task's own future stays small.
        let mut conn =
            Box::pin(p.h2.serve_connection(TokioIo::new(Prefixed { pre, io: stream }), svc));
        let (mut registered, mut stopping) = (false, false);
        return std::future::poll_fn(|cx| {
            if !registered {
                let _ = stop_wait.as_mut().poll(cx);
                registered = true;
            }
            if !stopping && stop_now(&stop) {
                conn.as_mut().graceful_shutdown();
                stopping = true;
            }
            conn.as_mut().poll(cx)
        })
        .await
        .map_err(Into::into);
    }
    loop {
        // Boxed so that a parked connection's task holds no room for hyper's state.
        let mut h1 = Box::new(p.h1.serve_connection(
            TokioIo::new(Prefixed {
                pre: std::mem::take(&mut pre),
                io: stream,
            }),
            svc.clone(),
        ));
        let (mut parking, mut stopping, mut registered) = (false, false, false);
        let mut nap = Box::pin(tokio::time::sleep(PARK_AFTER));
        std::future::poll_fn(|cx| {
            if !registered {
                let _ = stop_wait.as_mut().poll(cx);
                let _ = nap.as_mut().poll(cx);
                registered = true;
            }
            if !parking && !stopping {
                if stop_now(&stop) {
                    Pin::new(&mut *h1).graceful_shutdown();
                    stopping = true;
                } else if nap.is_elapsed() {
                    loop {
                        match park_due(&conn.snapshot(), tokio::time::Instant::now(), PARK_AFTER) {
                            None => {
                                Pin::new(&mut *h1).graceful_shutdown();
                                parking = true;
                                break;
                            }
                            Some(at) => {
                                nap.as_mut().reset(at);
                                if nap.as_mut().poll(cx).is_pending() {
                                    break;
                                }
                            }
                        }
                    }
                }
            }
            Pin::new(&mut *h1).poll_without_shutdown(cx)
        })
        .await?;
        if !parking {
            // The client closed, or the drain ended it after its response.
            return Ok(());
        }
        // In a block of its own, so that hyper's connection (its box, buffers and service)
        // is freed before the park, not at the end of the loop body.
        (stream, pre) = {
            let h1 = h1;
            let parts = (*h1).into_parts();
            let (rest, io) = parts.io.into_inner().into_parts();
            // Copied (usually nothing): an empty view of hyper's read buffer would keep all
            // of its 8 KiB or more alive.
            let pre = if rest.is_empty() && parts.read_buf.is_empty() {
                Bytes::new()
            } else {
                let mut both = BytesMut::with_capacity(rest.len() + parts.read_buf.len());
                both.extend_from_slice(&rest);
                both.extend_from_slice(&parts.read_buf);
                both.freeze()
            };
            (io, pre)
        };
        if pre.is_empty() {
            // Parked: nothing but the socket (and TLS state) until the client speaks.
            let _counted = parked.map(Parked::new);
            tokio::select! {
                r = stream.readable() => r?,
                _ = stop_wait.as_mut() => return Ok(()),
            }
        }
    }
}

/// Reads until the bytes either are the HTTP/2 preface or cannot be (then HTTP/1.1).
async fn read_preface(stream: &mut Stream) -> std::io::Result<Bytes> {
    let mut buf = [0u8; 24];
    let mut n = 0;
    while n < buf.len() {
        let k = stream.read(&mut buf[n..]).await?;
        if k == 0 {
            break;
        }
        n += k;
        if buf[..n] != H2_PREFACE[..n] {
            break;
        }
    }
    Ok(Bytes::copy_from_slice(&buf[..n]))
}

/// Counts a connection as parked while it lives.
struct Parked(prometheus::IntGauge);

impl Parked {
    fn new(g: &prometheus::IntGauge) -> Self {
        g.inc();
        Self(g.clone())
    }
}

impl Drop for Parked {
    fn drop(&mut self) {
        self.0.dec();
    }
}
