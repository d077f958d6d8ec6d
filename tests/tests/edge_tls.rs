//! The edge on a TLS port, driven by curl as a viewer's client would: HTTP/2 and HTTP/1.1
//! negotiated by ALPN on one port, the certificate chosen by SNI, and the plain listener
//! still there beside it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use e2e::fake_origin::{FakeOrigin, Script};
use e2e::{body_of, get, tool};
use service::client::new_client;
use service::tls::CertSpec;

/// A self-signed certificate for `name` in `dir`, as the edge's config names it.
fn cert(dir: &Path, name: &str) -> CertSpec {
    let c = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
    let (cp, kp) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&cp, c.cert.pem()).unwrap();
    std::fs::write(&kp, c.signing_key.serialize_pem()).unwrap();
    CertSpec {
        cert: cp,
        key: kp,
        names: vec![name.to_string()],
    }
}

fn scratch() -> PathBuf {
    let d = std::env::temp_dir().join(format!("edge-tls-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// curl over TLS to `name` (resolved to `addr`) trusting `ca`: (http_version, status, body).
fn curl(
    addr: std::net::SocketAddr,
    name: &str,
    ca: &Path,
    version: &str,
    path: &str,
) -> (String, String, Vec<u8>) {
    let dir = scratch();
    let out = dir.join(format!("body-{name}-{}", version.trim_start_matches('-')));
    let o = Command::new(tool("curl"))
        .args(["-s", "--max-time", "10", version, "--cacert"])
        .arg(ca)
        .arg("--resolve")
        .arg(format!("{name}:{}:127.0.0.1", addr.port()))
        .args(["-o"])
        .arg(&out)
        .args(["-w", "%{http_version} %{http_code}"])
        .arg(format!("https://{name}:{}{path}", addr.port()))
        .output()
        .unwrap();
    let w = String::from_utf8_lossy(&o.stdout).to_string();
    let (v, s) = w.split_once(' ').unwrap_or(("", ""));
    (
        v.to_string(),
        s.to_string(),
        std::fs::read(&out).unwrap_or_default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_gets_h2_and_http1_over_tls_with_sni() {
    let origin = FakeOrigin::start().await;
    origin.route(
        "/live/x/1.ts",
        Script::ok(body_of(200_000, 4), "video/mp2t", "max-age=60"),
    );
    let dir = scratch();
    let (a, b) = (cert(&dir, "a.test"), cert(&dir, "b.test"));
    let toml = format!(
        "[upstream]\nurls = [\"{}\"]\n[[listeners]]\naddr = \"127.0.0.1:0\"\ntls = true\n[tls]\ncertificates = [{{ cert = {:?}, key = {:?}, names = [\"a.test\"] }}, {{ cert = {:?}, key = {:?}, names = [\"b.test\"] }}]\n",
        origin.url(),
        a.cert,
        a.key,
        b.cert,
        b.key
    );
    let cfg = edge::config::Config::parse("tls.toml", &toml).unwrap();
    let tls = edge::tls_acceptor(&cfg).unwrap();
    let plain = service::bind(([127, 0, 0, 1], 0).into(), 128).unwrap();
    let secure = service::bind(([127, 0, 0, 1], 0).into(), 128).unwrap();
    let (plain_addr, tls_addr) = (plain.local_addr().unwrap(), secure.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(edge::run_on(
        vec![
            service::Listener {
                tcp: plain,
                tls: None,
            },
            service::Listener { tcp: secure, tls },
        ],
        cfg,
        async move {
            let _ = stopped.await;
        },
    ));
    let want = body_of(200_000, 4);
    let (v, s, body) = tokio::task::spawn_blocking({
        let ca = a.cert.clone();
        move || curl(tls_addr, "a.test", &ca, "--http2", "/live/x/1.ts")
    })
    .await
    .unwrap();
    assert_eq!((v.as_str(), s.as_str()), ("2", "200"));
    assert_eq!(body, want);
    let (v, s, body) = tokio::task::spawn_blocking({
        let ca = a.cert.clone();
        move || curl(tls_addr, "a.test", &ca, "--http1.1", "/live/x/1.ts")
    })
    .await
    .unwrap();
    assert_eq!((v.as_str(), s.as_str()), ("1.1", "200"));
    assert_eq!(body, want);
    // SNI b.test is answered with b's certificate: trusting only b's, curl verifies it.
    let (v, s, _) = tokio::task::spawn_blocking({
        let ca = b.cert.clone();
        move || curl(tls_addr, "b.test", &ca, "--http2", "/live/x/1.ts")
    })
    .await
    .unwrap();
    assert_eq!((v.as_str(), s.as_str()), ("2", "200"));
    // ... and a.test with only b's certificate trusted fails verification (no 200).
    let (_, s, _) = tokio::task::spawn_blocking({
        let ca = b.cert.clone();
        move || curl(tls_addr, "a.test", &ca, "--http2", "/live/x/1.ts")
    })
    .await
    .unwrap();
    assert_eq!(s, "000", "a.test's certificate is a's, not b's");
    // The plain listener serves beside it, and the handshakes are counted.
    let c = new_client(Duration::from_secs(10));
    let m = get(&c, &format!("http://{plain_addr}/metrics")).await;
    let text = String::from_utf8_lossy(&m.body);
    assert!(
        text.contains("edge_tls_handshakes_total{outcome=\"ok\"} 3"),
        "{text}"
    );
    drop(stop);
}
