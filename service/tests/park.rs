//! Parked HTTP/1.1 connections: an idle kept-alive connection gives its HTTP state back
//! (counted in `*_connections_parked`) and serves its next request as before, over the same
//! socket; a pipelined pair and a request racing the park are both answered; a drain closes
//! parked connections; HTTP/2 connections are never parked.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bytes::Bytes;
use http::Response;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use service::ServerLimits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Server {
    addr: std::net::SocketAddr,
    metrics: service::conn::ConnMetrics,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<()>,
}

fn start() -> Server {
    let listener = service::bind(([127, 0, 0, 1], 0).into(), 128).unwrap();
    let addr = listener.local_addr().unwrap();
    let registry = prometheus::Registry::new();
    let metrics = service::conn::ConnMetrics::register(&registry, "t").unwrap();
    let limits = ServerLimits {
        drain_timeout: Duration::from_secs(2),
        ..ServerLimits::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let done = tokio::spawn(service::serve_listeners(
        vec![service::Listener {
            tcp: listener,
            tls: None,
        }],
        |req: http::Request<hyper::body::Incoming>, _peer| async move {
            Response::new(service::body::full(format!("ok {}", req.uri().path())))
        },
        limits,
        Some(metrics.clone()),
        async move {
            let _ = stopped.await;
        },
    ));
    Server {
        addr,
        metrics,
        stop: Some(stop),
        done,
    }
}

async fn wait_parked(m: &service::conn::ConnMetrics, n: i64) {
    for _ in 0..100 {
        if m.parked.get() == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("parked = {}, expected {n}", m.parked.get());
}

#[tokio::test]
async fn an_idle_connection_parks_and_serves_its_next_request_on_the_same_socket() {
    let s = start();
    let tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let local = tcp.local_addr().unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    for round in 0..3 {
        send.ready().await.unwrap();
        let r = send
            .send_request(
                http::Request::get(format!("/r{round}"))
                    .body(Empty::<Bytes>::new())
                    .unwrap(),
            )
            .await
            .unwrap_or_else(|e| panic!("request {round} on the kept-alive connection: {e}"));
        assert!(r.headers().get(http::header::CONNECTION).is_none());
        let body = r.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, format!("ok /r{round}"));
        wait_parked(&s.metrics, 1).await;
        assert_eq!(s.metrics.open.get(), 1, "one socket throughout ({local})");
    }
}

#[tokio::test]
async fn pipelined_and_racing_requests_are_all_answered() {
    let s = start();
    let mut tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    // Two pipelined requests, then one sent at the moment the connection parks.
    tcp.write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while count(&got, "HTTP/1.1 200") < 2 {
        let n = tcp.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    for k in 0..10u64 {
        // Around the park deadline (500 ms of quiet), from either side of it.
        tokio::time::sleep(Duration::from_millis(480 + k * 4)).await;
        tcp.write_all(format!("GET /c{k} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let want = format!("ok /c{k}");
        while !String::from_utf8_lossy(&got).contains(&want) {
            let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
                .await
                .expect("no answer")
                .unwrap();
            assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.contains("ok /a") && text.contains("ok /b"), "{text}");
    assert_eq!(count(&got, "HTTP/1.1 200"), 12);
}

fn count(hay: &[u8], needle: &str) -> usize {
    String::from_utf8_lossy(hay).matches(needle).count()
}

#[tokio::test]
async fn a_drain_closes_parked_connections_and_http2_is_never_parked() {
    let mut s = start();
    // HTTP/2 with prior knowledge beside a parked HTTP/1.1 connection.
    let tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let (mut h2, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let r = h2
        .send_request(
            http::Request::get("/h2")
                .body(Empty::<Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.version(), http::Version::HTTP_2);
    let mut h1 = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    h1.write_all(b"GET /h1 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = h1.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    wait_parked(&s.metrics, 1).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        s.metrics.parked.get(),
        1,
        "the HTTP/2 connection is not parked"
    );
    let r = h2
        .send_request(
            http::Request::get("/again")
                .body(Empty::<Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    drop(s.stop.take());
    // The parked connection is closed by the drain (EOF), and the server finishes.
    let n = tokio::time::timeout(Duration::from_secs(5), h1.read(&mut buf))
        .await
        .expect("the parked connection was not closed")
        .unwrap_or(0);
    assert_eq!(n, 0);
    drop(h2);
    tokio::time::timeout(Duration::from_secs(5), &mut s.done)
        .await
        .expect("the drain did not finish")
        .unwrap();
    assert_eq!(s.metrics.parked.get(), 0);
}

#[test]
fn park_due_waits_for_quiet_and_no_request() {
    use service::conn::{Snapshot, park_due};
    let t0 = tokio::time::Instant::now();
    let after = Duration::from_millis(500);
    let quiet = Snapshot {
        requests: 0,
        served_any: true,
        last_active: t0,
        oldest_waiting: None,
    };
    assert_eq!(park_due(&quiet, t0 + after, after), None);
    assert_eq!(
        park_due(&quiet, t0 + Duration::from_millis(100), after),
        Some(t0 + after)
    );
    let busy = Snapshot {
        requests: 1,
        ..quiet
    };
    assert!(park_due(&busy, t0 + Duration::from_secs(9), after).is_some());
    let waiting = Snapshot {
        oldest_waiting: Some(t0),
        ..quiet
    };
    assert!(park_due(&waiting, t0 + Duration::from_secs(9), after).is_some());
}
