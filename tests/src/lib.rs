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

/// Starts an edge with the TOML config `toml` (its `upstream.urls` replaced by `upstreams`).
pub async fn start_edge(toml: &str, upstreams: &[String]) -> Running {
    if std::env::var_os("RUST_LOG").is_some() {
        service::telemetry::init_tracing();
    }
    let mut cfg = edge::config::Config::parse("test-edge.toml", toml).expect("edge config");
    if !upstreams.is_empty() {
        cfg.upstream.urls = upstreams.to_vec();
    }
    Running::spawn("edge", |l, stop| edge::run(l, cfg, stop))
        .await
        .expect("bind")
}

pub mod fake_origin;
