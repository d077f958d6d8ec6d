//! Keep-alive: an idle connection lives for `idle_timeout`, not `header_read_timeout`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bytes::Bytes;
use http::Response;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use service::ServerLimits;

/// Regression: hyper's head timer (set to header_read_timeout) also ran while a keep-alive
/// connection waited for its next request, so idle connections died after 10 s although
/// clients still pooled them; a client reusing one then lost its request (a player back from
/// an outage stalled 10 s longer, a flaky e2e test).
#[tokio::test]
async fn an_idle_keep_alive_connection_outlives_the_header_timeout() {
    let listener = service::bind(([127, 0, 0, 1], 0).into(), 128).unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = ServerLimits {
        header_read_timeout: Duration::from_millis(500),
        idle_timeout: Duration::from_secs(5),
        ..ServerLimits::default()
    };
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(service::serve(
        listener,
        |_req, _peer| async { Response::new(service::body::full("ok")) },
        limits,
        async move {
            let _ = stopped.await;
        },
    ));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    for round in 0..2 {
        send.ready().await.unwrap();
        let r = send
            .send_request(http::Request::get("/").body(Empty::<Bytes>::new()).unwrap())
            .await
            .unwrap_or_else(|e| panic!("request {round} on the kept-alive connection: {e}"));
        r.into_body().collect().await.unwrap();
        // Idle for three times the header timeout, well inside idle_timeout.
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
}
