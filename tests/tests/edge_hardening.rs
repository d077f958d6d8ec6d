//! The edge against hostile or careless upstreams and clients: each test here is a probe that
//! once broke the edge (see the hardening issue), kept as a regression test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bytes::Bytes;
use e2e::fake_origin::{FakeOrigin, Script};
use e2e::{body_of, get, get_with, sample, start_edge};
use http::Method;
use service::client::{HttpClient, fetch, new_client};

const EDGE: &str = "[upstream]\nurls = [\"http://127.0.0.1:9\"]\nhead_timeout = \"2s\"\ndeadline = \"3s\"\n[upstream.health]\ninterval = \"200ms\"\n";

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
    let m = get(&c, &edge.admin_url("/metrics")).await;
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
    let m = get(&c, &edge.admin_url("/metrics")).await;
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

/// The edge's Prometheus text.
async fn metrics(c: &HttpClient, edge: &e2e::TestEdge) -> String {
    String::from_utf8_lossy(&get(c, &edge.admin_url("/metrics")).await.body).into_owned()
}

/// A client whose connections come from `ip` (another loopback address than the attacker's
/// 127.0.0.1, as a viewer on another host would).
fn client_from(ip: [u8; 4]) -> HttpClient {
    service::client::new_client_from(Duration::from_secs(30), std::net::IpAddr::from(ip))
}

/// An origin serving one cached 100 KB segment at `/live/x/1.ts`, and an edge with `server`
/// and `overload` tables in front of it.
async fn edge_with(extra: &str) -> (FakeOrigin, e2e::TestEdge) {
    let origin = FakeOrigin::start().await;
    origin.route(
        "/live/x/1.ts",
        Script::ok(body_of(100_000, 3), "video/mp2t", "max-age=600"),
    );
    let edge = start_edge(&format!("{extra}\n{EDGE}"), &[origin.url()]).await;
    (origin, edge)
}

/// Item 1: sockets that connect and send nothing were never closed (`header_read_timeout`
/// starts at the first byte), so they took every connection slot and new viewers timed out.
/// Now a connection must send its first request within `header_read_timeout`, and one
/// address holds at most `max_connections_per_client` connections: a viewer from another
/// address is served at once, and the silent sockets are closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_sockets_are_cut_and_other_viewers_are_served() {
    service::server::raise_fd_limit();
    let (_origin, edge) = edge_with(
        "[server]\nheader_read_timeout = \"1s\"\nmax_connections = 300\nmax_connections_per_client = 100\n[overload]\nmax_active = 200\nnew_joins_above = 100\n",
    )
    .await;
    let mut silent = Vec::new();
    for _ in 0..500 {
        silent.push(tokio::net::TcpStream::connect(edge.addr).await.unwrap());
    }
    let viewer = client_from([127, 0, 0, 2]);
    let started = std::time::Instant::now();
    let r = tokio::time::timeout(
        Duration::from_secs(3),
        get(&viewer, &edge.url("/live/x/1.ts")),
    )
    .await
    .expect("a viewer from another address is served despite 500 silent sockets");
    assert_eq!(r.status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    // Within header_read_timeout (1 s) plus a watchdog round, every silent socket is closed.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let mut closed = 0;
    for s in &mut silent {
        let mut b = [0u8; 1];
        use tokio::io::AsyncReadExt;
        match tokio::time::timeout(Duration::from_millis(50), s.read(&mut b)).await {
            Ok(Ok(0)) | Ok(Err(_)) => closed += 1,
            _ => {}
        }
    }
    assert_eq!(closed, 500, "every silent socket closed by the edge");
    let m = metrics(&viewer, &edge).await;
    assert_eq!(
        sample(
            &m,
            "edge_connections_cut_total{reason=\"client_connections\"}"
        ),
        400.0,
        "{m}"
    );
    assert_eq!(
        sample(&m, "edge_connections_cut_total{reason=\"idle\"}"),
        100.0,
        "{m}"
    );
}

/// Opens `n` HTTP/2 streams for `path` on one prior-knowledge connection that never grants
/// flow-control window, so no response body can make progress. Returns how many got each
/// status, and the connection (kept open while the caller looks).
async fn zero_window_streams(
    edge: &e2e::Running,
    path: &str,
    n: usize,
) -> (
    std::collections::BTreeMap<u16, usize>,
    tokio::task::JoinHandle<()>,
    Vec<h2::RecvStream>,
) {
    let tcp = tokio::net::TcpStream::connect(edge.addr).await.unwrap();
    let (mut client, conn) = h2::client::Builder::new()
        .initial_window_size(0)
        .handshake::<_, Bytes>(tcp)
        .await
        .unwrap();
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut pending = Vec::new();
    for _ in 0..n {
        let req = http::Request::get(format!("http://{}{path}", edge.addr))
            .body(())
            .unwrap();
        client = client.ready().await.unwrap();
        let (resp, _) = client.send_request(req, true).unwrap();
        pending.push(resp);
    }
    let mut statuses = std::collections::BTreeMap::new();
    let mut bodies = Vec::new();
    for p in pending {
        let r = p.await.unwrap();
        *statuses.entry(r.status().as_u16()).or_default() += 1;
        bodies.push(r.into_body());
    }
    (statuses, driver, bodies)
}

/// Item 2: HTTP/2 streams that never open their flow-control window held admission slots
/// forever (two connections filled `max_active = 400`, everyone got 503). Now a response
/// whose data is not taken for `send_timeout` closes its connection and gives the slots back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_window_http2_streams_give_their_slots_back() {
    let (_origin, edge) = edge_with(
        "[server]\nsend_timeout = \"2s\"\nmax_connections = 1000\n[overload]\nmax_active = 40\nnew_joins_above = 30\n",
    )
    .await;
    let viewer = client_from([127, 0, 0, 2]);
    assert_eq!(get(&viewer, &edge.url("/live/x/1.ts")).await.status, 200);
    let (statuses, _conn, _bodies) = zero_window_streams(&edge, "/live/x/1.ts", 60).await;
    assert_eq!(statuses.get(&200), Some(&40), "{statuses:?}");
    assert_eq!(
        get(&viewer, &edge.url("/live/x/1.ts")).await.status,
        503,
        "the stalled streams hold every slot for now"
    );
    let started = std::time::Instant::now();
    loop {
        let r = get(&viewer, &edge.url("/live/x/1.ts")).await;
        if r.status == 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(6),
            "slots never came back: {}",
            r.status
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let m = metrics(&viewer, &edge).await;
    assert_eq!(
        sample(&m, "edge_connections_cut_total{reason=\"send_stall\"}"),
        1.0,
        "{m}"
    );
    assert_eq!(sample(&m, "edge_active_requests "), 0.0, "{m}");
}

/// Item 2: one client address may have at most `max_requests_per_client` requests in
/// progress; more get 429 at once, and other viewers are not shed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_take_every_admission_slot() {
    let (_origin, edge) = edge_with(
        "[server]\nmax_requests_per_client = 20\nmax_connections = 1000\n[overload]\nmax_active = 40\nnew_joins_above = 30\n",
    )
    .await;
    let (statuses, _conn, _bodies) = zero_window_streams(&edge, "/live/x/1.ts", 60).await;
    assert_eq!(statuses.get(&200), Some(&20), "{statuses:?}");
    assert_eq!(statuses.get(&429), Some(&40), "{statuses:?}");
    let viewer = client_from([127, 0, 0, 2]);
    for _ in 0..5 {
        assert_eq!(get(&viewer, &edge.url("/live/x/1.ts")).await.status, 200);
    }
    let m = metrics(&viewer, &edge).await;
    assert_eq!(
        sample(&m, "edge_connections_cut_total{reason=\"client_requests\"}"),
        40.0,
        "{m}"
    );
}

/// Item 12: a slow reader of a cached object stopped counting as active as soon as its whole
/// body was handed to the connection (the README says a request counts until its body is
/// sent). Now cached bodies go out in frames: the request counts while the client is still
/// reading, and a client that stops reading is cut after `send_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_of_a_cached_object_counts_as_active() {
    let origin = FakeOrigin::start().await;
    let big = body_of(32 << 20, 5);
    origin.route(
        "/live/x/big.ts",
        Script::ok(big.clone(), "video/mp2t", "max-age=600"),
    );
    let edge = start_edge(
        &format!("[server]\nsend_timeout = \"2s\"\n{EDGE}"),
        &[origin.url()],
    )
    .await;
    let c = new_client(Duration::from_secs(30));
    assert_eq!(
        get(&c, &edge.url("/live/x/big.ts")).await.body.len(),
        big.len()
    );
    use tokio::io::AsyncWriteExt;
    let mut slow = tokio::net::TcpStream::connect(edge.addr).await.unwrap();
    slow.write_all(b"GET /live/x/big.ts HTTP/1.1\r\nhost: edge\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let m = metrics(&c, &edge).await;
    assert_eq!(
        sample(&m, "edge_active_requests "),
        1.0,
        "a reader mid-body is active:\n{m}"
    );
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let m = metrics(&c, &edge).await;
    assert_eq!(sample(&m, "edge_active_requests "), 0.0, "{m}");
    assert_eq!(
        sample(&m, "edge_connections_cut_total{reason=\"send_stall\"}"),
        1.0,
        "{m}"
    );
}

/// This process's resident memory, bytes.
fn rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
}

/// Item 5: a body larger than `cache.max_object_bytes` was still held whole for its
/// readers (eight slow clients of 200 MiB objects: 1.84 GB RSS, 1.71 GB after they left).
/// Now it streams through with bounded buffering: slow readers hold the upstream back
/// instead of the edge's memory, and every byte still arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_too_large_to_store_streams_through_in_bounded_memory() {
    let origin = FakeOrigin::start().await;
    // 2 x 128 MiB, made of one 1 MiB buffer shared by every chunk (the fake origin itself
    // holds 1 MiB).
    let unit = body_of(1 << 20, 11);
    for name in ["a", "b"] {
        let mut s = Script::ok(Bytes::new(), "video/mp2t", "max-age=600");
        s.chunks = (0..128)
            .map(|_| e2e::fake_origin::Chunk {
                data: unit.clone(),
                gate: None,
            })
            .collect();
        origin.route(&format!("/vod/{name}.ts"), s);
    }
    let edge = start_edge(
        &format!("[cache]\nmax_object_bytes = 8388608\n{EDGE}"),
        &[origin.url()],
    )
    .await;
    let before = rss();
    // Two slow readers per object: each reads 2 MiB, then stops for a while.
    let mut readers = Vec::new();
    for name in ["a", "b", "a", "b"] {
        let req = http::Request::get(edge.url(&format!("/vod/{name}.ts")))
            .body(service::body::empty())
            .unwrap();
        let resp = new_client(Duration::from_secs(30))
            .request(req)
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let mut body = resp.into_body();
        let mut got = 0;
        while got < 2 << 20 {
            use http_body_util::BodyExt;
            got += body
                .frame()
                .await
                .unwrap()
                .unwrap()
                .into_data()
                .unwrap()
                .len();
        }
        readers.push((body, got));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let grown = rss().saturating_sub(before);
    assert!(
        grown < 100 << 20,
        "RSS grew {} MiB while 4 readers of 128 MiB bodies paused",
        grown >> 20
    );
    // Every byte of both still arrives, in order.
    let tasks: Vec<_> = readers
        .into_iter()
        .map(|(mut body, mut got)| {
            let unit = unit.clone();
            tokio::spawn(async move {
                use http_body_util::BodyExt;
                while let Some(f) = body.frame().await {
                    let d = f.unwrap().into_data().unwrap();
                    let off = got % unit.len();
                    let n = d.len().min(unit.len() - off);
                    assert_eq!(&d[..n], &unit[off..off + n], "bytes at {got}");
                    got += d.len();
                }
                got
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 128 << 20);
    }
    let c = new_client(Duration::from_secs(30));
    let m = metrics(&c, &edge).await;
    assert_eq!(sample(&m, "edge_cache_objects "), 0.0, "not stored: {m}");
}

/// Item 5: a body that drips a little now and then (1 KiB every 2 s) passed the idle
/// timeout and was fetched forever. Now `upstream.min_body_rate` ends it: the client's body
/// breaks off and nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dripping_upstream_body_is_cut_by_the_minimum_rate() {
    let origin = FakeOrigin::start().await;
    let gates: Vec<_> = (0..40).map(|_| e2e::fake_origin::Gate::new()).collect();
    let mut s = Script::ok(Bytes::new(), "video/mp2t", "max-age=600");
    s.content_length = false;
    s.chunks = gates
        .iter()
        .map(|g| e2e::fake_origin::Chunk {
            data: Bytes::from(vec![1u8; 1024]),
            gate: Some(g.clone()),
        })
        .collect();
    origin.route("/live/x/drip.ts", s);
    let dripper = tokio::spawn(async move {
        for g in gates {
            g.open();
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    let edge = start_edge(
        "[upstream]\nurls = [\"http://127.0.0.1:9\"]\nmin_body_rate = 65536\n",
        &[origin.url()],
    )
    .await;
    let c = new_client(Duration::from_secs(30));
    let started = std::time::Instant::now();
    let r = fetch(
        &c,
        Method::GET,
        &edge.url("/live/x/drip.ts"),
        &[],
        Duration::from_secs(15),
    )
    .await;
    assert!(
        matches!(r, Err(service::client::FetchError::Body(_))),
        "the body breaks off: {r:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "cut within one rate window: {:?}",
        started.elapsed()
    );
    dripper.abort();
}

/// Counts WARN events from the edge's own modules.
struct Warnings(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Warnings {
    fn on_event(&self, e: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if *e.metadata().level() == tracing::Level::WARN
            && e.metadata().target().starts_with("edge")
        {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// Item 15: with the upstream down and the breaker open, the edge logged one warning per
/// failed fetch (5,151 in one session). Now repeated warnings are logged at most once per
/// 5 s per kind, with the count suppressed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_upstream_does_not_flood_the_log() {
    use tracing_subscriber::layer::SubscriberExt;
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let subscriber = tracing_subscriber::registry().with(Warnings(count.clone()));
    // nextest runs each test in its own process, so this sees only this test's edge.
    let _ = tracing::subscriber::set_global_default(subscriber);
    let mut origin = FakeOrigin::start().await;
    let url = origin.url();
    origin.kill();
    let edge = start_edge(EDGE, &[url]).await;
    let c = new_client(Duration::from_secs(30));
    for i in 0..200 {
        let r = get(&c, &edge.url(&format!("/live/x/{i}.ts"))).await;
        assert!(r.status.is_server_error());
    }
    let warned = count.load(std::sync::atomic::Ordering::Relaxed);
    assert!(warned <= 10, "{warned} warnings for 200 failed fetches");
}

/// The access log (issue 10): one JSON line per response with every field, CMCD included,
/// written off the request path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_lines_parse_with_every_field() {
    let origin = FakeOrigin::start().await;
    origin.route(
        "/live/x/360p/1.ts",
        Script::ok(body_of(4000, 2), "video/mp2t", "max-age=60"),
    );
    let path = std::env::temp_dir().join(format!("edge-access-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let edge = start_edge(
        &format!("[access_log]\npath = {path:?}\n{EDGE}"),
        &[origin.url()],
    )
    .await;
    let c = new_client(Duration::from_secs(30));
    let url = edge.url("/live/x/360p/1.ts?CMCD=br%3D800%2Csid%3D%22abc%22%2Cbs");
    assert_eq!(get(&c, &url).await.status, 200);
    assert_eq!(
        get_with(
            &c,
            &edge.url("/live/x/360p/1.ts"),
            &[("cmcd-session", "sid=\"abc\",st=l")]
        )
        .await
        .status,
        200
    );
    assert_eq!(get(&c, &edge.url("/live/x/360p/9.ts")).await.status, 404);
    let mut lines = Vec::new();
    for _ in 0..100 {
        lines = std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        if lines.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(lines.len(), 3, "{lines:?}");
    let v: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for f in [
        "time",
        "client",
        "method",
        "path",
        "protocol",
        "status",
        "bytes",
        "ttfb_ms",
        "last_byte_ms",
        "cache",
        "user_agent",
    ] {
        assert!(v.iter().all(|x| !x[f].is_null()), "field {f} in {lines:?}");
    }
    assert_eq!(v[0]["cache"], "miss");
    assert_eq!(v[0]["bytes"], 4000);
    assert_eq!(v[0]["upstream_status"], 200);
    assert_eq!(v[0]["cmcd"]["br"], "800");
    assert_eq!(v[0]["cmcd"]["sid"], "abc");
    assert_eq!(v[0]["cmcd"]["bs"], "true");
    assert_eq!(v[1]["cache"], "hit");
    assert_eq!(v[1]["cmcd"]["st"], "l");
    assert_eq!(v[2]["status"], 404);
    assert_eq!(v[0]["protocol"], "HTTP/1.1");
}
