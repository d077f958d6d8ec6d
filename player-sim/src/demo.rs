//! The demo stack in-process: our origin on its loop source and an edge in front of it, both
//! on loopback ports chosen by the OS, so `player-sim demo` needs nothing else running.

use std::net::SocketAddr;
use std::time::Duration;

use http::Method;
use service::InProcess;
use service::client::{HttpClient, fetch};

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
    /// The edge's admin address (`/metrics`).
    pub edge_admin: SocketAddr,
    _programs: [InProcess; 2],
}

impl Stack {
    /// The demo stream's master playlist through the edge.
    pub fn master_url(&self) -> String {
        format!("http://{}/live/demo/master.m3u8", self.edge)
    }

    /// Starts the origin (loop source `demo`) and an edge in front of it, and waits until the
    /// origin's window is full (`/readyz`), at most `ready_within`.
    pub async fn start(ready_within: Duration) -> Result<Self, StackError> {
        let ocfg = origin::config::Config::demo();
        let origin_p =
            InProcess::spawn("demo origin", |l, stop| origin::run(l, ocfg, stop)).await?;
        let origin = origin_p.addr;
        let ecfg = edge::config::Config::parse(
            "player-sim demo (edge)",
            // Every simulated viewer comes from 127.0.0.1: no per-address caps.
            &format!(
                "[server]\nmax_connections_per_client = 0\nmax_requests_per_client = 0\n[upstream]\nurls = [\"http://{origin}\"]\n"
            ),
        )?;
        let (edge_p, edge_admin) = edge::spawn_local(ecfg).await?;
        let stack = Stack {
            origin,
            edge: edge_p.addr,
            edge_admin,
            _programs: [origin_p, edge_p],
        };
        let client = service::client::new_client(Duration::from_secs(10));
        service::client::wait_ok(&client, &format!("http://{origin}/readyz"), ready_within)
            .await
            .map_err(|last| StackError::NotReady(ready_within, last))?;
        Ok(stack)
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
    // An edge's page (its build info is always there); its labelled counters have no
    // samples until something is counted, which reads as 0 (an idle edge before a run).
    if r.status != 200 || !text.contains("edge_build_info") {
        return None;
    }
    Some(Offload {
        requests: service::metrics::sum_samples(text, "edge_requests_total").unwrap_or(0.0) as u64,
        upstream_fetches: service::metrics::sum_samples(text, "edge_upstream_fetches_total")
            .unwrap_or(0.0) as u64,
    })
}
