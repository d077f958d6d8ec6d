//! The origin over real HTTP: playlists, segments, headers, errors, ingest and bad input.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use origin::config::Config;
use origin::tsmux::{TsWriter, synthetic};
use service::client::{Fetched, HttpClient, fetch, new_client};
use tokio::sync::oneshot;

struct Origin {
    addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

async fn start(toml: &str) -> Origin {
    let cfg = Config::parse("test.toml", toml).expect("config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        origin::run(listener, cfg, async move {
            let _ = rx.await;
        })
        .await
        .expect("origin run");
    });
    Origin { addr, _stop: tx }
}

const DEMO: &str = "[[streams]]\nname = \"demo\"\nsource = \"loop\"\n";

async fn get(c: &HttpClient, url: &str, headers: &[(&str, &str)]) -> Fetched {
    fetch(c, Method::GET, url, headers, Duration::from_secs(10))
        .await
        .unwrap()
}

async fn wait_ready(c: &HttpClient, o: &Origin) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(r) = fetch(
            c,
            Method::GET,
            &format!("http://{}/readyz", o.addr),
            &[],
            Duration::from_secs(1),
        )
        .await
            && r.status == StatusCode::OK
        {
            return;
        }
        assert!(Instant::now() < deadline, "origin not ready in 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn media(text: &Bytes) -> m3u8_rs::MediaPlaylist {
    m3u8_rs::parse_media_playlist_res(text).expect("media playlist parses with m3u8-rs")
}

#[tokio::test]
async fn loop_stream_serves_conformant_playlists_and_segments() {
    let o = start(DEMO).await;
    let c = new_client(Duration::from_secs(30));
    wait_ready(&c, &o).await;
    let base = format!("http://{}/live/demo", o.addr);

    let m = get(&c, &format!("{base}/master.m3u8"), &[]).await;
    assert_eq!(m.status, 200);
    assert_eq!(m.header("content-type"), "application/vnd.apple.mpegurl");
    let master = m3u8_rs::parse_master_playlist_res(&m.body).expect("master parses");
    assert_eq!(master.variants.len(), 3);
    assert!(master.independent_segments);
    let v = &master.variants[0];
    assert_eq!(v.codecs.as_deref(), Some("avc1.4d401e,mp4a.40.2"));
    assert_eq!(v.resolution.map(|r| (r.width, r.height)), Some((640, 360)));
    assert_eq!(v.frame_rate, Some(25.0));
    assert!(
        v.bandwidth >= v.average_bandwidth.unwrap() && v.bandwidth > 700_000,
        "{v:?}"
    );

    let mut newest = Vec::new();
    for v in &master.variants {
        let r = get(&c, &format!("{base}/{}", v.uri), &[]).await;
        // Regression: stale-while-revalidate reached browsers, whose HTTP cache then handed
        // hls.js at each reload the copy its previous reload had fetched. Only the CDN's
        // field (RFC 9213) lets a cache serve a live playlist stale.
        assert_eq!(r.header("cache-control"), "public, max-age=1");
        assert_eq!(
            r.header("cdn-cache-control"),
            "max-age=1, stale-while-revalidate=2, stale-if-error=12"
        );
        let pl = media(&r.body);
        assert_eq!(pl.target_duration, 2);
        assert_eq!(pl.segments.len(), 6);
        // Numbers derive from media time, which counts from the Unix epoch.
        let pdt = pl.segments[0].program_date_time.unwrap().timestamp_millis();
        assert_eq!(pl.media_sequence as i64 * 2000, pdt);
        assert!(pl.segments.iter().all(|s| (s.duration - 2.0).abs() < 1e-6));
        newest.push(pl.media_sequence + 5);
    }
    assert!(newest.iter().max().unwrap() - newest.iter().min().unwrap() <= 1);

    let msn = newest[0];
    let url = format!("{base}/360p/{msn}.ts");
    let s = get(&c, &url, &[]).await;
    assert_eq!(s.status, 200);
    assert_eq!(s.header("content-type"), "video/mp2t");
    assert_eq!(
        s.header("cache-control"),
        "public, max-age=31536000, immutable"
    );
    assert_eq!(s.header("access-control-allow-origin"), "*");
    assert!(s.body.len() > 100_000 && s.body.len() % 188 == 0 && s.body[0] == 0x47);
    let etag = s.header("etag").to_string();

    let h = fetch(&c, Method::HEAD, &url, &[], Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(h.status, 200);
    assert!(h.body.is_empty());
    assert_eq!(h.header("content-length"), s.body.len().to_string());

    let r = get(&c, &url, &[("range", "bytes=188-375")]).await;
    assert_eq!(r.status, 206);
    assert_eq!(&r.body[..], &s.body[188..376]);
    assert_eq!(
        r.header("content-range"),
        format!("bytes 188-375/{}", s.body.len())
    );
    let r = get(&c, &url, &[("range", "bytes=99999999-")]).await;
    assert_eq!(r.status, 416);
    // If-Range (RFC 9110 §13.1.5): a matching validator keeps the range; one that does not
    // match gets the whole 200 (regression: it got 206).
    let lm = s.header("last-modified").to_string();
    for (cond, status) in [
        (etag.as_str(), 206),
        (lm.as_str(), 206),
        ("\"stale\"", 200),
        ("Thu, 01 Jan 1970 00:00:00 GMT", 200),
    ] {
        let r = get(&c, &url, &[("range", "bytes=188-375"), ("if-range", cond)]).await;
        assert_eq!(r.status, status, "If-Range: {cond}");
        if status == 200 {
            assert_eq!(r.body, s.body);
        }
    }

    let r = get(&c, &url, &[("if-none-match", &etag)]).await;
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());

    // Errors: each with a status and a reason.
    for (path, status) in [
        ("/live/nope/master.m3u8", 404),
        ("/live/demo/999p/index.m3u8", 404),
        (&format!("/live/demo/360p/{}.ts", msn + 100) as &str, 404),
        ("/live/demo/360p/3.ts", 404),
        ("/live/demo/360p/1.2.ts", 404),
        ("/live/../etc/passwd", 400),
        ("/live/demo/360p/%2e%2e.ts", 400),
        ("/live/demo/360p/01.ts", 400),
        ("/live/demo/360p/x.ts", 400),
        ("/nothing", 404),
    ] {
        let r = get(&c, &format!("http://{}{path}", o.addr), &[]).await;
        assert_eq!(r.status.as_u16(), status, "{path}");
        assert!(!r.body.is_empty(), "{path} has a reason");
    }
    let r = get(&c, &format!("{base}/360p/{}.ts", msn + 100), &[]).await;
    assert_eq!(r.header("cache-control"), "max-age=1");
    let r = fetch(&c, Method::DELETE, &url, &[], Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(r.status, 405);

    let metrics = get(&c, &format!("http://{}/metrics", o.addr), &[]).await;
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.contains("origin_segments_published_total{rendition=\"360p\",stream=\"demo\"}"),
        "{text}"
    );
    assert!(text.contains("origin_build_info"));
    assert_eq!(
        get(&c, &format!("http://{}/healthz", o.addr), &[])
            .await
            .status,
        200
    );
}

/// Two origins started at different moments publish the same names with the same bytes,
/// so an edge can fail over between them mid-stream.
#[tokio::test]
async fn two_origins_publish_identical_segments() {
    let a = start(DEMO).await;
    let c = new_client(Duration::from_secs(30));
    wait_ready(&c, &a).await;
    tokio::time::sleep(Duration::from_millis(2300)).await;
    let b = start(DEMO).await;
    wait_ready(&c, &b).await;
    let pa = media(
        &get(
            &c,
            &format!("http://{}/live/demo/240p/index.m3u8", a.addr),
            &[],
        )
        .await
        .body,
    );
    let pb = media(
        &get(
            &c,
            &format!("http://{}/live/demo/240p/index.m3u8", b.addr),
            &[],
        )
        .await
        .body,
    );
    let common: Vec<_> = pa
        .segments
        .iter()
        .filter(|s| pb.segments.iter().any(|t| t.uri == s.uri))
        .collect();
    assert!(common.len() >= 4, "{} common segments", common.len());
    for s in common {
        let x = get(
            &c,
            &format!("http://{}/live/demo/240p/{}", a.addr, s.uri),
            &[],
        )
        .await;
        let y = get(
            &c,
            &format!("http://{}/live/demo/240p/{}", b.addr, s.uri),
            &[],
        )
        .await;
        assert_eq!(x.header("etag"), y.header("etag"), "{}", s.uri);
        assert_eq!(x.body, y.body, "{}", s.uri);
    }
}

const PUSH: &str = "[ingest]\nmax_lead = \"8s\"\nidle_timeout = \"2s\"\n\n[[streams]]\nname = \"in\"\nsource = \"push\"\nwindow = 3\nendlist_after = \"1s\"\n[[streams.renditions]]\nname = \"a\"\n[[streams.renditions]]\nname = \"b\"\n\n[[streams]]\nname = \"demo\"\nsource = \"loop\"\n";

async fn push(c: &HttpClient, url: &str, body: Vec<u8>) -> Fetched {
    push_with(c, url, &[], body).await
}

#[tokio::test]
async fn ingest_survives_bad_input_and_refuses_abuse() {
    let o = start(PUSH).await;
    let c = new_client(Duration::from_secs(30));
    let ingest = |r: &str| format!("http://{}/ingest/in/{r}", o.addr);

    // Garbage: accepted and counted, nothing published, nothing crashes.
    let r = push(
        &c,
        &ingest("a"),
        b"\x47 this is not a transport stream at all ".repeat(500),
    )
    .await;
    assert_eq!(r.status, 204);
    // A clean 3 s stream (below max_lead): published.
    let r = push(&c, &ingest("a"), synthetic(0, 3, 25, 3600, 400)).await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let pl = get(&c, &format!("http://{}/live/in/a/index.m3u8", o.addr), &[]).await;
    assert_eq!(pl.status, 200);
    // 25-frame GOPs of 1 s against a 2 s target: segments of two GOPs.
    let parsed = media(&pl.body);
    assert_eq!(
        parsed.segments.len(),
        2,
        "{}",
        String::from_utf8_lossy(&pl.body)
    );
    // Numbers follow media time, which live input places on the wall clock at its arrival.
    let wall_msn = (now_ms() / 2000) as u64;
    assert!(
        parsed.media_sequence.abs_diff(wall_msn) <= 2,
        "{} vs {wall_msn}",
        parsed.media_sequence
    );

    // Faster than real time: 60 s of media in one go.
    let r = push(&c, &ingest("b"), synthetic(0, 30, 50, 3600, 100)).await;
    assert_eq!(r.status, 429, "{}", String::from_utf8_lossy(&r.body));
    assert!(String::from_utf8_lossy(&r.body).contains("real time"));

    // Wrong places.
    assert_eq!(
        push(&c, &format!("http://{}/ingest/in/zzz", o.addr), vec![])
            .await
            .status,
        404
    );
    assert_eq!(
        push(&c, &format!("http://{}/ingest/demo/360p", o.addr), vec![])
            .await
            .status,
        409
    );
    assert_eq!(
        push(&c, &format!("http://{}/ingest/in", o.addr), vec![])
            .await
            .status,
        400
    );
    let r = fetch(&c, Method::GET, &ingest("a"), &[], Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(r.status, 405);

    // The loop stream next door is unaffected.
    wait_ready_stream(&c, &o, "demo").await;
    let metrics = String::from_utf8_lossy(
        &get(&c, &format!("http://{}/metrics", o.addr), &[])
            .await
            .body,
    )
    .into_owned();
    assert!(
        metrics.contains(
            "origin_input_errors_total{kind=\"sync_lost\",rendition=\"a\",stream=\"in\"}"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("origin_ingest_rejected_total{reason=\"too_fast\",stream=\"in\"} 1"),
        "{metrics}"
    );
}

async fn wait_ready_stream(c: &HttpClient, o: &Origin, stream: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(
        c,
        &format!("http://{}/live/{stream}/master.m3u8", o.addr),
        &[],
    )
    .await
    .status
        != 200
    {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A push that drops mid-segment publishes what it had (minus the broken frame); the encoder
/// reconnecting with reset timestamps continues the numbering after a discontinuity; a
/// second concurrent push is refused; the stream ends with ENDLIST once the input is gone.
/// A push in progress: its response, once the server answers.
type Pushing = tokio::task::JoinHandle<
    Result<http::Response<hyper::body::Incoming>, hyper_util::client::legacy::Error>,
>;

/// Starts a PUT to `url` whose body the caller streams through the returned sender.
fn streaming_push(
    c: &HttpClient,
    url: &str,
) -> (
    http_body_util::channel::Sender<Bytes, std::io::Error>,
    Pushing,
) {
    let (tx, body) = http_body_util::channel::Channel::<Bytes, std::io::Error>::new(4);
    let body = body
        .map_err(|e| Box::new(e) as service::body::BodyError)
        .boxed_unsync();
    let req = Request::builder()
        .method(Method::PUT)
        .uri(url)
        .body(body)
        .unwrap();
    let c = c.clone();
    (tx, tokio::spawn(async move { c.request(req).await }))
}

#[tokio::test]
async fn dropped_push_reconnect_and_end() {
    let o = start(PUSH).await;
    let c = new_client(Duration::from_secs(30));
    let url = format!("http://{}/ingest/in/a", o.addr);
    let (mut tx, first) = streaming_push(&c, &url);
    let data = synthetic(900_000, 3, 50, 3600, 800); // 6 s starting at PTS 10 s
    let cut = data.len() - 188 * 40; // inside the last GOP's last frames
    for chunk in data[..cut].chunks(188 * 50) {
        tx.send_data(Bytes::copy_from_slice(chunk)).await.unwrap();
    }
    // Give the server time to consume what was sent, then check a rival push is refused.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rival = push(&c, &url, vec![]).await;
    assert_eq!(rival.status, 409);
    tx.abort(std::io::Error::other("encoder crashed"));
    let _ = first.await;

    let pl = media(
        &get(&c, &format!("http://{}/live/in/a/index.m3u8", o.addr), &[])
            .await
            .body,
    );
    let durs: Vec<f32> = pl.segments.iter().map(|s| s.duration).collect();
    // The first number is the arrival's wall clock over 2 s (media time is anchored there).
    let first = pl.media_sequence;
    assert!(first.abs_diff((now_ms() / 2000) as u64) <= 4, "{first}");
    assert_eq!(durs.len(), 3, "{durs:?}");
    assert!(
        (durs[2] - 2.0).abs() > 0.01 && durs[2] > 1.0,
        "the partial segment is shorter: {durs:?}"
    );

    // The encoder restarts from PTS 0: a discontinuity, numbers carry on. (One GOP only: the
    // first push, sent at once, left the media ~6 s ahead of the wall clock, and 4 s more
    // right away would be stamped beyond max_lead, 8 s, in the future.)
    let r = push(&c, &url, synthetic(0, 1, 50, 3600, 800)).await;
    assert_eq!(r.status, 204);
    let text = get(&c, &format!("http://{}/live/in/a/index.m3u8", o.addr), &[])
        .await
        .body;
    let pl = media(&text);
    let msns: Vec<u64> = (0..pl.segments.len() as u64)
        .map(|i| pl.media_sequence + i)
        .collect();
    assert_eq!(
        msns,
        vec![first + 1, first + 2, first + 3],
        "{}",
        String::from_utf8_lossy(&text)
    );
    assert!(
        pl.segments[2].discontinuity,
        "{}",
        String::from_utf8_lossy(&text)
    );
    assert!(!pl.end_list);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let pl = media(
        &get(&c, &format!("http://{}/live/in/a/index.m3u8", o.addr), &[])
            .await
            .body,
    );
    assert!(pl.end_list, "ENDLIST after endlist_after without input");
    assert_eq!(push(&c, &url, vec![]).await.status, 409);
    let _ = TsWriter::new();
}

/// A segment that outgrows `ingest.max_segment_bytes` (an input without usable keyframes)
/// ends the push with 413; what came before stays published.
#[tokio::test]
async fn oversized_segment_ends_the_push_with_413() {
    let o = start("[ingest]\nmax_segment_bytes = 200000\n\n[[streams]]\nname = \"in\"\nsource = \"push\"\n[[streams.renditions]]\nname = \"a\"\n").await;
    let c = new_client(Duration::from_secs(30));
    // Two normal GOPs, then one with 20 KB frames: ~1 MB before the next keyframe.
    let mut data = synthetic(0, 2, 50, 3600, 300);
    data.extend(synthetic(2 * 180_000, 1, 50, 3600, 20_000));
    let r = push(&c, &format!("http://{}/ingest/in/a", o.addr), data).await;
    assert_eq!(r.status, 413, "{}", String::from_utf8_lossy(&r.body));
    let pl = media(
        &get(&c, &format!("http://{}/live/in/a/index.m3u8", o.addr), &[])
            .await
            .body,
    );
    assert!(pl.segments.len() >= 2, "{pl:?}");
}

/// The shutdown future stops the server: `run` returns and the port closes.
#[tokio::test]
async fn shutdown_returns_and_closes_the_port() {
    let cfg = Config::parse("t.toml", DEMO).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(origin::run(listener, cfg, async move {
        let _ = rx.await;
    }));
    let c = new_client(Duration::from_millis(10));
    assert_eq!(
        get(&c, &format!("http://{addr}/healthz"), &[]).await.status,
        200
    );
    drop(c); // no idle keep-alive connection to drain
    tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("run returned")
        .unwrap()
        .unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

/// Item 13: ffmpeg closes its connection right after the last chunk without reading the
/// reply; the push still completed, so it must still be counted in
/// `origin_http_requests_total{kind="ingest"}`.
#[tokio::test]
async fn push_whose_client_leaves_without_the_reply_is_counted() {
    use tokio::io::AsyncWriteExt;
    let o = start(PUSH).await;
    let c = new_client(Duration::from_secs(30));
    let data = synthetic(0, 3, 25, 3600, 400);
    let mut sock = tokio::net::TcpStream::connect(o.addr).await.unwrap();
    let head = format!(
        "PUT /ingest/in/a HTTP/1.1\r\nhost: {}\r\ntransfer-encoding: chunked\r\n\r\n",
        o.addr
    );
    sock.write_all(head.as_bytes()).await.unwrap();
    for chunk in data.chunks(188 * 7) {
        sock.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .await
            .unwrap();
        sock.write_all(chunk).await.unwrap();
        sock.write_all(b"\r\n").await.unwrap();
    }
    sock.write_all(b"0\r\n\r\n").await.unwrap();
    drop(sock); // like ffmpeg: gone without reading the reply
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let metrics = String::from_utf8_lossy(
            &get(&c, &format!("http://{}/metrics", o.addr), &[])
                .await
                .body,
        )
        .into_owned();
        if metrics.contains("origin_http_requests_total{kind=\"ingest\",status=\"204\"} 1") {
            assert!(
                metrics.contains("origin_http_request_duration_seconds_count{kind=\"ingest\"} 1"),
                "{metrics}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the completed push was never counted:\n{}",
            metrics
                .lines()
                .filter(|l| l.starts_with("origin_http_requests_total")
                    || l.starts_with("origin_segments_published_total"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

async fn playlist(c: &HttpClient, o: &Origin, path: &str) -> (m3u8_rs::MediaPlaylist, String) {
    let body = get(c, &format!("http://{}{path}", o.addr), &[]).await.body;
    (media(&body), String::from_utf8_lossy(&body).into_owned())
}

const LIVE: &str = "[ingest]\nmax_lead = \"8s\"\nidle_timeout = \"1s\"\n\n[[streams]]\nname = \"in\"\nsource = \"push\"\nwindow = 6\n[[streams.renditions]]\nname = \"a\"\n";

/// Item 8: after the encoder stops for a while and restarts (timestamps from 0), the first new
/// segment carries EXT-X-DISCONTINUITY and a PROGRAM-DATE-TIME re-anchored to when its input
/// arrived, not the old media's end (which left PDT behind by the whole outage); numbers
/// carry on forward.
#[tokio::test]
async fn input_gap_re_anchors_program_date_time_to_the_arrival() {
    let o = start(LIVE).await;
    let c = new_client(Duration::from_secs(30));
    let url = format!("http://{}/ingest/in/a", o.addr);
    // 2 s of media (two 1 s GOPs: one segment), then a 4 s outage.
    assert_eq!(
        push(&c, &url, synthetic(0, 2, 25, 3600, 400)).await.status,
        204
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    let arrival = now_ms();
    assert_eq!(
        push(&c, &url, synthetic(0, 2, 25, 3600, 400)).await.status,
        204
    );
    let (pl, text) = playlist(&c, &o, "/live/in/a/index.m3u8").await;
    assert_eq!(pl.segments.len(), 2, "{text}");
    let after = &pl.segments[1];
    assert!(after.discontinuity, "{text}");
    let pdt = after.program_date_time.unwrap().timestamp_millis();
    assert!(
        (pdt - arrival).abs() < 500,
        "first segment after the gap is stamped {} ms from its arrival:\n{text}",
        pdt - arrival
    );
    let before = pl.segments[0].program_date_time.unwrap().timestamp_millis();
    assert!(pdt > before, "PDT moves forward: {text}");
}

/// Pushes `data` to rendition `in/a` of `o` (expecting 204) and reads its playlist.
async fn push_then_list(
    c: &HttpClient,
    o: &Origin,
    data: Vec<u8>,
) -> (m3u8_rs::MediaPlaylist, String) {
    let r = push(c, &format!("http://{}/ingest/in/a", o.addr), data).await;
    assert_eq!(r.status, 204);
    playlist(c, o, "/live/in/a/index.m3u8").await
}

/// Item 8: an origin restarted while its encoder also restarted (timestamps from 0 again)
/// must not publish a name the previous run used for other content: caches hold segments
/// `immutable` for a year (OvenMediaEngine#769). Numbers follow media time anchored to the
/// wall clock, so they only move forward.
#[tokio::test]
async fn origin_restart_never_reuses_a_segment_name() {
    let c = new_client(Duration::from_secs(30));
    let a = start(LIVE).await;
    let (pa, ta) = push_then_list(&c, &a, synthetic(0, 2, 50, 3600, 400)).await;
    let last_a = pa.media_sequence + pa.segments.len() as u64 - 1;
    drop(a);
    // The previous run's input was 4 s ahead of real time when it ended (it was pushed at
    // once); a real-time encoder is not. Restart once that lead has passed.
    tokio::time::sleep(Duration::from_millis(4200)).await;
    let b = start(LIVE).await;
    let (pb, tb) = push_then_list(&c, &b, synthetic(0, 2, 50, 3600, 900)).await;
    assert!(
        pb.media_sequence > last_a,
        "restart reused names:\nbefore:\n{ta}\nafter:\n{tb}"
    );
}

/// Item 8: UDP input sent faster than real time gets the same `ingest.max_lead` as a push:
/// what runs further ahead is dropped and counted, so no segment is stamped in the future
/// (it was stamped up to 61 s ahead).
#[tokio::test]
async fn udp_input_ahead_of_real_time_is_dropped_and_counted() {
    let port = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    };
    let o = start(&format!(
        "[ingest]\nmax_lead = \"4s\"\n\n[[streams]]\nname = \"sat\"\nsource = \"udp\"\nwindow = 30\n[[streams.renditions]]\nname = \"a\"\nudp = \"127.0.0.1:{port}\"\n"
    ))
    .await;
    let c = new_client(Duration::from_secs(30));
    let tx = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    // 60 s of media in well under a second.
    let data = synthetic(0, 30, 50, 3600, 100);
    for (i, d) in data.chunks(1316).enumerate() {
        tx.send_to(d, ("127.0.0.1", port)).await.unwrap();
        if i % 16 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let sent = now_ms();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (pl, text) = playlist(&c, &o, "/live/sat/a/index.m3u8").await;
    let last = pl.segments.last().unwrap();
    let end = last.program_date_time.unwrap().timestamp_millis() + (last.duration * 1000.0) as i64;
    assert!(
        end - sent <= 4_000 + 500,
        "media stamped {} ms in the future:\n{text}",
        end - sent
    );
    let metrics = String::from_utf8_lossy(
        &get(&c, &format!("http://{}/metrics", o.addr), &[])
            .await
            .body,
    )
    .into_owned();
    assert!(
        metrics.contains("origin_ingest_rejected_total{reason=\"too_fast\",stream=\"sat\"}"),
        "{metrics}"
    );
}

async fn push_with(c: &HttpClient, url: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Fetched {
    let mut req = Request::builder().method(Method::PUT).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = c
        .request(req.body(service::body::full(body)).unwrap())
        .await
        .unwrap();
    let (parts, body) = resp.into_parts();
    Fetched {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

/// Item 14: a stream with an ingest secret takes pushes only with it, as a bearer token or a
/// `token` query parameter; missing is 401, wrong is 403, each counted with its reason.
#[tokio::test]
async fn ingest_secret_is_required_when_configured() {
    let o = start("[[streams]]\nname = \"in\"\nsource = \"push\"\ningest_secret = \"0123456789abcdef\"\n[[streams.renditions]]\nname = \"a\"\n").await;
    let c = new_client(Duration::from_secs(30));
    let url = format!("http://{}/ingest/in/a", o.addr);
    let data = || synthetic(0, 1, 25, 3600, 400);
    let r = push_with(&c, &url, &[], data()).await;
    assert_eq!(r.status, 401, "{:?}", r.body);
    assert!(r.header("www-authenticate").starts_with("Bearer"));
    let r = push_with(
        &c,
        &url,
        &[("authorization", "Bearer 0123456789abcdeX")],
        data(),
    )
    .await;
    assert_eq!(r.status, 403);
    let r = push_with(&c, &format!("{url}?token=nope"), &[], data()).await;
    assert_eq!(r.status, 403);
    let r = push_with(
        &c,
        &url,
        &[("authorization", "Bearer 0123456789abcdef")],
        data(),
    )
    .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let r = push_with(
        &c,
        &format!("{url}?token=0123456789abcdef"),
        &[],
        synthetic(90_000, 1, 25, 3600, 400),
    )
    .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let metrics = String::from_utf8_lossy(
        &get(&c, &format!("http://{}/metrics", o.addr), &[])
            .await
            .body,
    )
    .into_owned();
    assert!(
        metrics
            .contains("origin_ingest_rejected_total{reason=\"unauthenticated\",stream=\"in\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("origin_ingest_rejected_total{reason=\"forbidden\",stream=\"in\"} 2"),
        "{metrics}"
    );
}

/// Item 14: a push that trickles bytes without media progress (188 bytes every 300 ms, under
/// `idle_timeout` of 1 s apart) is dropped after `idle_timeout` like a silent one, with 408,
/// instead of holding the rendition so the real encoder gets 409.
#[tokio::test]
async fn a_trickle_cannot_hold_a_rendition() {
    let o = start(LIVE).await;
    let c = new_client(Duration::from_secs(30));
    let url = format!("http://{}/ingest/in/a", o.addr);
    let started = Instant::now();
    let (mut tx, squatter) = streaming_push(&c, &url);
    let trickle = tokio::spawn(async move {
        for _ in 0..20 {
            if tx
                .send_data(Bytes::from_static(&[0x47; 188]))
                .await
                .is_err()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    let status = squatter.await.unwrap().unwrap().status();
    trickle.abort();
    assert_eq!(status, 408);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "held the rendition for {:?}",
        started.elapsed()
    );
    // The real encoder gets in.
    let r = push(&c, &url, synthetic(0, 1, 25, 3600, 400)).await;
    assert_eq!(r.status, 204);
}

/// Regression (hardening item 1): sockets that connect and never send a byte were never
/// closed, so 10,000 of them locked the origin out (`max_connections`). Now a connection
/// must send a request within `header_read_timeout`, and one address holds at most
/// `max_connections_per_client`: a client from another address is served at once.
#[tokio::test]
async fn silent_sockets_cannot_lock_the_origin_out() {
    let o = start(&format!(
        "[server]\nmax_connections = 40\nmax_connections_per_client = 20\nheader_read_timeout = \"1s\"\n{DEMO}"
    ))
    .await;
    let mut silent = Vec::new();
    for _ in 0..60 {
        silent.push(tokio::net::TcpStream::connect(o.addr).await.unwrap());
    }
    let other: HttpClient =
        service::client::new_client_from(Duration::from_secs(30), [127, 0, 0, 2].into());
    let r = fetch(
        &other,
        Method::GET,
        &format!("http://{}/healthz", o.addr),
        &[],
        Duration::from_secs(2),
    )
    .await
    .expect("served despite 60 silent sockets");
    assert_eq!(r.status, 200);
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let m = get(&other, &format!("http://{}/metrics", o.addr), &[]).await;
    let text = String::from_utf8_lossy(&m.body);
    assert!(
        text.contains("origin_connections_cut_total{reason=\"idle\"} 20"),
        "{text}"
    );
    assert!(
        text.contains("origin_connections_cut_total{reason=\"client_connections\"} 40"),
        "{text}"
    );
}
