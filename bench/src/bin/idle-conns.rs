//! Opens N keep-alive connections to a server, makes one small request on each, then holds
//! them all open and idle for a while (to measure the server's memory per idle connection).

use std::time::Duration;

use clap::Parser;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

/// Idle keep-alive connection holder.
#[derive(Parser)]
struct Cli {
    /// URL requested once per connection.
    url: String,
    /// Connections.
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    /// Seconds to hold them open after all are established.
    #[arg(long, default_value_t = 10)]
    hold_secs: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let uri: http::Uri = cli.url.parse()?;
    let authority = uri
        .authority()
        .ok_or_else(|| anyhow::anyhow!("URL needs a host"))?
        .to_string();
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(256));
    let mut tasks = Vec::new();
    for _ in 0..cli.connections {
        let (authority, uri, sem) = (authority.clone(), uri.clone(), sem.clone());
        tasks.push(tokio::spawn(async move {
            let permit = sem.acquire_owned().await?;
            let stream = tokio::net::TcpStream::connect(&authority).await?;
            let (mut send, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(conn);
            let req = Request::get(uri)
                .header("host", &authority)
                .body(Empty::<bytes::Bytes>::new())?;
            let resp = send.send_request(req).await?;
            resp.into_body().collect().await?;
            drop(permit);
            anyhow::Ok(send)
        }));
    }
    let mut held = Vec::new();
    let mut failed = 0;
    for t in tasks {
        match t.await? {
            Ok(s) => held.push(s),
            Err(_) => failed += 1,
        }
    }
    println!("established={} failed={failed}", held.len());
    // Signal readiness on stdout, then hold.
    tokio::time::sleep(Duration::from_secs(cli.hold_secs)).await;
    drop(held);
    Ok(())
}
