//! The edge against hostile or careless upstreams and clients: each test here is a probe that
//! once broke the edge (see the hardening issue), kept as a regression test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bytes::Bytes;
use e2e::fake_origin::{FakeOrigin, Script};
use e2e::start_edge;
use http::Method;
use service::client::{Fetched, HttpClient, fetch, new_client};

const EDGE: &str = "[upstream]\nurls = [\"http://127.0.0.1:9\"]\nhead_timeout = \"2s\"\ndeadline = \"3s\"\n[upstream.health]\ninterval = \"200ms\"\n";

fn body_of(n: usize, seed: u8) -> Bytes {
    Bytes::from(
        (0..n)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect::<Vec<u8>>(),
    )
}

async fn get(c: &HttpClient, url: &str) -> Fetched {
    get_with(c, url, &[]).await
}

async fn get_with(c: &HttpClient, url: &str, headers: &[(&str, &str)]) -> Fetched {
    fetch(c, Method::GET, url, headers, Duration::from_secs(10))
        .await
        .unwrap()
}

/// Item 7: `max-age=18446744073709551615` (and a like `Age`) made the fill task panic on
/// "overflow when adding durations" after the body went out, so the object was never
/// stored. Now the value is capped at 2^31 s: the second request is a hit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_delta_seconds_from_upstream_are_capped_not_a_panic() {
    let origin = FakeOrigin::start().await;
    let s = Script::ok(
        body_of(5000, 1),
        "video/mp2t",
        "max-age=18446744073709551615, stale-while-revalidate=18446744073709551615, stale-if-error=99999999999999999999999",
    );
    origin.route("/live/x/1.ts", s);
    let mut old = Script::ok(body_of(100, 2), "video/mp2t", "max-age=60");
    old.headers
        .push(("age".into(), "18446744073709551615".into()));
    origin.route("/live/x/2.ts", old);
    let edge = start_edge(EDGE, &[origin.url()]).await;
    let c = new_client(Duration::from_secs(30));
    let first = get(&c, &edge.url("/live/x/1.ts")).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.body, body_of(5000, 1));
    // The fill task stores the object after the last byte; give it a moment.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let second = get(&c, &edge.url("/live/x/1.ts")).await;
    assert_eq!(
        (second.status.as_u16(), second.header("x-cache")),
        (200, "hit"),
        "stored once, served from the cache"
    );
    assert_eq!(origin.hits("/live/x/1.ts"), 1);
    // An absurd upstream Age is capped too: the copy is served, already stale.
    for _ in 0..2 {
        let r = get(&c, &edge.url("/live/x/2.ts")).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("age"), "2147483648");
    }
}

/// Item 10: an `If-Range` that does not match the object's validator got 206; RFC 9110
/// §13.1.5 says send the whole object (200). Checked on the miss path and on a hit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_range_that_does_not_match_gets_the_whole_object() {
    let origin = FakeOrigin::start().await;
    let mut s = Script::ok(body_of(1000, 4), "video/mp2t", "public, max-age=60");
    s.headers.push(("etag".into(), "\"v1\"".into()));
    origin.route("/k/1.ts", s);
    let edge = start_edge(EDGE, &[origin.url()]).await;
    let c = new_client(Duration::from_secs(30));
    for round in ["miss", "hit"] {
        let r = get_with(
            &c,
            &edge.url("/k/1.ts"),
            &[("range", "bytes=10-19"), ("if-range", "\"v0\"")],
        )
        .await;
        assert_eq!(
            r.status, 200,
            "{round}: stale If-Range means the whole body"
        );
        assert_eq!(r.body, body_of(1000, 4), "{round}");
        assert_eq!(r.header("x-cache"), round);
    }
    let r = get_with(
        &c,
        &edge.url("/k/1.ts"),
        &[("range", "bytes=10-19"), ("if-range", "\"v1\"")],
    )
    .await;
    assert_eq!(r.status, 206, "a matching If-Range keeps the range");
    assert_eq!(r.body, body_of(1000, 4).slice(10..20));
}

/// Item 3: a push stream not fed yet answers 503 + Retry-After on purpose. The edge retried
/// it three times and counted it against the breaker, so two requests opened the breaker
/// and a healthy stream's uncached segment got `502 all circuit breakers open`. Now such an
/// answer is passed on (with its Retry-After), fetched once per request, and the breaker
/// stays closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deliberate_503_is_passed_on_and_never_opens_the_breaker() {
    let origin = FakeOrigin::start().await;
    let mut unfed = Script::ok("no segment yet\n", "text/plain", "no-store");
    unfed.status = 503;
    unfed.headers.push(("retry-after".into(), "1".into()));
    origin.route("/live/unfed/360p/index.m3u8", unfed);
    for i in 0..3 {
        origin.route(
            &format!("/live/ok/360p/{i}.ts"),
            Script::ok(body_of(2000, i as u8), "video/mp2t", "max-age=60"),
        );
    }
    let edge = start_edge(EDGE, &[origin.url()]).await;
    let c = new_client(Duration::from_secs(30));
    for _ in 0..12 {
        let r = get(&c, &edge.url("/live/unfed/360p/index.m3u8")).await;
        assert_eq!(r.status, 503);
        assert_eq!(r.header("retry-after"), "1", "Retry-After passed on");
    }
    assert_eq!(
        origin.hits("/live/unfed/360p/index.m3u8"),
        12,
        "one upstream request per client request: an answer is not retried"
    );
    for i in 0..3 {
        let r = get(&c, &edge.url(&format!("/live/ok/360p/{i}.ts"))).await;
        assert_eq!(
            r.status,
            200,
            "the healthy stream is unaffected: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
    let m = get(&c, &edge.url("/metrics")).await;
    let text = String::from_utf8_lossy(&m.body);
    assert!(
        text.lines()
            .any(|l| l.starts_with("edge_upstream_breaker_state{") && l.ends_with(" 0")),
        "breaker closed:\n{text}"
    );
}

/// Item 4: `?_HLS_msn=N` on a segment URL made one origin fetch and one stored copy per
/// value (500 values: 500 fetches, 453 copies of one `immutable` segment). Now LL-HLS
/// directives key only media playlists; elsewhere they are dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hls_directives_cannot_bust_the_cache() {
    let origin = FakeOrigin::start().await;
    origin.route(
        "/live/x/360p/7.ts",
        Script::ok(
            body_of(3000, 9),
            "video/mp2t",
            "public, max-age=31536000, immutable",
        ),
    );
    let edge = start_edge(EDGE, &[origin.url()]).await;
    let c = new_client(Duration::from_secs(30));
    for i in 0..100 {
        let q = match i % 3 {
            0 => format!("_HLS_msn={i}"),
            1 => format!("_HLS_msn={i}&_HLS_part={i}"),
            _ => format!("_HLS_part={i}&_HLS_skip=YES"),
        };
        let r = get(&c, &edge.url(&format!("/live/x/360p/7.ts?{q}"))).await;
        assert_eq!(r.status, 200, "{q}");
        assert_eq!(r.body, body_of(3000, 9));
    }
    assert_eq!(
        origin.hits("/live/x/360p/7.ts"),
        1,
        "one fetch for one object"
    );
    let m = get(&c, &edge.url("/metrics")).await;
    let text = String::from_utf8_lossy(&m.body);
    let objects = text
        .lines()
        .find_map(|l| l.strip_prefix("edge_cache_objects "))
        .unwrap();
    assert_eq!(objects, "1", "one stored copy");
    // On a media playlist a malformed directive is the client's error.
    for bad in [
        "_HLS_msn=abc",
        "_HLS_msn=-1",
        "_HLS_part=2",
        "_HLS_skip=maybe",
    ] {
        let r = get(&c, &edge.url(&format!("/live/x/360p/index.m3u8?{bad}"))).await;
        assert_eq!(r.status, 400, "{bad}");
    }
}

/// Item 9: an upstream that sends `max-age=1` and nothing else left the edge with nothing
/// to serve when it failed (502), where nginx, Varnish and ATS serve the expired playlist.
/// Now the configured default stale-if-error window (30 s) covers it, for an upstream that
/// answers 503 and for one that is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_if_error_by_default_when_the_upstream_said_nothing() {
    let mut origin = FakeOrigin::start().await;
    let pl = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\n1.ts\n";
    origin.route(
        "/live/x/360p/index.m3u8",
        Script::ok(pl, "application/vnd.apple.mpegurl", "max-age=1"),
    );
    let edge = start_edge(EDGE, &[origin.url()]).await;
    let c = new_client(Duration::from_secs(30));
    let url = edge.url("/live/x/360p/index.m3u8");
    assert_eq!(get(&c, &url).await.status, 200);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let mut err = Script::ok("internal error\n", "text/plain", "no-store");
    err.status = 500;
    origin.route("/live/x/360p/index.m3u8", err);
    let r = get(&c, &url).await;
    assert_eq!(
        (r.status.as_u16(), r.header("x-cache")),
        (200, "stale"),
        "500 from upstream"
    );
    assert_eq!(r.body, pl);
    origin.kill();
    let r = get(&c, &url).await;
    assert_eq!(
        (r.status.as_u16(), r.header("x-cache")),
        (200, "stale"),
        "upstream gone"
    );
    assert!(r.header("cache-status").contains("stale-if-error"));
}
