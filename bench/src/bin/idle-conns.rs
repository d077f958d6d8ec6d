//! Opens N keep-alive connections to a server, makes one small request on each, then holds
//! them all open and idle for a while (to measure the server's memory per idle connection).
//!
//! With `--tls` (or an `https://` URL) each connection first completes a TLS 1.3 handshake
//! (ALPN `http/1.1`, SNI from the URL's host, any certificate accepted: bench::tls), so the
//! server holds a TLS session per connection as well.

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;

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
    /// TLS on every connection (implied by an `https://` URL).
    #[arg(long)]
    tls: bool,
}

/// One connection: TCP, TLS when `tls` is given, one request, its body read; the connection
/// stays open as long as the returned sender lives.
async fn open(
    authority: &str,
    uri: http::Uri,
    tls: Option<&(tokio_rustls::TlsConnector, ServerName<'static>)>,
) -> anyhow::Result<SendRequest<Empty<bytes::Bytes>>> {
    let stream = tokio::net::TcpStream::connect(authority).await?;
    let mut send = match tls {
        Some((connector, name)) => {
            let stream = connector.connect(name.clone(), stream).await?;
            handshake(TokioIo::new(stream)).await?
        }
        None => handshake(TokioIo::new(stream)).await?,
    };
    let req = Request::get(uri)
        .header("host", authority)
        .body(Empty::<bytes::Bytes>::new())?;
    let resp = send.send_request(req).await?;
    resp.into_body().collect().await?;
    Ok(send)
}

/// The HTTP/1.1 client handshake over `io`, its connection driven by a task of its own.
async fn handshake<T>(io: TokioIo<T>) -> anyhow::Result<SendRequest<Empty<bytes::Bytes>>>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (send, conn) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(conn);
    Ok(send)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let uri: http::Uri = cli.url.parse()?;
    let authority = uri
        .authority()
        .ok_or_else(|| anyhow::anyhow!("URL needs a host"))?
        .to_string();
    let tls = if cli.tls || uri.scheme_str() == Some("https") {
        let host = uri.host().unwrap_or_default().to_string();
        let cfg = bench::tls::client(false, false, &[b"http/1.1"])?;
        Some(Arc::new((
            tokio_rustls::TlsConnector::from(cfg),
            ServerName::try_from(host)?,
        )))
    } else {
        None
    };
    let sem = Arc::new(tokio::sync::Semaphore::new(256));
    let mut tasks = Vec::new();
    for _ in 0..cli.connections {
        let (authority, uri, sem, tls) = (authority.clone(), uri.clone(), sem.clone(), tls.clone());
        tasks.push(tokio::spawn(async move {
            let permit = sem.acquire_owned().await?;
            let send = open(&authority, uri, tls.as_deref()).await?;
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
