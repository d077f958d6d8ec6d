//! Support for the end-to-end tests: start the real programs in-process on port 0, find
//! external tools, and small polling helpers.

// Test support: a failed setup should fail the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use service::client::{HttpClient, fetch};
use tokio::sync::oneshot;

/// A program running in-process; dropping it shuts the program down.
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

impl Running {
    /// `http://{addr}{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// Starts an origin with the TOML config `toml` on 127.0.0.1:0.
pub async fn start_origin(toml: &str) -> Running {
    if std::env::var_os("RUST_LOG").is_some() {
        service::telemetry::init_tracing();
    }
    let cfg = origin::config::Config::parse("test-origin.toml", toml).expect("origin config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        if let Err(e) = origin::run(listener, cfg, async move {
            let _ = rx.await;
        })
        .await
        {
            panic!("origin failed: {e}");
        }
    });
    Running { addr, _stop: tx }
}

/// Polls `url` until it answers 200, for at most `limit`.
pub async fn wait_ok(client: &HttpClient, url: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(r) = fetch(client, Method::GET, url, &[], Duration::from_secs(2)).await
            && r.status == StatusCode::OK
        {
            return;
        }
        assert!(Instant::now() < deadline, "{url} not 200 within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The shared folder beside the repository (`../shared`): data and the conformance checker.
pub fn shared_dir() -> PathBuf {
    repo_root().join("../shared")
}

/// Path of an external tool, or a panic that says how to install it (`.ci/run` does).
pub fn tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{name} is not installed; run .ci/run or `apt-get install -y ffmpeg`")
        })
}

/// A free UDP port on loopback.
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("udp port")
}

/// Starts an edge with the TOML config `toml` (its `upstream.urls` replaced by `upstreams`).
pub async fn start_edge(toml: &str, upstreams: &[String]) -> Running {
    if std::env::var_os("RUST_LOG").is_some() {
        service::telemetry::init_tracing();
    }
    let mut cfg = edge::config::Config::parse("test-edge.toml", toml).expect("edge config");
    if !upstreams.is_empty() {
        cfg.upstream.urls = upstreams.to_vec();
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        if let Err(e) = edge::run(listener, cfg, async move {
            let _ = rx.await;
        })
        .await
        {
            panic!("edge failed: {e}");
        }
    });
    Running { addr, _stop: tx }
}

pub mod fake_origin;
