//! Live players against the real origin + edge in-process: a bandwidth step-down makes them
//! switch down without stalling while their buffer allows it, and a forced outage of the
//! link produces exactly one stall each, seen identically in sessions and `/metrics`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use player_sim::demo::Stack;
use player_sim::join::Join;
use player_sim::live::{self, Metrics, Population, RunResult, Settings, Shared};
use player_sim::schedule;

fn population(url: &str, abr: &str, bandwidth: &str, players: usize, secs: u64) -> Population {
    let mut schedule = schedule::parse(bandwidth, 10.0, secs as f64 * 1000.0).unwrap();
    schedule.name = bandwidth.into();
    Population {
        url: url.into(),
        players,
        duration: Duration::from_secs(secs),
        abr: abr.into(),
        schedule,
        vary: 0.0,
        join: Join::AllAtOnce,
        exit: None,
        record: players,
    }
}

async fn run(pop: Population, settings: Settings) -> (RunResult, Metrics) {
    run_with(pop, settings, Metrics::new().unwrap()).await
}

async fn run_with(pop: Population, settings: Settings, metrics: Metrics) -> (RunResult, Metrics) {
    let shared = Arc::new(Shared {
        client: service::client::new_client(Duration::from_secs(30)),
        metrics: metrics.clone(),
        settings,
    });
    (live::run(&pop, shared, false).await, metrics)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn step_down_switches_down_without_stalling_and_an_outage_stalls_exactly_once() {
    if std::env::var_os("RUST_LOG").is_some() {
        service::telemetry::init_tracing();
    }
    let stack = Stack::start(Duration::from_secs(60)).await.unwrap();
    let url = stack.master_url();
    // The ladder is ~390/600/1000 kbit/s. At 800 kbit/s the top rung no longer fits
    // (hls.js keeps a rung only while it is ≤ 0.95 × the estimate); each top-rung segment
    // costs 2.5 s for 2 s of media. Holding back 5 target durations, a player has ~6 s
    // buffered when it asks for a segment: room for the estimate to catch up (3 segments).
    // (At the RFC's minimum of 3 it has ~2.3 s, and the same step stalls it.)
    let step = population(&url, "throughput", "3000kbps@0s,800kbps@14s", 3, 32);
    let step_settings = Settings {
        live_sync_segments: 5,
        ..Settings::default()
    };
    // Lowest rung pinned; the link all but stops from 12 s to 24 s: the ~6 s buffer runs dry
    // once, and playback resumes when the link comes back.
    let outage = population(&url, "fixed", "3000kbps@0s,1kbps@12s,3000kbps@24s", 3, 32);
    // /metrics while the outage population runs: mid-outage (t = 20 s) all three are stalled.
    let outage_metrics = Metrics::new().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let addr = live::serve_metrics(
        "127.0.0.1:0".parse().unwrap(),
        outage_metrics.clone(),
        async move {
            let _ = stopped.await;
        },
    )
    .await
    .unwrap();
    let scrape = async {
        tokio::time::sleep(Duration::from_secs(20)).await;
        let c = service::client::new_client(Duration::from_secs(5));
        let url = format!("http://{addr}/metrics");
        let r = service::client::fetch(&c, http::Method::GET, &url, &[], Duration::from_secs(5))
            .await
            .unwrap();
        String::from_utf8(r.body.to_vec()).unwrap()
    };
    let ((step, _), (outage, outage_metrics), mid) = tokio::join!(
        run(step, step_settings),
        run_with(outage, Settings::default(), outage_metrics),
        scrape
    );
    let _ = stop.send(());
    assert!(mid.contains("player_active 3"), "{mid}");
    assert!(mid.contains("player_stalled 3"), "{mid}");
    assert!(mid.contains("player_startup_seconds_count 3"), "{mid}");

    for o in &step.outcomes {
        let s = &o.session;
        assert!(s.error.is_none(), "player {}: {:?}", s.id, s.error);
        let top = o.ladder_kbps.len() - 1;
        assert!(
            o.steps
                .iter()
                .any(|x| x.at_ms < 14_000.0 && x.quality == top),
            "player {} reached the top rung before the step: {:?}",
            s.id,
            o.steps
        );
        assert!(
            o.steps
                .iter()
                .any(|x| x.at_ms > 14_000.0 && x.quality < top),
            "player {} switched down after the step: {:?}",
            s.id,
            o.steps
        );
        assert_eq!(
            s.rebuffer_count, 0,
            "player {} stalled: {s:?} {:#?}",
            s.id, o.steps
        );
        assert!(s.switches >= 2, "{s:?}");
        let lat = s.latency_s.expect("latency from PROGRAM-DATE-TIME");
        assert!((3.0..15.0).contains(&lat), "live latency {lat}");
    }

    let mut stalls = 0;
    for o in &outage.outcomes {
        let s = &o.session;
        assert!(s.error.is_none(), "player {}: {:?}", s.id, s.error);
        assert_eq!(s.rebuffer_count, 1, "player {}: {s:?} {:?}", s.id, o.steps);
        // Dry at 12 s + the buffer then (2–7 s: ~2 s when the playlist reload that would
        // have listed the next segment falls just inside the outage, so the stall's length
        // comes in 2 s steps with the origin's segment phase), back at 24 s + one fast
        // segment. What must hold whatever the phase: the stall ends with the first segment
        // after the link returns, and it lasts no longer than the outage.
        assert!(
            (3.0..12.0).contains(&s.rebuffer_s),
            "stall of {} s",
            s.rebuffer_s
        );
        let resumed: Vec<f64> = o
            .steps
            .iter()
            .filter(|x| x.stall_ms > 0.0)
            .map(|x| x.at_ms + x.download_ms)
            .collect();
        assert!(
            resumed.len() == 1 && (24_000.0..25_000.0).contains(&resumed[0]),
            "player {}: the stall ended at {resumed:?} ms, not with the first segment after \
             the link came back at 24 s: {:?}",
            s.id,
            o.steps
        );
        assert!(s.switches == 0 && s.avg_bitrate_kbps < 450.0, "{s:?}");
        stalls += s.rebuffer_count;
    }
    assert_eq!(outage_metrics.rebuffers.get(), u64::from(stalls));
    let total: f64 = outage.outcomes.iter().map(|o| o.session.rebuffer_s).sum();
    assert!((outage_metrics.rebuffer_seconds.get() - total).abs() < 1e-6);
    assert_eq!(outage_metrics.active.get(), 0);
    assert_eq!(outage_metrics.stalled.get(), 0);
}

fn vod_origin_routes(o: &e2e::fake_origin::FakeOrigin) {
    use e2e::fake_origin::Script;
    o.route(
        "/v/master.m3u8",
        Script::ok(
            "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=400000\nmedia.m3u8\n",
            "application/vnd.apple.mpegurl",
            "max-age=1",
        ),
    );
    let mut pl = String::from(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n",
    );
    for i in 0..4 {
        pl.push_str(&format!("#EXTINF:2.000,\ns{i}.ts\n"));
    }
    pl.push_str("#EXT-X-ENDLIST\n");
    o.route(
        "/v/media.m3u8",
        Script::ok(pl, "application/vnd.apple.mpegurl", "max-age=1"),
    );
    for i in 0..4 {
        o.route(
            &format!("/v/s{i}.ts"),
            Script::ok(vec![0x47u8; 188 * 100], "video/mp2t", "max-age=60"),
        );
    }
}

fn refusal(status: u16, retry_after: Option<&str>) -> e2e::fake_origin::Script {
    let mut s = e2e::fake_origin::Script::ok("no\n", "text/plain", "no-store");
    s.status = status;
    if let Some(r) = retry_after {
        s.headers.push(("retry-after".into(), r.into()));
    }
    s
}

/// 503 + Retry-After is honoured (the retry comes no sooner), a 404 is retried, and a
/// segment that keeps failing ends the session with the reason after `max_retries`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_honour_retry_after_and_give_up_with_the_reason() {
    let o = e2e::fake_origin::FakeOrigin::start().await;
    vod_origin_routes(&o);
    o.route("/v/s1.ts", refusal(503, Some("1")));
    o.route("/v/s2.ts", refusal(404, None));
    let url = format!("{}/v/master.m3u8", o.url());
    let settings = Settings {
        max_retries: 3,
        retry_base: Duration::from_millis(50),
        retry_cap: Duration::from_millis(100),
        ..Settings::default()
    };
    let watcher = async {
        // Heal s1 once it has been refused, then s2 once it has been.
        let mut s1_healed = false;
        loop {
            if !s1_healed && o.hits("/v/s1.ts") >= 1 {
                s1_healed = true;
                vod_origin_routes(&o);
                o.route("/v/s2.ts", refusal(404, None));
            }
            if s1_healed && o.hits("/v/s2.ts") >= 1 {
                vod_origin_routes(&o);
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    let pop = population(&url, "fixed", "5000kbps", 1, 30);
    let ((res, _), ()) = tokio::join!(run(pop, settings.clone()), watcher);
    let o1 = &res.outcomes[0];
    assert!(o1.session.error.is_none(), "{:?}", o1.session.error);
    assert_eq!(o.hits("/v/s1.ts"), 2, "one 503, one retry");
    assert_eq!(o.hits("/v/s2.ts"), 2, "one 404, one retry");
    // The retry of s1 came at least Retry-After (1 s) after the 503: segment 1's download
    // finished ≥ 1 s after segment 0's.
    let s = &o1.steps;
    assert_eq!(s.len(), 4, "{s:?}");
    assert!(
        s[1].at_ms + s[1].download_ms - (s[0].at_ms + s[0].download_ms) >= 1000.0,
        "{s:?}"
    );

    // Now s3 always fails: three retries, then the session ends with the reason.
    vod_origin_routes(&o);
    o.route("/v/s3.ts", refusal(500, None));
    let before = o.hits("/v/s3.ts");
    let (res, metrics) = run(population(&url, "fixed", "5000kbps", 1, 30), settings).await;
    let err = res.outcomes[0].session.error.as_deref().unwrap_or_default();
    assert!(err.contains("s3.ts") && err.contains("500"), "{err}");
    assert_eq!(o.hits("/v/s3.ts") - before, 4, "first try + max_retries");
    assert_eq!(metrics.failed.get(), 1);
    assert_eq!(
        metrics
            .requests
            .with_label_values(&["segment", "5xx"])
            .get(),
        4
    );
}

/// CMCD (CTA-5004) from the players, as a query parameter and as headers: every request a
/// player makes reaches the edge's access log with its session id (seed-id), so log lines
/// join with the simulator's sessions; segments carry the rendition's bitrate, the object
/// type and duration, the first requests the startup flag. The query parameter does not
/// split the cache (one upstream fetch per segment whatever the CMCD).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cmcd_reaches_the_edge_log_in_either_form() {
    let origin = e2e::start_origin("[[streams]]\nname = \"demo\"\nsource = \"loop\"\n").await;
    let c = service::client::new_client(Duration::from_secs(30));
    e2e::wait_ok(&c, &origin.url("/readyz"), Duration::from_secs(20)).await;
    for mode in [
        player_sim::cmcd::Mode::Query,
        player_sim::cmcd::Mode::Headers,
    ] {
        let log = std::env::temp_dir().join(format!("cmcd-{mode:?}-{}.log", std::process::id()));
        let _ = std::fs::remove_file(&log);
        let edge = e2e::start_edge(
            &format!(
                // Pre-warming off: then every upstream segment fetch is a viewer's.
                "[access_log]\npath = {log:?}\n[server]\nmax_connections_per_client = 0\nmax_requests_per_client = 0\n[upstream]\nurls = [\"http://127.0.0.1:9\"]\n[prefetch]\nenabled = false\n"
            ),
            &[origin.url("")],
        )
        .await;
        let pop = population(
            &edge.url("/live/demo/master.m3u8"),
            "throughput",
            "3000kbps",
            2,
            6,
        );
        let settings = Settings {
            cmcd: mode,
            seed: 7,
            ..Settings::default()
        };
        let (r, _) = run(pop, settings).await;
        let player_requests: u64 = r.outcomes.iter().map(|o| o.requests).sum();
        let mut lines: Vec<serde_json::Value> = Vec::new();
        for _ in 0..100 {
            lines = std::fs::read_to_string(&log)
                .unwrap_or_default()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            if lines.len() as u64 >= player_requests {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(lines.len() as u64, player_requests, "{mode:?}");
        for l in &lines {
            let sid = l["cmcd"]["sid"].as_str().unwrap_or("");
            assert!(sid == "7-0" || sid == "7-1", "{mode:?}: {l}");
            assert_eq!(l["cmcd"]["cid"], "/live/demo/master.m3u8", "{l}");
            assert_eq!(l["cmcd"]["st"], "l", "{l}");
        }
        let segments: Vec<_> = lines
            .iter()
            .filter(|l| l["path"].as_str().unwrap_or("").contains(".ts"))
            .collect();
        assert!(!segments.is_empty());
        for s in &segments {
            assert_eq!(s["cmcd"]["ot"], "av", "{s}");
            assert!(
                s["cmcd"]["br"]
                    .as_str()
                    .is_some_and(|b| b.parse::<u32>().unwrap() > 0),
                "{s}"
            );
            assert_eq!(s["cmcd"]["d"], "2000", "{s}");
        }
        // The first request of each session (the master playlist) is a startup request.
        for sid in ["7-0", "7-1"] {
            let first = lines.iter().find(|l| l["cmcd"]["sid"] == sid).unwrap();
            assert_eq!(first["cmcd"]["su"], "true", "{first}");
        }
        // Query CMCD differs per player and per request, yet each segment is fetched once
        // (exactly once: pre-warming is off here, so every fetch is for a viewer).
        let m = e2e::get(&c, &edge.admin_url("/metrics")).await;
        let m = String::from_utf8(m.body.to_vec()).unwrap();
        let fetched = e2e::sample(&m, "edge_upstream_fetches_total{kind=\"segment\"} ");
        let distinct: std::collections::HashSet<&str> = segments
            .iter()
            .map(|s| s["path"].as_str().unwrap().split('?').next().unwrap())
            .collect();
        assert!(
            fetched == distinct.len() as f64,
            "{mode:?}: {fetched} fetches for {} segments",
            distinct.len()
        );
    }
}

/// A VOD ladder of 400/800/1600 kbit/s (BANDWIDTH only), 2 s segments of exactly their
/// nominal size, on a fake origin at `/a/`; the master lists `first` first.
fn ladder_routes(o: &e2e::fake_origin::FakeOrigin, segments: usize, first: usize) {
    use e2e::fake_origin::Script;
    let rungs = [400u64, 800, 1600];
    let mut order: Vec<usize> = vec![first];
    order.extend((0..3).filter(|&r| r != first));
    let mut master = String::from("#EXTM3U\n");
    for r in order {
        master.push_str(&format!(
            "#EXT-X-STREAM-INF:BANDWIDTH={}\nr{r}.m3u8\n",
            rungs[r] * 1000
        ));
    }
    let m3u8 = "application/vnd.apple.mpegurl";
    o.route("/a/master.m3u8", Script::ok(master, m3u8, "max-age=60"));
    for (r, kbps) in rungs.iter().enumerate() {
        let mut pl = String::from(
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n",
        );
        for i in 0..segments {
            pl.push_str(&format!("#EXTINF:2.000,\nr{r}s{i}.ts\n"));
            let bytes = (kbps * 2000 / 8) as usize;
            o.route(
                &format!("/a/r{r}s{i}.ts"),
                Script::ok(vec![0x47u8; bytes], "video/mp2t", "max-age=60"),
            );
        }
        pl.push_str("#EXT-X-ENDLIST\n");
        o.route(&format!("/a/r{r}.m3u8"), Script::ok(pl, m3u8, "max-age=60"));
    }
}

/// The live driver (HTTP through the emulated link) and the offline driver (the network
/// model on a virtual clock) run the same session core, so on the same scripted network they
/// make the same decisions: rung by rung, stall for stall, with startup and every download's
/// time close (the live one also pays real HTTP and two playlist loads).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_and_offline_drivers_agree_on_a_scripted_network() {
    use player_sim::movie::Movie;
    use player_sim::offline;
    use player_sim::trace::Trace;
    let o = e2e::fake_origin::FakeOrigin::start().await;
    let segments = 6;
    let movie = Movie {
        segment_ms: 2000.0,
        bitrates_kbps: vec![400.0, 800.0, 1600.0],
        sizes_bits: vec![vec![800e3, 1600e3, 3200e3]; segments],
    };
    // hls.js starting at the top rung (listed first) on a 1000 kbit/s link, then settling on
    // 800 (0.95 of the estimate); and a controller pinned to the top on a 600 kbit/s link,
    // where every top-rung download is abandoned for the lowest rung after ~1 s.
    for (abr, first, kbps, abandons) in [("hlsjs", 2, 1000, false), ("fixed:2", 2, 600, true)] {
        ladder_routes(&o, segments, first);
        let trace = Trace::parse(
            "scripted",
            &format!(r#"[{{"duration_ms": 600000, "bandwidth_kbps": {kbps}, "latency_ms": 50}}]"#),
        )
        .unwrap();
        let off = offline::run(
            0,
            &movie,
            &trace,
            player_sim::abr::by_name(abr).unwrap(),
            offline::Settings {
                buffer_max_ms: 25_000.0,
                abandon: true,
                first_listed: first,
            },
        );
        let pop = Population {
            url: format!("{}/a/master.m3u8", o.url()),
            players: 1,
            duration: Duration::from_secs(40),
            abr: abr.into(),
            schedule: trace.clone(),
            vary: 0.0,
            join: Join::AllAtOnce,
            exit: None,
            record: 1,
        };
        let settings = Settings {
            buffer_max_ms: 25_000.0,
            start_threshold_ms: 0.0,
            resume_threshold_ms: 0.0,
            ..Settings::default()
        };
        let (res, _) = run(pop, settings).await;
        let live = &res.outcomes[0];
        assert_eq!(live.session.error, None, "{abr}");
        let rungs = |steps: &[offline::Step]| steps.iter().map(|s| s.quality).collect::<Vec<_>>();
        assert_eq!(rungs(&live.steps), rungs(&off.steps), "{abr}: rung by rung");
        assert_eq!(
            live.session.rebuffer_count, off.session.rebuffer_count,
            "{abr}: stalls"
        );
        let near = |a: f64, b: f64, tol: f64| (a - b).abs() <= tol * b.abs().max(1e-9);
        assert!(
            near(live.session.startup_s, off.session.startup_s, 0.15),
            "{abr}: startup live {} offline {}",
            live.session.startup_s,
            off.session.startup_s
        );
        // Each download takes as long (the live one also pays loopback HTTP; the first also
        // follows the playlist loads, which the offline model does not have).
        for (l, f) in live.steps.iter().zip(&off.steps) {
            assert!(
                (l.download_ms - f.download_ms).abs() <= 0.05 * f.download_ms + 100.0,
                "{abr}: segment {}: live {} ms offline {} ms",
                f.segment,
                l.download_ms,
                f.download_ms
            );
        }
        if abandons {
            assert_eq!(
                live.abandoned as usize, segments,
                "{abr}: every top download"
            );
            assert!(rungs(&off.steps).iter().all(|&q| q == 0), "{abr}");
        } else {
            assert_eq!(live.abandoned, 0);
            assert_eq!(rungs(&off.steps)[..3], [2, 1, 1], "{abr}");
        }
    }
}
