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

/// An edge running `toml` with one plain and one TLS listener on loopback port 0; SIGHUP
/// reloads the same text when `reloadable`. Dropping it stops the edge.
struct TlsEdge {
    plain: std::net::SocketAddr,
    tls: std::net::SocketAddr,
    admin: std::net::SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl TlsEdge {
    fn start(toml: &str, reloadable: bool) -> Self {
        let cfg = edge::config::Config::parse("tls.toml", toml).unwrap();
        let tls = edge::tls_setup(&cfg).unwrap().unwrap();
        let plain = service::bind(([127, 0, 0, 1], 0).into(), 128).unwrap();
        let secure = service::bind(([127, 0, 0, 1], 0).into(), 128).unwrap();
        let admin = service::bind(([127, 0, 0, 1], 0).into(), 128).unwrap();
        let addrs = (
            plain.local_addr().unwrap(),
            secure.local_addr().unwrap(),
            admin.local_addr().unwrap(),
        );
        let source: Option<edge::ReloadSource> = reloadable.then(|| {
            let toml = toml.to_string();
            std::sync::Arc::new(move || {
                edge::config::Config::parse("tls.toml", &toml).map_err(|e| e.to_string())
            }) as edge::ReloadSource
        });
        let stop = e2e::run_edge_on(
            edge::Sockets {
                viewers: vec![
                    service::Listener {
                        tcp: plain,
                        tls: None,
                    },
                    service::Listener {
                        tcp: secure,
                        tls: Some(tls.acceptor.clone()),
                    },
                ],
                admin: Some(admin),
            },
            cfg,
            Some(tls.certs.clone()),
            source,
        );
        Self {
            plain: addrs.0,
            tls: addrs.1,
            admin: addrs.2,
            _stop: stop,
        }
    }
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
    let log = dir.join("access-sni.log");
    let toml = format!(
        "[access_log]\npath = {log:?}\n[upstream]\nurls = [\"{}\"]\n[[listeners]]\naddr = \"127.0.0.1:0\"\ntls = true\n[tls]\ncertificates = [{{ cert = {:?}, key = {:?}, names = [\"a.test\"] }}, {{ cert = {:?}, key = {:?}, names = [\"b.test\"] }}]\n",
        origin.url(),
        a.cert,
        a.key,
        b.cert,
        b.key
    );
    let edge = TlsEdge::start(&toml, false);
    let (plain_addr, tls_addr) = (edge.plain, edge.tls);
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
    let plain = get(&c, &format!("http://{plain_addr}/live/x/1.ts")).await;
    assert_eq!(plain.status, 200);
    let m = get(&c, &format!("http://{}/metrics", edge.admin)).await;
    let text = String::from_utf8_lossy(&m.body);
    assert!(
        text.contains("edge_tls_handshakes_total{outcome=\"ok\"} 3"),
        "{text}"
    );
    // The access log says which protocol and TLS version each request came over.
    let mut lines = Vec::new();
    for _ in 0..50 {
        lines = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .collect();
        if lines.len() >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seen: Vec<(String, String)> = lines
        .iter()
        .map(|l| {
            (
                l["protocol"].as_str().unwrap_or("").to_string(),
                l["tls"].as_str().unwrap_or("none").to_string(),
            )
        })
        .collect();
    for want in [
        ("HTTP/2", "TLSv1.3"),
        ("HTTP/1.1", "TLSv1.3"),
        ("HTTP/1.1", "none"),
    ] {
        assert!(
            seen.contains(&(want.0.to_string(), want.1.to_string())),
            "{want:?} not in {seen:?}"
        );
    }
    assert_eq!(lines[0]["upstream"], origin.addr.to_string());
    assert!(
        text.contains("edge_connections_open_by_protocol")
            && text.contains("edge_sent_bytes_total"),
        "{text}"
    );
}

/// A TLS client trusting `roots`, HTTP/1.1, connected to `addr` as `name`; returns the
/// request sender and the certificate the edge presented.
async fn tls_h1(
    addr: std::net::SocketAddr,
    name: &str,
    roots: &[rustls_pki_types::CertificateDer<'static>],
) -> (
    hyper::client::conn::http1::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    rustls_pki_types::CertificateDer<'static>,
) {
    let mut store = rustls::RootCertStore::empty();
    for r in roots {
        store.add(r.clone()).unwrap();
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(store)
    .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
        .connect(
            rustls_pki_types::ServerName::try_from(name.to_string()).unwrap(),
            tcp,
        )
        .await
        .unwrap();
    let presented = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    let (send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    (send, presented)
}

/// Sends `req` on a ready HTTP/1.1 connection and reads the whole answer; its status.
async fn status_of(
    send: &mut hyper::client::conn::http1::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    req: http::Request<http_body_util::Empty<bytes::Bytes>>,
) -> http::StatusCode {
    use http_body_util::BodyExt;
    send.ready().await.unwrap();
    let r = send.send_request(req).await.unwrap();
    let status = r.status();
    r.into_body().collect().await.unwrap();
    status
}

/// Writes a fresh certificate for `name` over `spec`'s files; returns it (DER).
fn rotate(spec: &CertSpec, name: &str) -> rustls_pki_types::CertificateDer<'static> {
    let c = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
    std::fs::write(&spec.cert, c.cert.pem()).unwrap();
    std::fs::write(&spec.key, c.signing_key.serialize_pem()).unwrap();
    c.cert.der().clone()
}

async fn reloads(admin: std::net::SocketAddr, outcome: &str) -> String {
    let c = new_client(Duration::from_secs(10));
    let m = get(&c, &format!("http://{admin}/metrics")).await;
    String::from_utf8_lossy(&m.body)
        .lines()
        .find_map(|l| l.strip_prefix(&format!("edge_reloads_total{{outcome=\"{outcome}\"}} ")))
        .unwrap_or("0")
        .to_string()
}

/// A certificate rotated on disk and reloaded with SIGHUP is served from the next handshake
/// on, while a connection opened before keeps working; a broken certificate at reload is
/// refused, counted, and the one in service stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_certificate_for_new_handshakes_only() {
    let origin = FakeOrigin::start().await;
    origin.route(
        "/live/x/1.ts",
        Script::ok(body_of(10_000, 1), "video/mp2t", "max-age=60"),
    );
    let dir = scratch().join("rotate");
    std::fs::create_dir_all(&dir).unwrap();
    let spec = cert(&dir, "a.test");
    let first: rustls_pki_types::CertificateDer<'static> =
        rustls_pki_types::pem::PemObject::from_pem_file(&spec.cert).unwrap();
    let toml = format!(
        "[upstream]\nurls = [\"{}\"]\n[[listeners]]\naddr = \"127.0.0.1:0\"\ntls = true\n[tls]\ncertificates = [{{ cert = {:?}, key = {:?}, names = [\"a.test\"] }}]\n",
        origin.url(),
        spec.cert,
        spec.key
    );
    let edge = TlsEdge::start(&toml, true);
    let tls_addr = edge.tls;
    let req = || {
        http::Request::get("https://a.test/live/x/1.ts")
            .header("host", "a.test")
            .body(http_body_util::Empty::new())
            .unwrap()
    };
    let hup = || {
        std::process::Command::new("kill")
            .args(["-HUP", &std::process::id().to_string()])
            .status()
            .unwrap()
    };
    let (mut old, presented) = tls_h1(tls_addr, "a.test", std::slice::from_ref(&first)).await;
    assert_eq!(presented, first);
    assert_eq!(status_of(&mut old, req()).await, 200);
    let second = rotate(&spec, "a.test");
    assert!(hup().success());
    for _ in 0..50 {
        if reloads(edge.admin, "ok").await == "1" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(reloads(edge.admin, "ok").await, "1");
    let (mut new, presented) = tls_h1(tls_addr, "a.test", std::slice::from_ref(&second)).await;
    assert_eq!(
        presented, second,
        "the next handshake gets the rotated certificate"
    );
    assert_eq!(status_of(&mut new, req()).await, 200);
    assert_eq!(
        status_of(&mut old, req()).await,
        200,
        "the connection opened before keeps working"
    );
    // A broken key at reload is refused and the rotated certificate stays in service.
    std::fs::write(&spec.key, "broken").unwrap();
    assert!(hup().success());
    for _ in 0..50 {
        if reloads(edge.admin, "refused").await == "1" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(reloads(edge.admin, "refused").await, "1");
    let (_, presented) = tls_h1(tls_addr, "a.test", std::slice::from_ref(&second)).await;
    assert_eq!(presented, second);
}

/// An edge whose upstream is `https://`: with the upstream's CA in `upstream.ca_file` it
/// fetches through TLS; without it the certificate is not trusted, which is an upstream
/// failure with the reason in the answer and `edge_upstream_requests_total{status="tls_error"}`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_upstream_with_a_test_ca_and_a_wrong_one() {
    let origin = FakeOrigin::start().await;
    origin.route(
        "/live/x/1.ts",
        Script::ok(body_of(50_000, 9), "video/mp2t", "max-age=60"),
    );
    // The upstream: an edge serving TLS on 127.0.0.1 with a certificate for that address.
    let dir = scratch().join("upstream");
    std::fs::create_dir_all(&dir).unwrap();
    let ip = cert(&dir, "127.0.0.1");
    let toml = format!(
        "[upstream]\nurls = [\"{}\"]\n[[listeners]]\naddr = \"127.0.0.1:0\"\ntls = true\n[tls]\ncertificates = [{{ cert = {:?}, key = {:?} }}]\n",
        origin.url(),
        ip.cert,
        ip.key
    );
    let upstream_edge = TlsEdge::start(&toml, false);
    let tls_addr = upstream_edge.tls;
    let upstream = format!("https://{tls_addr}");
    let trusting = e2e::start_edge(
        &format!(
            "[upstream]\nurls = [\"{upstream}\"]\nca_file = {:?}\n",
            ip.cert
        ),
        &[],
    )
    .await;
    let c = new_client(Duration::from_secs(10));
    let r = get(&c, &trusting.url("/live/x/1.ts")).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.body, body_of(50_000, 9));
    let distrusting = e2e::start_edge(
        &format!("[upstream]\nurls = [\"{upstream}\"]\nmax_attempts = 1\n"),
        &[],
    )
    .await;
    let r = get(&c, &distrusting.url("/live/x/1.ts")).await;
    assert_eq!(r.status, 502);
    let why = String::from_utf8_lossy(&r.body);
    assert!(why.contains("certificate"), "the reason says so: {why}");
    let m = get(&c, &distrusting.admin_url("/metrics")).await;
    let text = String::from_utf8_lossy(&m.body);
    assert!(
        text.lines()
            .any(|l| l.starts_with("edge_upstream_requests_total{")
                && l.contains("status=\"tls_error\"")),
        "{text}"
    );
}

/// Signed viewer tokens (issue 10): a protected prefix answers 403 with the reason for a
/// missing, malformed, expired or forged token, 200 for a valid one in the query or a
/// cookie, and the token never splits the cache (one upstream fetch).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewer_tokens_guard_a_prefix_without_splitting_the_cache() {
    let origin = FakeOrigin::start().await;
    origin.route(
        "/live/premium/1.ts",
        Script::ok(body_of(3000, 5), "video/mp2t", "max-age=60"),
    );
    origin.route(
        "/live/free/1.ts",
        Script::ok(body_of(3000, 6), "video/mp2t", "max-age=60"),
    );
    let secret = "s3cret-s3cret-s3cret";
    let edge = e2e::start_edge(
        &format!(
            "[[tokens]]\nprefix = \"/live/premium/\"\nsecrets = [\"{secret}\"]\n[upstream]\nurls = [\"http://127.0.0.1:9\"]\n"
        ),
        &[origin.url()],
    )
    .await;
    let c = new_client(Duration::from_secs(10));
    let now = u64::try_from(hls::date::now_unix_ms() / 1000).unwrap();
    let good = edge::token::mint(secret, "/live/premium/", now + 60, None);
    let expired = edge::token::mint(secret, "/live/premium/", now - 1, None);
    let forged = edge::token::mint("another-secret-000", "/live/premium/", now + 60, None);
    let url = |t: &str| edge.url(&format!("/live/premium/1.ts?token={t}"));
    for (u, why) in [
        (edge.url("/live/premium/1.ts"), "missing"),
        (url("garbage"), "malformed"),
        (url(&expired), "expired"),
        (url(&forged), "bad_signature"),
    ] {
        let r = get(&c, &u).await;
        assert_eq!(r.status, 403, "{why}");
        assert!(String::from_utf8_lossy(&r.body).contains(why), "{why}");
    }
    let r = get(&c, &url(&good)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, body_of(3000, 5));
    let r = e2e::get_with(
        &c,
        &edge.url("/live/premium/1.ts"),
        &[("cookie", &format!("edge_token={good}"))],
    )
    .await;
    assert_eq!((r.status.as_u16(), r.header("x-cache")), (200, "hit"));
    assert_eq!(
        origin.hits("/live/premium/1.ts"),
        1,
        "the token is not in the key"
    );
    assert_eq!(get(&c, &edge.url("/live/free/1.ts")).await.status, 200);
    let m = get(&c, &edge.admin_url("/metrics")).await;
    let text = String::from_utf8_lossy(&m.body);
    for why in ["missing", "malformed", "expired", "bad_signature"] {
        assert!(
            text.contains(&format!("edge_token_rejected_total{{reason=\"{why}\"}} 1")),
            "{why}: {text}"
        );
    }
}

/// A CDN-only origin (issue 10): the origin's `pull_auth` refuses pulls without its secret
/// header (403), and an edge configured with `upstream.auth_header` gets through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cdn_only_origin_serves_its_edges_and_refuses_everyone_else() {
    let secret = "origin-secret-0123456789";
    let origin = e2e::start_origin(&format!(
        "[pull_auth]\nheader = \"x-cdn-auth\"\nsecrets = [\"{secret}\"]\n[[streams]]\nname = \"demo\"\nsource = \"loop\"\n"
    ))
    .await;
    let c = new_client(Duration::from_secs(10));
    e2e::wait_ok(&c, &origin.url("/readyz"), Duration::from_secs(10)).await;
    let direct = get(&c, &origin.url("/live/demo/master.m3u8")).await;
    assert_eq!(direct.status, 403, "a pull from anyone else");
    assert!(String::from_utf8_lossy(&direct.body).contains("missing x-cdn-auth"));
    let wrong = e2e::get_with(
        &c,
        &origin.url("/live/demo/master.m3u8"),
        &[("x-cdn-auth", "guess-guess-guess-guess")],
    )
    .await;
    assert_eq!(wrong.status, 403);
    let edge = e2e::start_edge(
        &format!(
            "[upstream]\nurls = [\"{}\"]\nauth_header = \"x-cdn-auth\"\nauth_secret = \"{secret}\"\n",
            origin.url("")
        ),
        &[],
    )
    .await;
    let r = get(&c, &edge.url("/live/demo/master.m3u8")).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(String::from_utf8_lossy(&r.body).contains("#EXT-X-STREAM-INF"));
}
