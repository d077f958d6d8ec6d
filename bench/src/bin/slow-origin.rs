//! An origin that answers every object after a fixed delay (the "origin answering in 200 ms"
//! of the edge benchmark) and counts requests per path at `/__hits`.
//!
//! Objects: `/herd/{n}.ts` (1 MiB, n in 0..200), `/herd-small/{n}.ts` (1 KB), `/hit.ts`
//! (1 MiB), `/hit.m3u8` (1 KB), `/fill/{n}.ts` (100 KB..2 MB, with `--fill`),
//! all `Cache-Control: public, max-age=600`.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use e2e::fake_origin::{FakeOrigin, Script};

/// Slow origin for proxy benchmarks.
#[derive(Parser)]
struct Cli {
    /// Listen address.
    #[arg(long, default_value = "127.0.0.1:18090")]
    listen: SocketAddr,
    /// Delay before every response head, in milliseconds.
    #[arg(long, default_value_t = 200)]
    delay_ms: u64,
    /// Also serve `/fill/{n}.ts` for n in 0..FILL, without delay: segments of realistic
    /// sizes (100 KB to 2 MB, as 2 s segments of 0.4 to 8 Mbit/s), for filling a cache.
    #[arg(long, default_value_t = 0)]
    fill: usize,
}

/// Size of fill object `n`: spread over 100 KB..2 MB by a fixed hash (no RNG to seed).
fn fill_size(n: usize) -> usize {
    let h = (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
    100_000 + (h as usize % 1_900_000)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let origin = FakeOrigin::start_on(cli.listen).await;
    let mib = Bytes::from(bench::payload(1 << 20));
    let kb: Bytes = Bytes::from(format!(
        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n{}",
        "#EXTINF:2.000,\nsegment.ts\n".repeat(38)
    ));
    let mut seg = Script::ok(mib.clone(), "video/mp2t", "public, max-age=600");
    seg.head_delay = Duration::from_millis(cli.delay_ms);
    let mut pl = Script::ok(kb, "application/vnd.apple.mpegurl", "public, max-age=600");
    pl.head_delay = Duration::from_millis(cli.delay_ms);
    let mut small = Script::ok(mib.slice(..1024), "video/mp2t", "public, max-age=600");
    small.head_delay = Duration::from_millis(cli.delay_ms);
    for n in 0..200 {
        origin.route(&format!("/herd/{n}.ts"), seg.clone());
        origin.route(&format!("/herd-small/{n}.ts"), small.clone());
    }
    let two = Bytes::from(bench::payload(2 << 20));
    for n in 0..cli.fill {
        origin.route(
            &format!("/fill/{n}.ts"),
            Script::ok(
                two.slice(..fill_size(n)),
                "video/mp2t",
                "public, max-age=600",
            ),
        );
    }
    origin.route("/hit.ts", seg);
    origin.route("/hit.m3u8", pl);
    eprintln!("slow-origin on {} (delay {} ms)", origin.addr, cli.delay_ms);
    tokio::signal::ctrl_c().await?;
    Ok(())
}
