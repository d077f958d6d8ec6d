//! The demo stack in-process: our origin on its loop source and an edge in front of it, both
//! on loopback ports chosen by the OS, so `player-sim demo` needs nothing else running.

use std::net::SocketAddr;
use std::time::Duration;

use http::{Method, StatusCode};
use service::client::{HttpClient, fetch};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::qoe::Offload;

/// Why the stack did not come up.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    /// A listener could not be bound.
    #[error("cannot bind a loopback port: {0}")]
    Bind(#[from] std::io::Error),
    /// A built-in config did not parse (a bug).
    #[error("built-in config: {0}")]
    Config(#[from] service::ConfigError),
    /// The origin never became ready.
    #[error("the origin did not become ready within {0:?}: {1}")]
    NotReady(Duration, String),
}

/// An origin and an edge running on this runtime; dropping it stops both.
#[derive(Debug)]
pub struct Stack {
    /// The origin's address.
    pub origin: SocketAddr,
    /// The edge's address.
    pub edge: SocketAddr,
    _stop: Vec<oneshot::Sender<()>>,
}

impl Stack {
    /// The demo stream's master playlist through the edge.
    pub fn master_url(&self) -> String {
        format!("http://{}/live/demo/master.m3u8", self.edge)
    }

    /// Starts the origin (loop source `demo`) and an edge in front of it, and waits until the
    /// origin's window is full (`/readyz`), at most `ready_within`.
    pub async fn start(ready_within: Duration) -> Result<Self, StackError> {
        let origin_l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let edge_l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let origin = origin_l.local_addr()?;
        let edge = edge_l.local_addr()?;
        let mut ocfg = origin::config::Config::demo();
        ocfg.listen = origin;
        let ecfg = edge::config::Config::parse(
            "player-sim demo (edge)",
            &format!("listen = \"{edge}\"\n[upstream]\nurls = [\"http://{origin}\"]\n"),
        )?;
        let (otx, orx) = oneshot::channel::<()>();
        let (etx, erx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            if let Err(e) = origin::run(origin_l, ocfg, async move {
                let _ = orx.await;
            })
            .await
            {
                tracing::error!(error = %e, "demo origin failed");
            }
        });
        tokio::spawn(async move {
            if let Err(e) = edge::run(edge_l, ecfg, async move {
                let _ = erx.await;
            })
            .await
            {
                tracing::error!(error = %e, "demo edge failed");
            }
        });
        let stack = Stack {
            origin,
            edge,
            _stop: vec![otx, etx],
        };
        let client = service::client::new_client(Duration::from_secs(10));
        let deadline = Instant::now() + ready_within;
        let readyz = format!("http://{origin}/readyz");
        loop {
            let last = match fetch(&client, Method::GET, &readyz, &[], Duration::from_secs(2)).await
            {
                Ok(r) if r.status == StatusCode::OK => return Ok(stack),
                Ok(r) => String::from_utf8_lossy(&r.body).trim().to_string(),
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                return Err(StackError::NotReady(ready_within, last));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Reads the offload counters from an edge's `/metrics`.
pub async fn offload(client: &HttpClient, metrics_url: &str) -> Option<Offload> {
    let r = fetch(
        client,
        Method::GET,
        metrics_url,
        &[],
        Duration::from_secs(5),
    )
    .await
    .ok()?;
    let text = std::str::from_utf8(&r.body).ok()?;
    Some(Offload {
        requests: service::metrics::sum_samples(text, "edge_requests_total")? as u64,
        upstream_fetches: service::metrics::sum_samples(text, "edge_upstream_fetches_total")
            .unwrap_or(0.0) as u64,
    })
}
