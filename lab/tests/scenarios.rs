//! Every scenario under lab/scenarios runs as a user runs it (`lab run FILE --out DIR`) and
//! must exit 0 with every expected range held. The lab needs root (network namespaces): CI
//! runs as root; elsewhere set LAB_TESTS=skip to leave these out knowingly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

fn scenario(name: &str, extra: &[&str]) -> serde_json::Value {
    if std::env::var("LAB_TESTS").as_deref() == Ok("skip") {
        eprintln!("LAB_TESTS=skip: scenario {name} not run");
        return serde_json::Value::Null;
    }
    assert!(
        nix::unistd::geteuid().is_root(),
        "the lab scenarios need root (network namespaces); run as root or set LAB_TESTS=skip"
    );
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("scenarios/{name}.toml"));
    let out = std::env::temp_dir().join(format!("lab-test-{name}-{}", std::process::id()));
    let run = Command::new(env!("CARGO_BIN_EXE_lab"))
        .arg("run")
        .arg(&file)
        .arg("--out")
        .arg(&out)
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{name}:\n{stdout}\n{stderr}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["scenario"], name);
    assert_eq!(summary["held"], true, "{summary:#}");
    for k in [
        "origin_fetches_per_segment",
        "edge_hit_ratio",
        "rebuffer_ratio_mean",
        "startup_p95_s",
        "players_failed",
    ] {
        assert!(
            summary["figures"][k].is_number(),
            "{k} missing: {summary:#}"
        );
    }
    println!("{stdout}");
    if let Ok(q) = std::fs::read_to_string(out.join("prometheus/queries.txt")) {
        println!("{q}");
    }
    let _ = std::fs::remove_dir_all(&out);
    // Nothing of the lab is left behind.
    let left = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let left = String::from_utf8_lossy(&left.stdout);
    assert!(
        !left.lines().any(|l| l.starts_with("lab")),
        "namespaces left behind: {left}"
    );
    summary
}

/// With Prometheus in the lab: it scrapes every node and population by tier with the
/// fleet's rules, and every Grafana dashboard query and recording rule returns data.
#[test]
fn steady() {
    let s = scenario("steady", &["--prometheus"]);
    if s.is_null() {
        return;
    }
    assert!(
        s["figures"]["prometheus_queries"].as_f64().unwrap() >= 40.0,
        "{s:#}"
    );
    assert_eq!(s["figures"]["prometheus_queries_empty"], 0.0, "{s:#}");
}

#[test]
fn shield_killed() {
    scenario("shield-killed", &[]);
}

#[test]
fn origin_failover() {
    scenario("origin-failover", &[]);
}

#[test]
fn flash_crowd() {
    scenario("flash-crowd", &[]);
}

#[test]
fn edge_restart() {
    scenario("edge-restart", &[]);
}

/// Every scenario file in lab/scenarios passes `lab check` (no root needed), and a broken
/// one is refused with its file, line and key.
#[test]
fn every_scenario_file_checks() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 5);
    let ok = Command::new(env!("CARGO_BIN_EXE_lab"))
        .arg("check")
        .args(&files)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let bad = std::env::temp_dir().join(format!("lab-bad-{}.toml", std::process::id()));
    let text = std::fs::read_to_string(dir.join("steady.toml"))
        .unwrap()
        .replace("count = 500", "count = 0");
    std::fs::write(&bad, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_lab"))
        .arg("check")
        .arg(&bad)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("key `players[0].count`") && err.contains("lab-bad-"),
        "{err}"
    );
    let _ = std::fs::remove_file(&bad);
}
