//! CI's short run of the hls.js comparison (bench/hlsjs-compare.sh runs the full one): hls.js
//! 1.7 in Debian's headless Chromium, throttled by DevTools on a bandwidth schedule, and one
//! player-sim `hlsjs` player on the same schedule, both on the project's live stream at the
//! same time. The simulator must start where hls.js starts (the variant listed first), abort
//! the top-rung fragment in flight when the link drops and switch down about when hls.js
//! does, and play about the same bitrate.

// Tests: a failed setup should fail the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use e2e::{repo_root, tool};
use player_sim::demo::Stack;
use player_sim::join::Join;
use player_sim::live::{self, Metrics, Population, Settings, Shared};
use player_sim::schedule;
use tokio::process::Command;

/// 2000 kbit/s, 350 kbit/s (below the lowest rung's BANDWIDTH) from 14 s, back at 28 s.
const SCHEDULE: &str = "2000kbps@0s,350kbps@14s,2000kbps@28s";
const DROP_S: f64 = 14.0;
const SECONDS: u64 = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn player_sim_follows_hls_js_through_a_bandwidth_drop() {
    let browser_dir = repo_root().join("tests/browser");
    assert!(
        browser_dir.join("node_modules/hls.js").is_dir(),
        "hls.js is not installed: run .ci/run or `npm ci --prefix tests/browser`"
    );
    let chromium = tool("chromium");
    let stack = Stack::start(Duration::from_secs(60)).await.unwrap();
    let url = stack.master_url();
    let out = std::env::temp_dir().join(format!("hlsjs-compare-{}.json", std::process::id()));
    let hls = Command::new(tool("node"))
        .arg(browser_dir.join("compare.mjs"))
        .args(["--url", &url, "--schedule", SCHEDULE])
        .args(["--duration", &format!("{SECONDS}s"), "--latency", "20ms"])
        .arg("--out")
        .arg(&out)
        .env("CHROMIUM", chromium)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let mut trace = schedule::parse(SCHEDULE, 20.0, SECONDS as f64 * 1000.0).unwrap();
    trace.name = SCHEDULE.into();
    let pop = Population {
        url: url.clone(),
        players: 1,
        duration: Duration::from_secs(SECONDS),
        abr: "hlsjs".into(),
        schedule: trace,
        vary: 0.0,
        join: Join::AllAtOnce,
        exit: None,
        record: 1,
    };
    let shared = Arc::new(Shared {
        client: service::client::new_client(Duration::from_secs(30)),
        metrics: Metrics::new().unwrap(),
        settings: Settings::default(),
    });
    let (hls, sim) = tokio::join!(hls, live::run(&pop, shared, false));
    let hls = hls.unwrap();
    assert!(
        hls.status.success(),
        "compare.mjs failed: {}\n{}",
        String::from_utf8_lossy(&hls.stderr),
        String::from_utf8_lossy(&hls.stdout)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    std::fs::remove_file(&out).ok();
    let f = &report["figures"];
    let p = &sim.outcomes[0];
    let s = &p.session;
    // The first request at a lower rung than the one in flight at the drop, from the drop.
    let at_drop = p
        .steps
        .iter()
        .rev()
        .find(|x| x.at_ms / 1000.0 <= DROP_S)
        .map(|x| x.quality)
        .unwrap();
    let sim_down = p
        .steps
        .iter()
        .find(|x| x.at_ms / 1000.0 > DROP_S && x.quality < at_drop)
        .map(|x| x.at_ms / 1000.0 - DROP_S);
    eprintln!(
        "hls.js | player-sim\nstartup {} | {:.3}\nbitrate {} | {:.0}\nfirst level {} | {}\n\
         first down-switch request after the drop {} | {:?}\naborted {} | {}\nstalls {} / {} s | {} / {:.2} s",
        f["startup_s"],
        s.startup_s,
        f["avg_bitrate_kbps"],
        s.avg_bitrate_kbps,
        f["first_level_loaded"],
        p.steps[0].quality,
        f["first_down_request_s"],
        sim_down,
        f["fragments_aborted"],
        p.abandoned,
        f["rebuffer_count"],
        f["rebuffer_s"],
        s.rebuffer_count,
        s.rebuffer_s
    );
    assert_eq!(s.error, None);
    let top = p.ladder_kbps.len() - 1;
    assert_eq!(
        f["first_level_loaded"].as_u64(),
        Some(top as u64),
        "hls.js starts at the top"
    );
    assert_eq!(p.steps[0].quality, top, "so does the simulator");
    let hls_startup = f["startup_s"].as_f64().expect("hls.js played");
    assert!(
        (s.startup_s - hls_startup).abs() <= 0.6,
        "startup {} vs hls.js {hls_startup}",
        s.startup_s
    );
    let hls_down = f["first_down_request_s"]
        .as_f64()
        .expect("hls.js switched down");
    let sim_down = sim_down.expect("the simulator switched down");
    assert!(
        (sim_down - hls_down).abs() <= 1.5,
        "first down-switch {sim_down} s vs hls.js {hls_down} s after the drop"
    );
    assert!(f["fragments_aborted"].as_u64().unwrap() >= 1);
    assert!(
        p.abandoned >= 1,
        "the top-rung fragment in flight is abandoned"
    );
    let hls_kbps = f["avg_bitrate_kbps"].as_f64().unwrap();
    assert!(
        (s.avg_bitrate_kbps - hls_kbps).abs() <= 0.15 * hls_kbps,
        "bitrate {} vs hls.js {hls_kbps}",
        s.avg_bitrate_kbps
    );
}
