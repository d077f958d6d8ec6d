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
