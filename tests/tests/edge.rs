//! The edge against a scriptable fake origin (fault and timing) and the real origin:
//! coalescing with streaming, stale serving, failover, negative caching, shedding.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use e2e::fake_origin::{Chunk, FakeOrigin, Gate, Script};
use e2e::{body_of, get, start_edge, start_origin, wait_ok};
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use service::client::{HttpClient, fetch, new_client};

const EDGE: &str = "[upstream]\nurls = [\"http://127.0.0.1:9\"]\nhead_timeout = \"2s\"\ndeadline = \"3s\"\n[upstream.health]\ninterval = \"200ms\"\n";

/// For tests whose whole audience comes from 127.0.0.1: lifts the per-address caps.
const ONE_ADDRESS_CROWD: &str =
    "[server]\nmax_connections_per_client = 0\nmax_requests_per_client = 0\n";

/// Streams a GET and checks every byte against `expected` as it arrives (no 1 MiB copies
/// per client); returns status and the cache phase.
async fn get_and_compare(c: &HttpClient, url: &str, expected: &Bytes) -> (StatusCode, String) {
    let req = Request::builder()
        .uri(url)
        .body(service::body::empty())
        .unwrap();
    let resp = c.request(req).await.unwrap();
    let status = resp.status();
    let phase = resp
        .headers()
        .get("x-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let mut body = resp.into_body();
    let mut off = 0;
    while let Some(frame) = body.frame().await {
        let data = frame.unwrap().into_data().unwrap();
        assert_eq!(
            &data[..],
            &expected[off..off + data.len()],
            "bytes differ at {off}"
        );
        off += data.len();
    }
    assert_eq!(off, expected.len(), "whole body received");
    (status, phase)
}

/// 2,000 concurrent requests for an uncached 1 MiB object: exactly one upstream fetch, and
/// every client gets the same bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herd_of_2000_makes_one_upstream_fetch() {
    let origin = FakeOrigin::start().await;
    let big = body_of(1 << 20, 7);
    let mut s = Script::ok(
        big.clone(),
        "video/mp2t",
        "public, max-age=31536000, immutable",
    );
    s.head_delay = Duration::from_millis(300);
    origin.route("/live/x/1.ts", s);
    // 2,000 viewers, all from 127.0.0.1: no per-address caps.
    let edge = start_edge(&format!("{ONE_ADDRESS_CROWD}{EDGE}"), &[origin.url()]).await;
    let url = edge.url("/live/x/1.ts");
    let c = new_client(Duration::from_secs(30));
    let tasks: Vec<_> = (0..2000)
        .map(|_| {
            let (c, url, big) = (c.clone(), url.clone(), big.clone());
            tokio::spawn(async move { get_and_compare(&c, &url, &big).await })
        })
        .collect();
    let mut phases = std::collections::HashMap::<String, usize>::new();
    for t in tasks {
        let (status, phase) = t.await.unwrap();
        assert_eq!(status, 200);
        *phases.entry(phase).or_default() += 1;
    }
    assert_eq!(
        origin.hits("/live/x/1.ts"),
        1,
        "exactly one upstream fetch; phases {phases:?}"
    );
    assert_eq!(phases.get("miss"), Some(&1), "{phases:?}");
    assert!(
        phases.get("coalesced").copied().unwrap_or(0) > 1000,
        "most joined the flight: {phases:?}"
    );
}

/// The origin sends half the body and pauses: every waiter has that half before the pause
/// ends (the body streams; nobody waits for the whole object).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_receive_the_first_half_during_the_pause() {
    let origin = FakeOrigin::start().await;
    let body = body_of(512 * 1024, 3);
    let gate = Gate::new();
    let mut s = Script::ok(Bytes::new(), "video/mp2t", "public, max-age=60");
    s.chunks = vec![
        Chunk {
            data: body.slice(..256 * 1024),
            gate: None,
        },
        Chunk {
            data: body.slice(256 * 1024..),
            gate: Some(gate.clone()),
        },
    ];
    origin.route("/seg/5.ts", s);
    let edge = start_edge(EDGE, &[origin.url()]).await;
    let c = new_client(Duration::from_secs(30));
    let half_seen = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (c, url, body, half_seen) = (
                c.clone(),
                edge.url("/seg/5.ts"),
                body.clone(),
                half_seen.clone(),
            );
            tokio::spawn(async move {
                let resp = c
                    .request(
                        Request::builder()
                            .uri(&url)
                            .body(service::body::empty())
                            .unwrap(),
                    )
                    .await
                    .unwrap();
                let mut b = resp.into_body();
                let mut got = Vec::new();
                let mut counted = false;
                while let Some(f) = b.frame().await {
                    got.extend_from_slice(&f.unwrap().into_data().unwrap());
                    if !counted && got.len() >= 256 * 1024 {
                        counted = true;
                        half_seen.fetch_add(1, Ordering::SeqCst);
                    }
                }
                assert_eq!(Bytes::from(got), body);
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while half_seen.load(Ordering::SeqCst) < 50 {
        assert!(
            Instant::now() < deadline,
            "only {} of 50 waiters got the first half while the origin paused",
            half_seen.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    gate.open();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(origin.hits("/seg/5.ts"), 1);
}

/// An expired live playlist under a herd: one upstream refresh; with stale-while-revalidate
/// (in Cache-Control, or only in CDN-Cache-Control as the origin sends it, RFC 9213) the herd
/// gets the previous copy at once, without it the herd coalesces on one fetch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_playlist_herd_makes_one_refresh() {
    let origin = FakeOrigin::start().await;
    let v1 = Bytes::from_static(
        b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:1\n#EXTINF:2.0,\n1.ts\n",
    );
    let v2 = Bytes::from_static(
        b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:2\n#EXTINF:2.0,\n2.ts\n",
    );
    let ct = "application/vnd.apple.mpegurl";
    origin.route(
        "/a/index.m3u8",
        Script::ok(v1.clone(), ct, "max-age=1, stale-while-revalidate=5"),
    );
    origin.route("/b/index.m3u8", Script::ok(v1.clone(), ct, "max-age=1"));
    // the browser may not serve it stale, the CDN may
    let targeted = |body: &Bytes| {
        let mut s = Script::ok(body.clone(), ct, "public, max-age=1");
        s.headers.push((
            "cdn-cache-control".into(),
            "max-age=1, stale-while-revalidate=5".into(),
        ));
        s
    };
    origin.route("/c/index.m3u8", targeted(&v1));
    let edge = start_edge(EDGE, &[origin.url()]).await;
    let c = new_client(Duration::from_secs(30));
    for p in ["/a/index.m3u8", "/b/index.m3u8", "/c/index.m3u8"] {
        assert_eq!(get(&c, &edge.url(p)).await.body, v1);
    }
    // Both fields reach the client as the origin sent them (a shield's edges need the CDN's).
    let r = get(&c, &edge.url("/c/index.m3u8")).await;
    assert_eq!(r.header("cache-control"), "public, max-age=1");
    assert_eq!(
        r.header("cdn-cache-control"),
        "max-age=1, stale-while-revalidate=5"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await; // all now stale
    for p in ["/a/index.m3u8", "/b/index.m3u8", "/c/index.m3u8"] {
        let mut s = if p.starts_with("/c/") {
            targeted(&v2)
        } else {
            Script::ok(v2.clone(), ct, "max-age=1, stale-while-revalidate=5")
        };
        s.head_delay = Duration::from_millis(300);
        origin.route(p, s);
    }
    for (p, want_phase, want_body) in [
        ("/a/index.m3u8", "stale", &v1),
        ("/b/index.m3u8", "coalesced", &v2),
        ("/c/index.m3u8", "stale", &v1),
    ] {
        let tasks: Vec<_> = (0..300)
            .map(|_| {
                let (c, url) = (c.clone(), edge.url(p));
                tokio::spawn(async move { get(&c, &url).await })
            })
            .collect();
        let mut phases = std::collections::HashMap::<String, usize>::new();
        for t in tasks {
            let r = t.await.unwrap();
            assert_eq!(r.status, 200);
            *phases.entry(r.header("x-cache").to_string()).or_default() += 1;
            if r.header("x-cache") == want_phase {
                assert_eq!(&r.body, want_body);
            }
        }
        assert_eq!(
            origin.hits(p),
            2,
            "{p}: first fetch plus exactly one refresh; {phases:?}"
        );
        assert!(
            phases.get(want_phase).copied().unwrap_or(0) >= 250,
            "{p}: {phases:?}"
        );
    }
    // The refreshed copy is served once it lands.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(get(&c, &edge.url("/a/index.m3u8")).await.body, v2);
}

/// The first client disconnects mid-body: the fetch goes on, the others get every byte, and
/// the object is cached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_client_leaving_mid_body_does_not_break_the_others() {
    let origin = FakeOrigin::start().await;
    let body = body_of(300_000, 9);
    let gate = Gate::new();
    let mut s = Script::ok(Bytes::new(), "video/mp2t", "public, max-age=60");
    s.chunks = vec![
        Chunk {
            data: body.slice(..100_000),
            gate: None,
        },
        Chunk {
            data: body.slice(100_000..),
            gate: Some(gate.clone()),
        },
    ];
    origin.route("/s/1.ts", s);
    let edge = start_edge(EDGE, &[origin.url()]).await;
    let c = new_client(Duration::from_secs(30));
    // The first client (the miss) reads a little, then goes away.
    let first = c
        .request(
            Request::builder()
                .uri(edge.url("/s/1.ts"))
                .body(service::body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(first.headers()["x-cache"], "miss");
    let mut fb = first.into_body();
    let _ = fb.frame().await.unwrap().unwrap();
    let others: Vec<_> = (0..20)
        .map(|_| {
            let (c, url, body) = (c.clone(), edge.url("/s/1.ts"), body.clone());
            tokio::spawn(async move { get_and_compare(&c, &url, &body).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(fb);
    tokio::time::sleep(Duration::from_millis(100)).await;
    gate.open();
    for t in others {
        assert_eq!(t.await.unwrap().0, 200);
    }
    let (status, phase) = get_and_compare(&c, &edge.url("/s/1.ts"), &body).await;
    assert_eq!((status.as_u16(), phase.as_str()), (200, "hit"));
    assert_eq!(origin.hits("/s/1.ts"), 1);
}

/// An upstream that breaks mid-body: waiters see the break (never a hang), nothing is
/// cached, and the next request fetches again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_upstream_body_is_not_cached() {
    let origin = FakeOrigin::start().await;
    let mut s = Script::ok(body_of(50_000, 1), "video/mp2t", "public, max-age=60");
    s.content_length = false;
    s.break_after = true;
    origin.route("/b/1.ts", s);
    let edge = start_edge(EDGE, &[origin.url()]).await;
    let c = new_client(Duration::from_secs(30));
    let r = tokio::time::timeout(
        Duration::from_secs(5),
        fetch(
            &c,
            Method::GET,
            &edge.url("/b/1.ts"),
            &[],
            Duration::from_secs(5),
        ),
    )
    .await
    .unwrap();
    assert!(r.is_err(), "the client sees the broken body: {r:?}");
    origin.route(
        "/b/1.ts",
        Script::ok(body_of(50_000, 1), "video/mp2t", "public, max-age=60"),
    );
    let r = get(&c, &edge.url("/b/1.ts")).await;
    assert_eq!((r.status.as_u16(), r.header("x-cache")), (200, "miss"));
    assert_eq!(origin.hits("/b/1.ts"), 2);
}

/// With the real origin killed: cached segments and the stale playlist are still 200, and
/// an object never fetched fails fast with a 5xx.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_killed_cached_and_stale_still_served() {
    let origin = start_origin(
        "[server]\ndrain_timeout = \"200ms\"\n[[streams]]\nname = \"demo\"\nsource = \"loop\"\n",
    )
    .await;
    let c = new_client(Duration::from_secs(30));
    wait_ok(&c, &origin.url("/readyz"), Duration::from_secs(10)).await;
    let edge = start_edge(EDGE, &[origin.url("")]).await;
    wait_ok(&c, &edge.admin_url("/readyz"), Duration::from_secs(5)).await;
    let pl = get(&c, &edge.url("/live/demo/144p/index.m3u8")).await;
    assert_eq!(pl.status, 200);
    let text = String::from_utf8(pl.body.to_vec()).unwrap();
    let seg = text
        .lines()
        .rfind(|l| l.ends_with(".ts"))
        .unwrap()
        .to_string();
    let s1 = get(&c, &edge.url(&format!("/live/demo/144p/{seg}"))).await;
    assert_eq!(s1.status, 200);
    drop(origin);
    tokio::time::sleep(Duration::from_millis(1500)).await; // the playlist (max-age=1) is stale
    let s2 = get(&c, &edge.url(&format!("/live/demo/144p/{seg}"))).await;
    assert_eq!((s2.status.as_u16(), s2.header("x-cache")), (200, "hit"));
    assert_eq!(s2.body, s1.body);
    for wait in [0, 2500] {
        // Within stale-while-revalidate, then beyond it (stale-if-error=12 s still covers it).
        tokio::time::sleep(Duration::from_millis(wait)).await;
        let p = get(&c, &edge.url("/live/demo/144p/index.m3u8")).await;
        assert_eq!(
            (p.status.as_u16(), p.header("x-cache")),
            (200, "stale"),
            "after {wait} ms more"
        );
        assert_eq!(p.body, pl.body);
    }
    let started = Instant::now();
    let miss = get(&c, &edge.url("/live/demo/144p/1.ts")).await;
    assert!(miss.status.is_server_error(), "{:?}", miss.status);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "fast 5xx, took {:?}",
        started.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    let ready = get(&c, &edge.admin_url("/readyz")).await;
    assert_eq!(ready.status, 503, "no healthy upstream");
}

/// Failover to the second upstream when the first is down, and 404s cached for at most 1 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_and_negative_caching() {
    let mut dead = FakeOrigin::start().await;
    let dead_url = dead.url();
    dead.kill();
    let good = FakeOrigin::start().await;
    good.route(
        "/v/1.ts",
        Script::ok(body_of(1000, 2), "video/mp2t", "max-age=60"),
    );
    let edge = start_edge(EDGE, &[dead_url, good.url()]).await;
    let c = new_client(Duration::from_secs(30));
    let r = get(&c, &edge.url("/v/1.ts")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, body_of(1000, 2));
    // 404 cached, but only briefly.
    for _ in 0..5 {
        assert_eq!(get(&c, &edge.url("/v/2.ts")).await.status, 404);
    }
    assert_eq!(good.hits("/v/2.ts"), 1);
    good.route(
        "/v/2.ts",
        Script::ok(body_of(10, 5), "video/mp2t", "max-age=60"),
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(get(&c, &edge.url("/v/2.ts")).await.status, 200);
}

/// Cache keys: traversal and bad encodings are 400; other spellings share one object;
/// conditional and range requests are served from the cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_conditional_and_ranges() {
    let origin = FakeOrigin::start().await;
    let mut s = Script::ok(body_of(1000, 4), "video/mp2t", "public, max-age=60");
    s.headers.push(("etag".into(), "\"abc\"".into()));
    origin.route("/k/1.ts", s);
    let edge = start_edge(EDGE, &[origin.url()]).await;
    let c = new_client(Duration::from_secs(30));
    for bad in [
        "/k/../1.ts",
        "/k/%2e%2e/1.ts",
        "/k%2F1.ts",
        "/k/%zz.ts",
        "/k//1.ts",
        "/k/index.m3u8?_HLS_msn=1&_HLS_msn=2",
    ] {
        let r = get(&c, &edge.url(bad)).await;
        assert_eq!(r.status, 400, "{bad}");
        assert_eq!(r.header("x-cache"), "bypass");
    }
    assert_eq!(
        get(&c, &edge.url("/k/1.ts?cachebuster=1")).await.status,
        200
    );
    let r = get(&c, &edge.url("/%6B/1.ts")).await;
    assert_eq!(
        r.header("x-cache"),
        "hit",
        "another spelling is the same object"
    );
    assert_eq!(origin.hits("/k/1.ts"), 1);
    let r = fetch(
        &c,
        Method::GET,
        &edge.url("/k/1.ts"),
        &[("if-none-match", "\"abc\"")],
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 304);
    let r = fetch(
        &c,
        Method::GET,
        &edge.url("/k/1.ts"),
        &[("range", "bytes=10-19")],
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 206);
    assert_eq!(r.body, body_of(1000, 4).slice(10..20));
    let r = fetch(
        &c,
        Method::HEAD,
        &edge.url("/k/1.ts"),
        &[],
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert_eq!(
        (r.status.as_u16(), r.header("content-length")),
        (200, "1000")
    );
    assert!(
        r.header("cache-status").contains("; hit; ttl="),
        "{}",
        r.header("cache-status")
    );
    let r = fetch(
        &c,
        Method::POST,
        &edge.url("/k/1.ts"),
        &[],
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 405);
}

/// Under overload, new joins (multivariant playlists) are shed with 503 + Retry-After while
/// segment requests of viewers already watching still get through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_sheds_new_joins_first() {
    let origin = FakeOrigin::start().await;
    let gate = Gate::new();
    let mut slow = Script::ok(Bytes::new(), "video/mp2t", "max-age=60");
    slow.chunks = vec![Chunk {
        data: body_of(1000, 1),
        gate: Some(gate.clone()),
    }];
    for i in 0..3 {
        origin.route(&format!("/o/{i}.ts"), slow.clone());
    }
    origin.route(
        "/o/4.ts",
        Script::ok(body_of(10, 1), "video/mp2t", "max-age=60"),
    );
    origin.route(
        "/o/master.m3u8",
        Script::ok("#EXTM3U\n", "application/vnd.apple.mpegurl", "max-age=60"),
    );
    let edge = start_edge(
        &format!("{EDGE}[overload]\nmax_active = 5\nnew_joins_above = 2\n"),
        &[origin.url()],
    )
    .await;
    let c = new_client(Duration::from_secs(30));
    let holders: Vec<_> = (0..3)
        .map(|i| {
            let (c, url) = (c.clone(), edge.url(&format!("/o/{i}.ts")));
            tokio::spawn(async move { get(&c, &url).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let m = get(&c, &edge.url("/o/master.m3u8")).await;
    assert_eq!(m.status, 503);
    assert_eq!(m.header("retry-after"), "1");
    assert_eq!(
        get(&c, &edge.url("/o/4.ts")).await.status,
        200,
        "a watching viewer's segment still passes"
    );
    gate.open();
    for h in holders {
        assert_eq!(h.await.unwrap().status, 200);
    }
    assert_eq!(get(&c, &edge.url("/o/master.m3u8")).await.status, 200);
    let metrics =
        String::from_utf8(get(&c, &edge.admin_url("/metrics")).await.body.to_vec()).unwrap();
    assert!(
        metrics.contains("edge_shed_total{reason=\"new_join\"} 1"),
        "{metrics}"
    );
}

/// The edge speaks HTTP/2 (prior knowledge, as h2c clients do) as well as HTTP/1.1, with the
/// same coalescing and cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_http2() {
    let origin = FakeOrigin::start().await;
    origin.route(
        "/h2/1.ts",
        Script::ok(body_of(70_000, 6), "video/mp2t", "max-age=60"),
    );
    let edge = start_edge(EDGE, &[origin.url()]).await;
    let client: hyper_util::client::legacy::Client<_, service::Body> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .http2_only(true)
            .build_http();
    for phase in ["miss", "hit"] {
        let req = Request::builder()
            .uri(edge.url("/h2/1.ts"))
            .body(service::body::empty())
            .unwrap();
        let resp = client.request(req).await.unwrap();
        assert_eq!(resp.version(), http::Version::HTTP_2);
        assert_eq!(
            (
                resp.status().as_u16(),
                resp.headers()["x-cache"].to_str().unwrap()
            ),
            (200, phase)
        );
        assert_eq!(
            resp.into_body().collect().await.unwrap().to_bytes(),
            body_of(70_000, 6)
        );
    }
    assert_eq!(origin.hits("/h2/1.ts"), 1);
}

/// On shutdown (SIGTERM in the binary) the edge stops accepting at once and lets requests in
/// flight finish within the drain deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_requests_in_flight() {
    let origin = FakeOrigin::start().await;
    let gate = Gate::new();
    let mut s = Script::ok(Bytes::new(), "video/mp2t", "max-age=60");
    s.chunks = vec![
        Chunk {
            data: body_of(1000, 1),
            gate: None,
        },
        Chunk {
            data: body_of(1000, 2),
            gate: Some(gate.clone()),
        },
    ];
    origin.route("/d/1.ts", s);
    let edge = start_edge(
        &format!("[server]\ndrain_timeout = \"5s\"\n{EDGE}"),
        &[origin.url()],
    )
    .await;
    let (url, addr) = (edge.url("/d/1.ts"), edge.addr);
    let c = new_client(Duration::from_secs(30));
    let inflight = tokio::spawn({
        let c = c.clone();
        async move { fetch(&c, Method::GET, &url, &[], Duration::from_secs(10)).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(edge); // the shutdown signal
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no new connections while draining"
    );
    gate.open();
    let r = inflight.await.unwrap().unwrap();
    assert_eq!(r.status, 200);
    let mut want = body_of(1000, 1).to_vec();
    want.extend_from_slice(&body_of(1000, 2));
    assert_eq!(r.body, Bytes::from(want));
}

/// Two caches in a chain (edge → shield → origin): every hop appends itself to `Via` and to
/// `Cache-Status` (closest to the origin first) instead of overwriting them; a request that
/// already passed a node gets 508 there, and an edge whose upstream is itself stops at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_of_caches_lists_every_hop_and_refuses_loops() {
    let origin = FakeOrigin::start().await;
    origin.route(
        "/live/x/1.ts",
        Script::ok(body_of(10_000, 1), "video/mp2t", "max-age=60"),
    );
    let shield = start_edge(&format!("node_id = \"shield-b\"\n{EDGE}"), &[origin.url()]).await;
    let edge = start_edge(&format!("node_id = \"edge-a\"\n{EDGE}"), &[shield.url("")]).await;
    let c = new_client(Duration::from_secs(10));
    let r = get(&c, &edge.url("/live/x/1.ts")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("via"), "1.1 shield-b, 1.1 edge-a");
    assert_eq!(
        r.header("cache-status"),
        "shield-b; fwd=miss; fwd-status=200, edge-a; fwd=miss; fwd-status=200"
    );
    let hit = get(&c, &edge.url("/live/x/1.ts")).await;
    assert!(
        hit.header("cache-status")
            .ends_with(", edge-a; hit; ttl=59")
            || hit
                .header("cache-status")
                .ends_with(", edge-a; hit; ttl=60"),
        "{}",
        hit.header("cache-status")
    );
    assert_eq!(origin.hits("/live/x/1.ts"), 1);
    // A request that already passed edge-a (a misconfigured peer sent it back) is refused.
    let looped = e2e::get_with(
        &c,
        &edge.url("/live/x/2.ts"),
        &[("via", "1.1 edge-a, 1.1 other")],
    )
    .await;
    assert_eq!(looped.status, 508);
    // An edge whose upstream is itself: each inner request is refused at once, so the
    // viewer gets an error within the deadline, not an endless recursion.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let cfg = edge::config::Config::parse(
        "loop.toml",
        &format!(
            "listen = \"127.0.0.1:{port}\"\nnode_id = \"self-loop\"\n[upstream]\nurls = [\"http://127.0.0.1:{port}\"]\ndeadline = \"3s\"\n"
        ),
    )
    .unwrap();
    let tcp = service::bind(([127, 0, 0, 1], port).into(), 128).unwrap();
    let _stop = e2e::run_edge_on(
        edge::Sockets {
            viewers: vec![service::Listener { tcp, tls: None }],
            admin: None,
        },
        cfg,
        None,
        None,
    );
    let started = Instant::now();
    let r = get(&c, &format!("http://127.0.0.1:{port}/live/x/3.ts")).await;
    assert!(r.status.is_server_error(), "{}", r.status);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

/// A shield pool (`upstream.pick = "hashed"`): each object has one owner among the shields,
/// the same for every edge whatever the order of its list; when an owner dies, its objects
/// go to their next owner, again the same for every edge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hashed_pool_gives_every_object_one_owner_for_all_edges() {
    let mut shields = Vec::new();
    for _ in 0..3 {
        shields.push(FakeOrigin::start().await);
    }
    for s in &shields {
        for i in 0..60 {
            s.route(
                &format!("/live/x/{i}.ts"),
                Script::ok(body_of(1_000, i as u8), "video/mp2t", "max-age=60"),
            );
        }
    }
    let urls: Vec<String> = shields.iter().map(|s| s.url()).collect();
    let reversed: Vec<String> = urls.iter().rev().cloned().collect();
    let pool = EDGE.replace("[upstream.health]", "pick = \"hashed\"\n[upstream.health]");
    let a = start_edge(&pool, &urls).await;
    let b = start_edge(&pool, &reversed).await;
    let c = new_client(Duration::from_secs(10));
    // Healthy-first ordering depends on what each edge has seen: start when both see all
    // three shields healthy (in steady state every edge sees the same).
    for e in [&a, &b] {
        let mut healthy = 0;
        for _ in 0..100 {
            let m =
                String::from_utf8_lossy(&get(&c, &e.admin_url("/metrics")).await.body).into_owned();
            healthy = m
                .lines()
                .filter(|l| l.starts_with("edge_upstream_healthy{") && l.ends_with(" 1"))
                .count();
            if healthy == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(healthy, 3);
    }
    let owners = |range: std::ops::Range<usize>, shields: &[FakeOrigin]| {
        range
            .map(|i| {
                let p = format!("/live/x/{i}.ts");
                shields
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.hits(&p) > 0)
                    .map(|(k, _)| k)
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
    };
    for i in 0..30 {
        for e in [&a, &b] {
            assert_eq!(
                get(&c, &e.url(&format!("/live/x/{i}.ts"))).await.status,
                200
            );
        }
    }
    let first = owners(0..30, &shields);
    for (i, o) in first.iter().enumerate() {
        assert_eq!(o.len(), 1, "object {i} fetched from {o:?}");
    }
    let per_shield: Vec<usize> = (0..3)
        .map(|k| first.iter().filter(|o| o[0] == k).count())
        .collect();
    assert!(per_shield.iter().all(|&n| n >= 3), "{per_shield:?}");
    // Shield 0 dies: its objects go to their next owner, the same for both edges.
    shields[0].kill();
    for i in 30..60 {
        for e in [&a, &b] {
            let r = get(&c, &e.url(&format!("/live/x/{i}.ts"))).await;
            assert_eq!(r.status, 200, "object {i}");
        }
    }
    for (i, o) in owners(30..60, &shields).iter().enumerate() {
        assert_eq!(o.len(), 1, "object {} fetched from {o:?}", i + 30);
        assert_ne!(o[0], 0);
    }
}

/// What a viewer saw polling one edge: each newly listed segment's cache phase.
async fn watch_new_segments(c: &HttpClient, base: &str, for_: Duration) -> Vec<(String, String)> {
    let pl_url = format!("{base}/live/demo/144p/index.m3u8");
    let mut seen: Option<String> = None;
    let mut phases = Vec::new();
    let end = Instant::now() + for_;
    while Instant::now() < end {
        let pl = get(c, &pl_url).await;
        assert_eq!(pl.status, 200);
        let text = String::from_utf8(pl.body.to_vec()).unwrap();
        let segs: Vec<&str> = text.lines().filter(|l| l.ends_with(".ts")).collect();
        // Everything after the last segment this viewer knew, as a player would fetch it.
        let new: Vec<&str> = match &seen {
            None => vec![],
            Some(last) => match segs.iter().position(|s| s == last) {
                Some(i) => segs[i + 1..].to_vec(),
                None => segs.clone(),
            },
        };
        for s in &new {
            let r = get(c, &format!("{base}/live/demo/144p/{s}")).await;
            assert_eq!(r.status, 200);
            phases.push((s.to_string(), r.header("x-cache").to_string()));
        }
        seen = segs.last().map(|s| s.to_string());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    phases
}

/// Pre-warming: a refreshed media playlist's new segments are fetched before the viewer
/// asks, so it hits (or joins the fetch already under way) where an edge without
/// pre-warming misses; each is fetched once; unread ones count as wasted when they leave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newly_listed_segments_are_fetched_before_viewers_ask() {
    let origin = start_origin("[[streams]]\nname = \"demo\"\nsource = \"loop\"\n").await;
    let c = new_client(Duration::from_secs(30));
    wait_ok(&c, &origin.url("/readyz"), Duration::from_secs(20)).await;
    let token = "prefetch-test-token-0123";
    let warm = start_edge(
        &format!("{EDGE}[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{token}\"\n"),
        &[origin.url("")],
    )
    .await;
    let cold = start_edge(
        &format!("{EDGE}[prefetch]\nenabled = false\n"),
        &[origin.url("")],
    )
    .await;
    let (wu, ku) = (warm.url(""), cold.url(""));
    let (w, k) = tokio::join!(
        watch_new_segments(&c, &wu, Duration::from_secs(9)),
        watch_new_segments(&c, &ku, Duration::from_secs(9)),
    );
    assert!(
        w.len() >= 3 && k.len() >= 3,
        "too few new segments: {w:?} {k:?}"
    );
    assert!(
        w.iter().all(|(_, p)| p == "hit" || p == "coalesced"),
        "pre-warmed edge: {w:?}"
    );
    assert!(
        k.iter().all(|(_, p)| p == "miss"),
        "edge without pre-warming: {k:?}"
    );
    let m = get(&c, &warm.admin_url("/metrics")).await;
    let m = String::from_utf8(m.body.to_vec()).unwrap();
    let fetched = e2e::sample(&m, "edge_upstream_fetches_total{kind=\"segment\"} ");
    let prefetched = e2e::sample(&m, "edge_prefetched_total ");
    let used = e2e::sample(&m, "edge_prefetched_used_total ");
    // One fetch per segment: the prefetch, never a second one for the viewer.
    assert_eq!(fetched, w.len() as f64, "{m}");
    assert_eq!((prefetched, used), (fetched, fetched), "{m}");
    let km = get(&c, &cold.admin_url("/metrics")).await;
    let km = String::from_utf8(km.body.to_vec()).unwrap();
    assert_eq!(e2e::sample(&km, "edge_prefetched_total "), 0.0, "{km}");

    // A viewer that only reads the playlist: what is prefetched for it goes unread, and
    // counts as wasted once it leaves the cache.
    let pl_url = warm.url("/live/demo/144p/index.m3u8");
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end {
        assert_eq!(get(&c, &pl_url).await.status, 200);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let purge = fetch(
        &c,
        Method::POST,
        &warm.admin_url("/purge?prefix=/live/"),
        &[("authorization", &format!("Bearer {token}"))],
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert_eq!(purge.status, 200);
    let m = get(&c, &warm.admin_url("/metrics")).await;
    let m = String::from_utf8(m.body.to_vec()).unwrap();
    let prefetched2 = e2e::sample(&m, "edge_prefetched_total ");
    let wasted = e2e::sample(&m, "edge_prefetched_wasted_total ");
    assert!(prefetched2 >= prefetched + 2.0, "{m}");
    assert_eq!(wasted, prefetched2 - prefetched, "{m}");
    assert_eq!(e2e::sample(&m, "edge_prefetched_used_total "), used, "{m}");
}

/// A shield pool behind one name (`upstream.resolve_interval`, as a Kubernetes headless
/// Service): the name stands for one upstream per address, followed as the answer changes;
/// a node that appears takes back its objects gradually (`ramp_in`) and no other object
/// moves; a node that leaves the answer gets nothing more; a failed lookup keeps the pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolved_pool_follows_its_name_and_ramps_in_a_new_node() {
    use edge::upstream::Upstreams;
    let mut shields = [
        FakeOrigin::start().await,
        FakeOrigin::start().await,
        FakeOrigin::start().await,
    ];
    let answer = Arc::new(std::sync::Mutex::new(Some(vec![
        shields[0].addr,
        shields[1].addr,
    ])));
    let looked_up = answer.clone();
    let resolver: edge::upstream::Resolver = Arc::new(move |name: String| {
        assert_eq!(name, "shields.live.svc:8080");
        let a = looked_up.lock().unwrap().clone();
        Box::pin(async move { a.ok_or_else(|| std::io::Error::other("SERVFAIL")) })
    });
    let cfg = edge::config::Config::parse(
        "pool.toml",
        "[upstream]\nurls = [\"http://shields.live.svc:8080\"]\npick = \"hashed\"\n\
         resolve_interval = \"1s\"\nramp_in = \"4s\"\n[upstream.health]\ninterval = \"100ms\"\n",
    )
    .unwrap();
    let metrics = Arc::new(edge::metrics::Metrics::new().unwrap());
    let pool = Arc::new(
        Upstreams::new(
            &cfg.upstream,
            new_client(Duration::from_secs(5)),
            metrics.clone(),
            None,
        )
        .with_resolver(resolver),
    );
    let checks = tokio::spawn(pool.clone().check_health());
    let addrs: Vec<String> = shields.iter().map(|s| s.addr.to_string()).collect();
    let names = |n: usize| addrs[n].clone();
    let listed = |want: usize| {
        let pool = pool.clone();
        async move {
            for _ in 0..100 {
                let l = pool.list();
                if l.len() == want && l.iter().all(|u| u.is_healthy()) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("pool never had {want} healthy upstreams: {:?}", pool.list());
        }
    };
    let owners = || {
        let pool = pool.clone();
        async move {
            let via = http::HeaderValue::from_static("1.1 test");
            let mut o = Vec::new();
            for i in 0..600 {
                let key = edge::key::normalize(&format!("/live/o/{i}.ts"), &[]).unwrap();
                let (_, u) = pool.fetch(&key, Method::GET, &via).await.unwrap();
                o.push(u.name.clone());
            }
            o
        }
    };
    let share = |o: &[String], n: usize| {
        o.iter().filter(|x| **x == names(n)).count() as f64 / o.len() as f64
    };

    listed(2).await;
    let before = owners().await;
    assert!(
        (0.4..0.6).contains(&share(&before, 0)) && (0.4..0.6).contains(&share(&before, 1)),
        "two nodes split the objects"
    );
    *answer.lock().unwrap() = Some(shields.iter().map(|s| s.addr).collect());
    listed(3).await;
    let early = owners().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mid = owners().await;
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let after = owners().await;
    let (e, m, a) = (share(&early, 2), share(&mid, 2), share(&after, 2));
    assert!(
        e < 0.15 && e <= m && m <= a && m < a && (0.25..0.42).contains(&a),
        "the new node's share ramps up: {e} {m} {a}"
    );
    for (i, (b, x)) in before.iter().zip(&after).enumerate() {
        assert!(
            b == x || *x == names(2),
            "object {i} moved from {b} to {x}, not to the new node"
        );
    }

    // A failed lookup keeps the pool as it was.
    *answer.lock().unwrap() = None;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(pool.list().len(), 3);
    assert!(metrics.upstream_resolve_failures.get() >= 1);

    // A node gone from the answer gets nothing more, though it still runs.
    *answer.lock().unwrap() = Some(vec![shields[1].addr, shields[2].addr]);
    listed(2).await;
    let gone = owners().await;
    assert_eq!(share(&gone, 0), 0.0);
    assert!(
        after
            .iter()
            .zip(&gone)
            .all(|(a, g)| a == g || *a == names(0)),
        "only the gone node's objects moved"
    );

    // A node that fails and comes back (same address) is ramped back in too.
    shields[1].kill();
    let addr1 = shields[1].addr;
    for _ in 0..100 {
        if pool.list().iter().any(|u| !u.is_healthy()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shields[1] = FakeOrigin::start_on(addr1).await;
    listed(2).await;
    let back = share(&owners().await, 1);
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let settled = share(&owners().await, 1);
    assert!(
        back < 0.25 && (0.4..0.6).contains(&settled),
        "the recovered node's share ramps up: {back} then {settled}"
    );
    checks.abort();
}
