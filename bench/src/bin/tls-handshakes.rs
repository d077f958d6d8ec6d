//! TLS handshakes per second against a server: keeps `--concurrency` connections in their
//! handshake at all times for `--secs`, each one a fresh TCP connection that completes the
//! handshake, sends close_notify and reads until the server closes (which also collects the
//! TLS 1.3 session tickets a resumed run needs, and makes the server finish its side of
//! every handshake counted).
//!
//! Full handshakes never resume; `--resume` offers the session from an earlier connection
//! (TLS 1.3 ticket, TLS 1.2 ticket or ID) and reports how many the server accepted. The first
//! `--warmup-ms` are not counted (a resumed run's first connections have nothing to resume).
//! The client skips certificate and signature checks (bench::tls), so that on one core it
//! outruns the server it measures; one thread (a current-thread runtime) because the load
//! core is one core.
//!
//! Prints one line: `handshakes=N per_sec=R resumed=N failed=N version=V`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use rustls::HandshakeKind;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// TLS handshake loader.
#[derive(Parser)]
struct Cli {
    /// Server address (host:port).
    addr: String,
    /// Server name sent in SNI.
    #[arg(long, default_value = "localhost")]
    server_name: String,
    /// Handshakes in flight at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Seconds counted (after the warm-up).
    #[arg(long, default_value_t = 5.0)]
    secs: f64,
    /// Milliseconds run first and not counted.
    #[arg(long, default_value_t = 500)]
    warmup_ms: u64,
    /// Resume sessions (abbreviated handshakes) instead of full handshakes.
    #[arg(long)]
    resume: bool,
    /// TLS 1.2 instead of TLS 1.3.
    #[arg(long)]
    tls12: bool,
}

#[derive(Default)]
struct Counts {
    done: AtomicU64,
    resumed: AtomicU64,
    failed: AtomicU64,
}

/// One connection: handshake, close_notify, read to the server's close. Returns whether the
/// session was resumed.
async fn one(
    addr: &str,
    name: ServerName<'static>,
    connector: &tokio_rustls::TlsConnector,
) -> anyhow::Result<(bool, &'static str)> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let mut tls = connector.connect(name, tcp).await?;
    let conn = tls.get_ref().1;
    let resumed = conn.handshake_kind() == Some(HandshakeKind::Resumed);
    let version = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "1.3",
        Some(rustls::ProtocolVersion::TLSv1_2) => "1.2",
        _ => "other",
    };
    tls.shutdown().await?;
    let mut buf = [0u8; 4096];
    let drain = async {
        while tls.read(&mut buf).await? > 0 {}
        anyhow::Ok(())
    };
    // A server that answers close_notify without closing the socket still counts: the
    // handshake is done; only the wait is bounded.
    let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
    Ok((resumed, version))
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let cfg = bench::tls::client(cli.tls12, cli.resume, &[b"h2", b"http/1.1"])?;
    let connector = tokio_rustls::TlsConnector::from(cfg);
    let name = ServerName::try_from(cli.server_name.clone())?;
    let counts = Arc::new(Counts::default());
    let start = Instant::now();
    let warmup = Duration::from_millis(cli.warmup_ms);
    let end = warmup + Duration::from_secs_f64(cli.secs);
    let version = Arc::new(std::sync::Mutex::new("none"));
    let mut tasks = Vec::new();
    for _ in 0..cli.concurrency {
        let (addr, name, connector) = (cli.addr.clone(), name.clone(), connector.clone());
        let (counts, version) = (counts.clone(), version.clone());
        tasks.push(tokio::spawn(async move {
            while start.elapsed() < end {
                let r = one(&addr, name.clone(), &connector).await;
                let counted = start.elapsed() >= warmup;
                match r {
                    Ok((resumed, v)) if counted => {
                        counts.done.fetch_add(1, Ordering::Relaxed);
                        if resumed {
                            counts.resumed.fetch_add(1, Ordering::Relaxed);
                        }
                        *version.lock().unwrap_or_else(|p| p.into_inner()) = v;
                    }
                    Ok(_) => {}
                    Err(_) => {
                        counts.failed.fetch_add(1, Ordering::Relaxed);
                        // A refused connect fails at once: do not spin on it.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    // Counted from the end of the warm-up to the last completion.
    let secs = (start.elapsed() - warmup).as_secs_f64();
    let done = counts.done.load(Ordering::Relaxed);
    println!(
        "handshakes={done} per_sec={:.0} resumed={} failed={} version={}",
        done as f64 / secs,
        counts.resumed.load(Ordering::Relaxed),
        counts.failed.load(Ordering::Relaxed),
        version.lock().unwrap_or_else(|p| p.into_inner()),
    );
    Ok(())
}
