//! The origin against real ffmpeg: ffmpeg plays the live loop stream for 12 s without a
//! decode or timestamp complaint; ffmpeg pushes a live ladder over HTTP and UDP and the
//! resulting playlists are correct, aligned and decodable; the independent conformance
//! checker passes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Stdio;
use std::time::Duration;

use e2e::{free_udp_port, repo_root, shared_dir, start_origin, tool, wait_ok};
use http::Method;
use service::client::{fetch, new_client};
use tokio::process::Command;

async fn get_text(url: &str) -> String {
    let c = new_client(Duration::from_secs(5));
    let r = fetch(&c, Method::GET, url, &[], Duration::from_secs(10))
        .await
        .expect(url);
    assert_eq!(r.status, 200, "{url}");
    String::from_utf8(r.body.to_vec()).expect("utf-8 playlist")
}

/// ffmpeg plays every rendition of the live master playlist in real time for 12 s; any line
/// on stderr at warning level (decode errors, non-monotonous DTS, continuity problems) fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_plays_the_live_loop_stream_cleanly() {
    let o = start_origin("[[streams]]\nname = \"demo\"\nsource = \"loop\"\n").await;
    let c = new_client(Duration::from_secs(5));
    wait_ok(&c, &o.url("/readyz"), Duration::from_secs(10)).await;
    let started = std::time::Instant::now();
    let out = Command::new(tool("ffmpeg"))
        .args(["-hide_banner", "-nostdin", "-v", "warning", "-re", "-i"])
        .arg(o.url("/live/demo/master.m3u8"))
        .args(["-map", "0", "-t", "12", "-f", "framecrc", "-"])
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run ffmpeg");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ffmpeg failed: {stderr}");
    assert!(stderr.trim().is_empty(), "ffmpeg complained:\n{stderr}");
    assert!(
        started.elapsed() >= Duration::from_secs(10),
        "not live playback: {:?}",
        started.elapsed()
    );
    // framecrc lines: "stream_index, dts, pts, duration, size, crc". Count decoded frames.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut per_stream = std::collections::BTreeMap::<u32, usize>::new();
    for line in stdout.lines().filter(|l| !l.starts_with('#')) {
        if let Some(idx) = line.split(',').next().and_then(|s| s.trim().parse().ok()) {
            *per_stream.entry(idx).or_default() += 1;
        }
    }
    assert_eq!(
        per_stream.len(),
        6,
        "3 video + 3 audio streams decoded: {per_stream:?}"
    );
    // 12 s at 25 fps = 300 video frames; 12 s of AAC at 48 kHz = 562 frames.
    assert!(per_stream.values().all(|&n| n >= 290), "{per_stream:?}");
}

const LADDER: &str = r#"
[ingest]
idle_timeout = "2s"

[[streams]]
name = "live"
source = "push"
window = 4
endlist_after = "1s"
[[streams.renditions]]
name = "360p"
[[streams.renditions]]
name = "240p"
[[streams.renditions]]
name = "144p"

[[streams]]
name = "sat"
source = "udp"
window = 3
[[streams.renditions]]
name = "144p"
udp = "127.0.0.1:UDP_PORT"
"#;

/// One ffmpeg process encodes a three-rendition ladder live and pushes it to the HTTP ingest
/// at real-time pace, another sends a rendition over UDP; the playlists that come
/// out parse with m3u8-rs, are aligned across renditions and decode cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_pushes_a_live_ladder_over_http_and_udp() {
    let udp_port = free_udp_port();
    let o = start_origin(&LADDER.replace("UDP_PORT", &udp_port.to_string())).await;
    // A live encoder: one ffmpeg encodes a 3-rung ladder with aligned 2 s GOPs in real time
    // and pushes each rung to its ingest URL.
    let mut push = Command::new(tool("ffmpeg"));
    push.args(["-hide_banner", "-nostdin", "-v", "error"])
        .args(["-re", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25"])
        .args([
            "-re",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
        ])
        .args([
            "-filter_complex",
            "[0:v]split=3[a][b][c];[b]scale=426:240[b2];[c]scale=256:144[c2]",
        ]);
    for (label, r, kbps) in [
        ("[a]", "360p", "800k"),
        ("[b2]", "240p", "400k"),
        ("[c2]", "144p", "200k"),
    ] {
        push.args(["-map", label, "-map", "1:a", "-t", "10"])
            .args([
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-tune",
                "zerolatency",
                "-profile:v",
                "main",
            ])
            .args([
                "-g",
                "50",
                "-keyint_min",
                "50",
                "-sc_threshold",
                "0",
                "-b:v",
                kbps,
            ])
            .args([
                "-c:a", "aac", "-b:a", "64k", "-f", "mpegts", "-method", "PUT",
            ])
            .arg(o.url(&format!("/ingest/live/{r}")));
    }
    let fixtures = repo_root().join("origin/fixtures");
    let mut udp = Command::new(tool("ffmpeg"));
    udp.args([
        "-hide_banner",
        "-nostdin",
        "-v",
        "error",
        "-re",
        "-stream_loop",
        "1",
        "-i",
    ])
    .arg(fixtures.join("144p.ts"))
    .args(["-c", "copy", "-f", "mpegts"])
    .arg(format!("udp://127.0.0.1:{udp_port}?pkt_size=1316"));
    let (push, udp) = tokio::join!(
        push.stdin(Stdio::null()).output(),
        udp.stdin(Stdio::null()).output()
    );
    let (push, udp) = (push.expect("ffmpeg push"), udp.expect("ffmpeg udp"));
    assert!(
        push.status.success(),
        "push failed: {}",
        String::from_utf8_lossy(&push.stderr)
    );
    assert!(
        udp.status.success(),
        "udp failed: {}",
        String::from_utf8_lossy(&udp.stderr)
    );

    let master = get_text(&o.url("/live/live/master.m3u8")).await;
    let master = m3u8_rs::parse_master_playlist_res(master.as_bytes()).expect("master parses");
    let got: Vec<_> = master
        .variants
        .iter()
        .map(|v| {
            (
                v.uri.as_str(),
                v.resolution.map(|r| (r.width, r.height)),
                v.codecs.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            // x264 -preset ultrafast: constrained baseline, level chosen per resolution.
            (
                "360p/index.m3u8",
                Some((640, 360)),
                Some("avc1.42c01e,mp4a.40.2")
            ),
            (
                "240p/index.m3u8",
                Some((426, 240)),
                Some("avc1.42c015,mp4a.40.2")
            ),
            (
                "144p/index.m3u8",
                Some((256, 144)),
                Some("avc1.42c00d,mp4a.40.2")
            ),
        ]
    );
    let mut ladders = Vec::new();
    for r in ["360p", "240p", "144p"] {
        let text = get_text(&o.url(&format!("/live/live/{r}/index.m3u8"))).await;
        let pl = m3u8_rs::parse_media_playlist_res(text.as_bytes()).expect("media parses");
        assert_eq!(pl.target_duration, 2, "{text}");
        assert_eq!(pl.segments.len(), 4, "{text}");
        assert!(
            pl.segments
                .iter()
                .all(|s| s.duration > 1.5 && s.duration < 2.5),
            "{text}"
        );
        let rows: Vec<_> = pl
            .segments
            .iter()
            .enumerate()
            .map(|(i, s)| {
                (
                    pl.media_sequence + i as u64,
                    (s.duration * 1000.0).round() as i64,
                    s.program_date_time.map(|p| p.timestamp_millis()),
                )
            })
            .collect();
        ladders.push(rows);
    }
    assert_eq!(ladders[0], ladders[1], "360p and 240p aligned");
    assert_eq!(ladders[0], ladders[2], "360p and 144p aligned");

    // The UDP stream made segments too.
    let sat = get_text(&o.url("/live/sat/144p/index.m3u8")).await;
    let sat = m3u8_rs::parse_media_playlist_res(sat.as_bytes()).expect("udp playlist parses");
    assert!(sat.segments.len() >= 3, "{sat:?}");

    // Once the push has been gone for endlist_after, the playlists end, and ffmpeg decodes the
    // whole window of every rendition without complaint.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for r in ["360p", "240p", "144p"] {
        let text = get_text(&o.url(&format!("/live/live/{r}/index.m3u8"))).await;
        assert!(text.contains("#EXT-X-ENDLIST"), "{text}");
        let out = Command::new(tool("ffmpeg"))
            .args(["-hide_banner", "-nostdin", "-v", "warning", "-i"])
            .arg(o.url(&format!("/live/live/{r}/index.m3u8")))
            .args(["-map", "0", "-f", "null", "-"])
            .output()
            .await
            .expect("ffmpeg read");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.trim().is_empty(),
            "{r}: {stderr}"
        );
    }
}

/// The independent checker (`../shared/tools/hls_conformance.py`) finds nothing to fail or
/// warn about in 20 s of the live loop stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_checker_passes_strict() {
    let checker = shared_dir().join("tools/hls_conformance.py");
    assert!(
        checker.is_file(),
        "conformance checker missing at {}",
        checker.display()
    );
    let o = start_origin("[[streams]]\nname = \"demo\"\nsource = \"loop\"\n").await;
    let c = new_client(Duration::from_secs(5));
    wait_ok(&c, &o.url("/readyz"), Duration::from_secs(10)).await;
    let out = Command::new(tool("python3"))
        .arg(&checker)
        .arg(o.url("/live/demo/master.m3u8"))
        .args(["--seconds", "20", "--strict"])
        .output()
        .await
        .expect("run checker");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "checker failed:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        report.contains("PLAYLIST CHECK OK (0 fail, 0 warn)"),
        "{report}"
    );
}
