//! The serve loop on a TLS port: ALPN h2 and http/1.1, SNI picks the certificate, a
//! plaintext client or one that never finishes its handshake is cut and counted.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::{CertificateDer, ServerName};
use service::conn::ConnMetrics;
use service::tls::{CertSpec, Certs, SniCerts, acceptor};
use service::{Listener, ServerLimits, serve_listeners};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct TestCerts {
    a: CertSpec,
    a_der: CertificateDer<'static>,
    b_der: CertificateDer<'static>,
    b: CertSpec,
}

fn write_cert(dir: &Path, tag: &str, name: &str) -> (CertSpec, CertificateDer<'static>) {
    let c = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
    let (cp, kp) = (
        dir.join(format!("{tag}.crt")),
        dir.join(format!("{tag}.key")),
    );
    std::fs::write(&cp, c.cert.pem()).unwrap();
    std::fs::write(&kp, c.signing_key.serialize_pem()).unwrap();
    let spec = CertSpec {
        cert: cp,
        key: kp,
        names: vec![name.to_string()],
    };
    (spec, c.cert.der().clone())
}

fn certs() -> TestCerts {
    let dir: PathBuf = std::env::temp_dir().join(format!(
        "service-tls-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let (a, a_der) = write_cert(&dir, "a", "a.test");
    let (b, b_der) = write_cert(&dir, "b", "b.test");
    TestCerts { a, a_der, b, b_der }
}

/// Serves "hello" over TLS on 127.0.0.1:0; returns the address and the metrics.
async fn start(
    c: &TestCerts,
) -> (
    std::net::SocketAddr,
    ConnMetrics,
    tokio::sync::oneshot::Sender<()>,
) {
    let tcp = service::bind(([127, 0, 0, 1], 0).into(), 128).unwrap();
    let addr = tcp.local_addr().unwrap();
    let tls = acceptor(Certs::new(
        SniCerts::load(&[c.a.clone(), c.b.clone()]).unwrap(),
    ))
    .unwrap();
    let registry = prometheus::Registry::new();
    let metrics = ConnMetrics::register(&registry, "t").unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let limits = ServerLimits {
        header_read_timeout: Duration::from_secs(1),
        ..ServerLimits::default()
    };
    tokio::spawn(serve_listeners(
        vec![Listener {
            tcp,
            tls: Some(tls),
        }],
        |_req, _peer| async {
            let mut r = Response::new(service::body::full("hello"));
            *r.status_mut() = StatusCode::OK;
            r
        },
        limits,
        Some(metrics.clone()),
        async move {
            let _ = rx.await;
        },
    ));
    (addr, metrics, tx)
}

/// A TLS client trusting `roots`, offering `alpn`, connected to `addr` as `name`.
async fn connect(
    addr: std::net::SocketAddr,
    name: &str,
    roots: &[CertificateDer<'static>],
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut store = rustls::RootCertStore::empty();
    for r in roots {
        store.add(r.clone()).unwrap();
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(store)
    .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from(name.to_string()).unwrap(), tcp)
        .await
        .unwrap()
}

fn get(name: &str) -> Request<Empty<Bytes>> {
    Request::get(format!("https://{name}/x"))
        .body(Empty::new())
        .unwrap()
}

#[tokio::test]
async fn alpn_h2_and_http1_on_one_port_and_sni_picks_the_certificate() {
    let c = certs();
    let (addr, metrics, _stop) = start(&c).await;
    let roots = [c.a_der.clone(), c.b_der.clone()];

    // h2 by ALPN, SNI a.test.
    let tls = connect(addr, "a.test", &roots, &[b"h2", b"http/1.1"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    assert_eq!(tls.get_ref().1.peer_certificates().unwrap()[0], c.a_der);
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let r = send.send_request(get("a.test")).await.unwrap();
    assert_eq!(r.version(), http::Version::HTTP_2);
    assert_eq!(
        &r.into_body().collect().await.unwrap().to_bytes()[..],
        b"hello"
    );

    // http/1.1 by ALPN, SNI b.test gets b's certificate.
    let tls = connect(addr, "b.test", &roots, &[b"http/1.1"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert_eq!(tls.get_ref().1.peer_certificates().unwrap()[0], c.b_der);
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let r = send.send_request(get("b.test")).await.unwrap();
    assert_eq!(r.version(), http::Version::HTTP_11);
    assert_eq!(
        &r.into_body().collect().await.unwrap().to_bytes()[..],
        b"hello"
    );
    assert_eq!(metrics.tls_handshakes.with_label_values(&["ok"]).get(), 2);
}

#[tokio::test]
async fn plaintext_and_stalled_handshakes_are_cut_and_counted() {
    let c = certs();
    let (addr, metrics, _stop) = start(&c).await;
    // Plain HTTP on the TLS port: the handshake fails and the connection closes.
    let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(b"GET / HTTP/1.1\r\nhost: a.test\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    // Closed (EOF or reset), not left hanging: the timeout is what would fail.
    let _ = tokio::time::timeout(Duration::from_secs(3), plain.read_to_end(&mut buf))
        .await
        .expect("closed, not left hanging");
    // A client that connects and never sends a ClientHello is cut by the watchdog's
    // first-request timeout (1 s here), well before the handshake timeout.
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut b = [0u8; 1];
    let r = tokio::time::timeout(Duration::from_secs(3), silent.read(&mut b))
        .await
        .expect("cut");
    assert!(matches!(r, Ok(0) | Err(_)));
    assert_eq!(
        metrics.tls_handshakes.with_label_values(&["failed"]).get(),
        1
    );
    assert_eq!(metrics.cut.with_label_values(&["idle"]).get(), 1);
    // A real client still gets in.
    let tls = connect(
        addr,
        "a.test",
        std::slice::from_ref(&c.a_der),
        &[b"http/1.1"],
    )
    .await;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    assert_eq!(
        send.send_request(get("a.test")).await.unwrap().status(),
        200
    );
}

/// A server whose certificate the client does not trust: the error says so, and
/// `is_tls_error` finds the TLS cause under the connector's wrapping.
#[tokio::test]
async fn an_untrusted_certificate_is_a_tls_error_with_its_reason() {
    let c = certs();
    let (addr, _m, _stop) = start(&c).await;
    let client = service::client::new_client(Duration::from_secs(5));
    let req = Request::get(format!("https://127.0.0.1:{}/x", addr.port()))
        .body(service::body::empty())
        .unwrap();
    let e = client.request(req).await.unwrap_err();
    assert!(service::client::is_tls_error(&e));
    let why = service::client::error_chain(&e);
    assert!(why.contains("certificate"), "{why}");
    // A refused connection is not a TLS error.
    let req = Request::get("https://127.0.0.1:9/x")
        .body(service::body::empty())
        .unwrap();
    let e = client.request(req).await.unwrap_err();
    assert!(!service::client::is_tls_error(&e));
}
