//! `player-sim run` / `demo` as a user runs them: bad flags and configs get a clear error
//! naming the flag or file:line:key (exit 2), and a run against a dead URL fails cleanly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

fn sim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_player-sim"))
        .args(args)
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn bad_flags_name_the_flag() {
    for (args, want) in [
        (vec!["run", "--players", "0"], "--players"),
        (vec!["run", "--bandwidth", "fast"], "--bandwidth"),
        (vec!["run", "--abr", "magic"], "--abr"),
        (vec!["run", "--join", "sometimes"], "--join"),
        (vec!["demo", "--exit", "10s,3"], "--exit"),
        (vec!["run", "--vary", "1.5"], "--vary"),
        (vec!["run", "--url", "ftp://x/y.m3u8"], "--url"),
        (vec!["run", "--url", "https://x/y.m3u8"], "https"),
    ] {
        let o = sim(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(want), "{args:?}: {}", stderr(&o));
    }
    let o = sim(&["run", "--duration", "soon"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--duration"), "{}", stderr(&o));
}

#[test]
fn bad_config_names_file_line_and_key() {
    let dir = std::env::temp_dir().join(format!("player-sim-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("bad.toml");
    std::fs::write(&p, "[run]\nplayers = 5\n\n[player]\nretry_cap = \"0s\"\n").unwrap();
    let o = sim(&["run", "--config", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(
        e.contains("bad.toml") && e.contains("line 5") && e.contains("player.retry_cap"),
        "{e}"
    );
}

#[test]
fn check_validates_without_running() {
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/player-sim.toml");
    let o = sim(&["run", "--config", shipped, "--check"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("player-sim.toml: ok"));
    let dir = std::env::temp_dir().join(format!("player-sim-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("bad.toml");
    std::fs::write(&p, "[player]\nlive_sync_stall_increase = \"soon\"\n").unwrap();
    let o = sim(&["run", "--config", p.to_str().unwrap(), "--check"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("bad.toml:2") && e.contains("player.live_sync_stall_increase"),
        "{e}"
    );
    let o = sim(&["run", "--check", "--metrics-listen", "nowhere"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--metrics-listen"), "{}", stderr(&o));
}

#[test]
fn a_dead_url_fails_every_session_quickly_with_the_reason() {
    let dir = std::env::temp_dir().join(format!("player-sim-dead-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("c.toml");
    std::fs::write(
        &cfg,
        "[run]\njoin = \"all\"\n[player]\nmax_retries = 2\nretry_base = \"100ms\"\nretry_cap = \"200ms\"\n",
    )
    .unwrap();
    let started = std::time::Instant::now();
    let o = sim(&[
        "run",
        "--config",
        cfg.to_str().unwrap(),
        "--url",
        "http://127.0.0.1:9/live/x/master.m3u8",
        "--players",
        "3",
        "--duration",
        "20s",
        "--quiet",
        "--out-dir",
        dir.to_str().unwrap(),
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(out.contains("3 sessions failed"), "{out}");
    assert!(
        out.contains("Connection refused"),
        "the reason is shown: {out}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "failed fast"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["mode"], "live");
    assert_eq!(report["players"], 3);
}

/// `--edge-metrics` reports what the edge's counters grew by during this run, not all the
/// edge ever served (it used to report the cumulative counters).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_metrics_count_only_this_run() {
    let stack = player_sim::demo::Stack::start(std::time::Duration::from_secs(60))
        .await
        .unwrap();
    // An edge that has served nothing yet has no request samples at all: still an offload
    // (the demo's case; the first version of the fix dropped it).
    let idle = player_sim::demo::offload(
        &service::client::new_client(std::time::Duration::from_secs(10)),
        &format!("http://{}/metrics", stack.edge_admin),
    )
    .await;
    assert_eq!(
        idle,
        Some(player_sim::qoe::Offload {
            requests: 0,
            upstream_fetches: 0
        })
    );
    // Traffic before the run: 300 requests the run must not count.
    let c = service::client::new_client(std::time::Duration::from_secs(10));
    for _ in 0..300 {
        let r = service::client::fetch(
            &c,
            http::Method::GET,
            &stack.master_url(),
            &[],
            std::time::Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!(r.status, 200);
    }
    let dir = std::env::temp_dir().join(format!("player-sim-offload-{}", std::process::id()));
    let out = dir.join("r.json");
    let args = vec![
        "run".to_string(),
        "--url".into(),
        stack.master_url(),
        "--players".into(),
        "2".into(),
        "--duration".into(),
        "4s".into(),
        "--edge-metrics".into(),
        format!("http://{}/metrics", stack.edge_admin),
        "--out-dir".into(),
        dir.to_string_lossy().into_owned(),
        "--out".into(),
        out.to_string_lossy().into_owned(),
        "--quiet".into(),
    ];
    let o = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_player-sim"))
            .args(&args)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let requests = report["edge"]["requests"].as_u64().unwrap();
    // Two players over 4 s: a master, a media playlist per 2 s and a segment per 2 s each —
    // a few dozen requests, not the 300 made before.
    assert!((4..100).contains(&requests), "{requests}: {report}");
    let _ = std::fs::remove_dir_all(&dir);
}
