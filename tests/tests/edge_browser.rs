//! Real players through the edge over https, trusting a test CA: hls.js in Debian's headless
//! Chromium (HTTP/2 over TLS 1.3, as a browser does) and ffmpeg.

// Tests: a failed setup should fail the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use e2e::{repo_root, start_origin, tool, wait_ok};
use service::client::new_client;
use tokio::process::Command;

/// A test CA and a certificate it signed for 127.0.0.1 and localhost, in `dir`:
/// (CA file, chain file, key file).
fn test_pki(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "edge test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".into()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    let (ca_file, chain, key) = (
        dir.join("ca.pem"),
        dir.join("chain.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&ca_file, ca.pem()).unwrap();
    std::fs::write(&chain, format!("{}{}", leaf.pem(), ca.pem())).unwrap();
    std::fs::write(&key, leaf_key.serialize_pem()).unwrap();
    (ca_file, chain, key)
}

/// The origin's loop stream behind an edge with one TLS listener: (origin, stop, edge
/// address, CA file).
async fn stack(
    name: &str,
) -> (
    e2e::Running,
    tokio::sync::oneshot::Sender<()>,
    std::net::SocketAddr,
    PathBuf,
) {
    let dir = std::env::temp_dir().join(format!("edge-browser-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (ca, chain, key) = test_pki(&dir);
    let origin = start_origin("[[streams]]\nname = \"demo\"\nsource = \"loop\"\n").await;
    let c = new_client(Duration::from_secs(5));
    wait_ok(&c, &origin.url("/readyz"), Duration::from_secs(10)).await;
    let toml = format!(
        "[upstream]\nurls = [\"{}\"]\n[[listeners]]\naddr = \"127.0.0.1:0\"\ntls = true\n[tls]\ncertificates = [{{ cert = {chain:?}, key = {key:?} }}]\n",
        origin.url("")
    );
    let cfg = edge::config::Config::parse("browser.toml", &toml).unwrap();
    let tls = edge::tls_setup(&cfg).unwrap().unwrap();
    let secure = service::bind(([127, 0, 0, 1], 0).into(), 128).unwrap();
    let addr = secure.local_addr().unwrap();
    let stop = e2e::run_edge_on(
        edge::Sockets {
            viewers: vec![service::Listener {
                tcp: secure,
                tls: Some(tls.acceptor),
            }],
            admin: None,
        },
        cfg,
        Some(tls.certs),
        None,
    );
    (origin, stop, addr, ca)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hls_js_in_chromium_plays_through_the_edge_over_https() {
    let browser_dir = repo_root().join("tests/browser");
    assert!(
        browser_dir.join("node_modules/hls.js").is_dir(),
        "hls.js is not installed: run .ci/run or `npm ci --prefix tests/browser`"
    );
    let chromium = tool("chromium");
    let (_origin, _stop, addr, ca) = stack("hlsjs").await;
    let out = Command::new(tool("node"))
        .arg(browser_dir.join("play.mjs"))
        .args(["--page", &format!("https://{addr}/")])
        .args(["--url", &format!("https://{addr}/live/demo/master.m3u8")])
        .args(["--seconds", "12", "--ca"])
        .arg(&ca)
        .env("CHROMIUM", chromium)
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "play.mjs failed: {stderr}\n{stdout}");
    let r: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!("no report ({e}): {stdout}\n{stderr}");
    });
    eprintln!("hls.js report: {r}");
    let fatal: Vec<_> = r["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["fatal"] == true)
        .collect();
    assert!(fatal.is_empty(), "fatal hls.js errors: {r}");
    assert!(
        r["current_time"].as_f64().unwrap() >= 6.0,
        "did not play: {r}"
    );
    assert!(r["fragments"].as_u64().unwrap() >= 3, "{r}");
    assert!(r["decoded_frames"].as_u64().unwrap() > 100, "{r}");
    assert_eq!(
        r["protocols"],
        serde_json::json!(["h2"]),
        "HTTP/2 only: {r}"
    );
    assert_eq!(r["tls"], serde_json::json!(["TLS 1.3"]), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_plays_through_the_edge_over_https() {
    let (_origin, _stop, addr, ca) = stack("ffmpeg").await;
    let out = Command::new(tool("ffmpeg"))
        .args(["-hide_banner", "-nostdin", "-v", "error"])
        .args(["-tls_verify", "1", "-ca_file"])
        .arg(&ca)
        .args(["-i", &format!("https://{addr}/live/demo/master.m3u8")])
        .args(["-map", "0:v:0", "-t", "6", "-f", "framecrc", "-"])
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ffmpeg failed: {stderr}");
    let frames = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .count();
    assert!(frames >= 100, "{frames} frames decoded; {stderr}");
}
