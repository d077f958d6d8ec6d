//! A synchronized herd: opens N connections first, then sends one GET on each at the same
//! instant, and reports time to first byte and to the last byte, measured from the moment the
//! request is written on an established connection.
//!
//! A deliberately light and fair client (raw sockets, one reused buffer per connection, no
//! HTTP library, a yield after every read): on a shared box, a heavy or greedy client's own
//! CPU would show up as proxy latency.

use std::time::Instant;

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Barrier;

/// Synchronized herd client.
#[derive(Parser)]
struct Cli {
    /// URL to request (http://host:port/path).
    url: String,
    /// Clients.
    #[arg(long, default_value_t = 500)]
    clients: usize,
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Parses the status and Content-Length out of a response head.
fn head_info(head: &[u8]) -> Option<(u16, usize)> {
    let text = std::str::from_utf8(head).ok()?;
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let len = text
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    Some((status, len))
}

async fn one(
    authority: String,
    path: String,
    barrier: std::sync::Arc<Barrier>,
) -> anyhow::Result<(u16, f64, f64, usize)> {
    let mut s = tokio::net::TcpStream::connect(&authority).await?;
    s.set_nodelay(true)?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: herd\r\n\r\n");
    let mut buf = vec![0u8; 64 * 1024];
    barrier.wait().await;
    let t0 = Instant::now();
    s.write_all(req.as_bytes()).await?;
    let mut got = 0usize;
    let mut ttfb = None;
    let mut head_end = None;
    let mut want = usize::MAX;
    let mut status = 0;
    let mut head = Vec::new();
    while got < want {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            anyhow::bail!("connection closed after {got} bytes");
        }
        ttfb.get_or_insert_with(|| t0.elapsed());
        if head_end.is_none() {
            head.extend_from_slice(&buf[..n]);
            if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                head_end = Some(i + 4);
                let (st, len) =
                    head_info(&head[..i]).ok_or_else(|| anyhow::anyhow!("bad response head"))?;
                status = st;
                want = i + 4 + len;
            }
        }
        got += n;
        // Round-robin with the other clients: one process stands in for many independent
        // viewers, so no client may hog the reads while others' heads sit unread.
        tokio::task::yield_now().await;
    }
    let ttfb = ttfb.unwrap_or_default().as_secs_f64() * 1000.0;
    Ok((
        status,
        ttfb,
        t0.elapsed().as_secs_f64() * 1000.0,
        got - head_end.unwrap_or(0),
    ))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let uri: http::Uri = cli.url.parse()?;
    let authority = uri
        .authority()
        .ok_or_else(|| anyhow::anyhow!("URL needs a host"))?
        .to_string();
    let path = uri
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_else(|| "/".into());
    let barrier = std::sync::Arc::new(Barrier::new(cli.clients));
    let tasks: Vec<_> = (0..cli.clients)
        .map(|_| tokio::spawn(one(authority.clone(), path.clone(), barrier.clone())))
        .collect();
    let mut ttfb = Vec::new();
    let mut total = Vec::new();
    let mut bad = 0usize;
    let mut sizes = std::collections::BTreeSet::new();
    for t in tasks {
        match t.await? {
            Ok((200, a, b, n)) => {
                ttfb.push(a);
                total.push(b);
                sizes.insert(n);
            }
            Ok(_) | Err(_) => bad += 1,
        }
    }
    ttfb.sort_by(f64::total_cmp);
    total.sort_by(f64::total_cmp);
    // One line, machine-readable: key=value pairs.
    println!(
        "ok={} failed={} ttfb_min_ms={:.1} ttfb_p10_ms={:.1} ttfb_p50_ms={:.1} ttfb_p99_ms={:.1} ttfb_max_ms={:.1} last_byte_p50_ms={:.1} last_byte_p99_ms={:.1} body_sizes={:?}",
        ttfb.len(),
        bad,
        ttfb.first().copied().unwrap_or(f64::NAN),
        pct(&ttfb, 0.1),
        pct(&ttfb, 0.5),
        pct(&ttfb, 0.99),
        ttfb.last().copied().unwrap_or(f64::NAN),
        pct(&total, 0.5),
        pct(&total, 0.99),
        sizes
    );
    Ok(())
}
