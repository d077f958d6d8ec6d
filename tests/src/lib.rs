//! Support for the end-to-end tests: start the real programs in-process on port 0, find
//! external tools, and small polling helpers.

// Test support: a failed setup should fail the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::Duration;

use service::client::HttpClient;

/// A program running in-process; dropping it shuts the program down.
pub type Running = service::InProcess;

/// Starts an origin with the TOML config `toml` on 127.0.0.1:0.
pub async fn start_origin(toml: &str) -> Running {
    if std::env::var_os("RUST_LOG").is_some() {
        service::telemetry::init_tracing();
    }
    let cfg = origin::config::Config::parse("test-origin.toml", toml).expect("origin config");
    Running::spawn("origin", |l, stop| origin::run(l, cfg, stop))
        .await
        .expect("bind")
}

/// Polls `url` until it answers 200, for at most `limit`.
pub async fn wait_ok(client: &HttpClient, url: &str, limit: Duration) {
    if let Err(last) = service::client::wait_ok(client, url, limit).await {
        panic!("{url} not 200 within {limit:?}: {last}");
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

/// An edge running in-process: the viewers' port (`url`, `addr` through `Deref`) and the
/// admin port.
pub struct TestEdge {
    running: Running,
    /// The admin listener's address.
    pub admin: std::net::SocketAddr,
}

impl TestEdge {
    /// `http://{admin}{path}`: metrics, health, purge, reload, drain.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }
}

impl std::ops::Deref for TestEdge {
    type Target = Running;
    fn deref(&self) -> &Running {
        &self.running
    }
}

/// Starts an edge with the TOML config `toml` (its `upstream.urls` replaced by `upstreams`).
pub async fn start_edge(toml: &str, upstreams: &[String]) -> TestEdge {
    if std::env::var_os("RUST_LOG").is_some() {
        service::telemetry::init_tracing();
    }
    let mut cfg = edge::config::Config::parse("test-edge.toml", toml).expect("edge config");
    if !upstreams.is_empty() {
        cfg.upstream.urls = upstreams.to_vec();
    }
    let (running, admin) = edge::spawn_local(cfg).await.expect("bind");
    TestEdge { running, admin }
}

/// Runs an edge on sockets the test bound itself (TLS ports, an admin port, a fixed port),
/// until the returned sender is dropped.
pub fn run_edge_on(
    sockets: edge::Sockets,
    cfg: edge::config::Config,
    certs: Option<std::sync::Arc<service::tls::Certs>>,
    reload: Option<edge::ReloadSource>,
) -> tokio::sync::oneshot::Sender<()> {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(edge::run_on(sockets, cfg, certs, reload, async move {
        let _ = stopped.await;
    }));
    stop
}

/// The value of the Prometheus sample whose line starts with `prefix` (0 when absent).
pub fn sample(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// `n` bytes of a pattern that differs by `seed`: a test object whose every byte can be
/// checked.
pub fn body_of(n: usize, seed: u8) -> bytes::Bytes {
    bytes::Bytes::from(
        (0..n)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect::<Vec<u8>>(),
    )
}

/// GET `url` and read the whole response (10 s limit; a failure panics).
pub async fn get(c: &HttpClient, url: &str) -> service::client::Fetched {
    get_with(c, url, &[]).await
}

/// GET `url` with `headers` and read the whole response (10 s limit; a failure panics).
pub async fn get_with(
    c: &HttpClient,
    url: &str,
    headers: &[(&str, &str)],
) -> service::client::Fetched {
    service::client::fetch(c, http::Method::GET, url, headers, Duration::from_secs(10))
        .await
        .unwrap()
}

pub mod fake_origin;
