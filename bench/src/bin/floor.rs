//! The machine's floor for the edge benchmark: what a server with no parsing, routing, cache
//! or event loop gets out of the kernel, measured on the same cores in the same run as the
//! proxies, so a target that sits below it shows up as the machine's limit, not a proxy's.
//!
//! - `floor herd`: the first request of a herd starts a timer of `--delay-ms`; when it fires,
//!   one thread writes a prebuilt response head to every connection that asked, in arrival
//!   order, then every body (the heads-first fan-out a coalescing proxy does, at zero cost
//!   per waiter above the `write` itself).
//! - `floor hit`: a thread per connection answers every request with one `writev` of a
//!   prebuilt head and body (1 KB for `.m3u8` paths, 1 MiB otherwise), like a cache hit.
//!
//! Plain blocking sockets and threads; reads are only scanned for the end of the request head.

use std::io::{IoSlice, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

/// Zero-overhead servers that measure the machine's floor.
#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Answer each herd after a delay: all heads first, then all bodies.
    Herd {
        /// Listen address.
        #[arg(long, default_value = "127.0.0.1:18094")]
        listen: SocketAddr,
        /// Delay from a herd's first request to its heads, in milliseconds.
        #[arg(long, default_value_t = 200)]
        delay_ms: u64,
        /// Body size in bytes.
        #[arg(long, default_value_t = 1 << 20)]
        body_bytes: usize,
    },
    /// Answer every request at once, as a cache hit.
    Hit {
        /// Listen address.
        #[arg(long, default_value = "127.0.0.1:18095")]
        listen: SocketAddr,
    },
}

/// A response head as the edge would send it (same header set, so the same bytes on the wire).
fn head(len: usize, content_type: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncache-control: public, max-age=600\r\n\
         etag: \"floor\"\r\nage: 0\r\ncontent-length: {len}\r\nx-cache: coalesced\r\n\
         cache-status: edge; fwd=miss; fwd-status=200; collapsed\r\nvia: 1.1 edge\r\n\
         date: Mon, 23 Nov 2026 00:00:00 GMT\r\n\r\n"
    )
    .into_bytes()
}

/// Reads one request head; returns its path, or `None` when the client is gone. Bytes past the
/// head are dropped (no client of this tool pipelines or sends bodies).
fn read_request(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).ok().filter(|&n| n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
        if buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let line = buf.split(|&b| b == b'\r').next().unwrap_or_default();
            let path = String::from_utf8_lossy(line)
                .split(' ')
                .nth(1)
                .unwrap_or("/")
                .to_string();
            return Some(path);
        }
        if buf.len() > 64 * 1024 {
            return None;
        }
    }
}

/// Writes all of `parts`, `false` when the client is gone.
fn write_all(s: &mut TcpStream, parts: &[&[u8]]) -> bool {
    let mut slices: Vec<IoSlice> = parts.iter().map(|p| IoSlice::new(p)).collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        match s.write_vectored(rest) {
            Ok(0) | Err(_) => return false,
            Ok(n) => IoSlice::advance_slices(&mut rest, n),
        }
    }
    true
}

/// Set once a connection's response is written, so its reader may read the next request.
type Answered = Arc<(Mutex<bool>, Condvar)>;

/// Connections waiting for the herd now forming, and when its first request came.
#[derive(Default)]
struct Forming {
    first: Option<Instant>,
    waiting: Vec<(TcpStream, Answered)>,
}

fn herd(listener: TcpListener, delay: Duration, body_bytes: usize) {
    let forming = Arc::new((Mutex::new(Forming::default()), Condvar::new()));
    let f = forming.clone();
    std::thread::spawn(move || {
        fan_out(
            &f,
            delay,
            &head(body_bytes, "video/mp2t"),
            &bench::payload(body_bytes),
        )
    });
    thread_per_connection(listener, move |mut conn| {
        let mut buf = Vec::new();
        while read_request(&mut conn, &mut buf).is_some() {
            let Ok(writer) = conn.try_clone() else { return };
            let done: Answered = Arc::new((Mutex::new(false), Condvar::new()));
            {
                let mut g = forming.0.lock().unwrap_or_else(|p| p.into_inner());
                g.first.get_or_insert_with(Instant::now);
                g.waiting.push((writer, done.clone()));
            }
            forming.1.notify_all();
            // Wait until the fan-out has answered, then read the next request.
            let mut answered = done.0.lock().unwrap_or_else(|p| p.into_inner());
            while !*answered {
                answered = done.1.wait(answered).unwrap_or_else(|p| p.into_inner());
            }
        }
    });
}

/// The one thread that answers herds: sleeps until a herd is due, then heads, then bodies.
fn fan_out(forming: &(Mutex<Forming>, Condvar), delay: Duration, head: &[u8], body: &[u8]) {
    loop {
        let herd = {
            let mut g = forming.0.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                match g.first {
                    None => g = forming.1.wait(g).unwrap_or_else(|p| p.into_inner()),
                    Some(t) if t.elapsed() < delay => {
                        let left = delay - t.elapsed();
                        g = forming
                            .1
                            .wait_timeout(g, left)
                            .unwrap_or_else(|p| p.into_inner())
                            .0;
                    }
                    Some(_) => break,
                }
            }
            g.first = None;
            std::mem::take(&mut g.waiting)
        };
        let mut herd: Vec<_> = herd
            .into_iter()
            .map(|(mut s, done)| {
                let ok = write_all(&mut s, &[head]);
                (s, done, ok)
            })
            .collect();
        for (s, done, ok) in &mut herd {
            if *ok {
                *ok = write_all(s, &[body]);
            }
            *done.0.lock().unwrap_or_else(|p| p.into_inner()) = true;
            done.1.notify_one();
        }
    }
}

/// Runs `serve` on every accepted connection, each in its own small-stack thread.
fn thread_per_connection(
    listener: TcpListener,
    serve: impl Fn(TcpStream) + Clone + Send + 'static,
) {
    for conn in listener.incoming().flatten() {
        let serve = serve.clone();
        let _ = conn.set_nodelay(true);
        let _ = std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || serve(conn));
    }
}

fn hit(listener: TcpListener) {
    let big = Arc::new((head(1 << 20, "video/mp2t"), bench::payload(1 << 20)));
    let small = Arc::new((
        head(1024, "application/vnd.apple.mpegurl"),
        bench::payload(1024),
    ));
    thread_per_connection(listener, move |mut conn| {
        let mut buf = Vec::new();
        while let Some(path) = read_request(&mut conn, &mut buf) {
            let (h, b) = if path.ends_with(".m3u8") {
                &*small
            } else {
                &*big
            };
            if !write_all(&mut conn, &[h, b]) {
                return;
            }
        }
    });
}

/// A blocking listener with the servers' listen backlog (std's `bind` queues only 128
/// connects, which a 2,000-client herd overflows into SYN retransmits).
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    let listener = rt.block_on(async {
        service::bind(addr, service::server::DEFAULT_LISTEN_BACKLOG)?.into_std()
    })?;
    listener.set_nonblocking(false)?;
    Ok(listener)
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().mode {
        Mode::Herd {
            listen,
            delay_ms,
            body_bytes,
        } => herd(
            self::listen(listen)?,
            Duration::from_millis(delay_ms),
            body_bytes,
        ),
        Mode::Hit { listen } => hit(self::listen(listen)?),
    }
    Ok(())
}
