//! `player-sim trace` as a user runs it, on the shared HSDPA traces and Envivio movie.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

fn data() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data")
}

#[test]
fn trace_mode_writes_the_report_schema_and_csv() {
    let dir = std::env::temp_dir().join(format!("player-sim-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_player-sim"))
        .args(["trace", "--abr", "bola", "--threads", "2"])
        .arg("--movie")
        .arg(data().join("movies/envivio_dash3/movie_envivio_sabre.json"))
        .arg("--traces")
        .arg(data().join("traces/hsdpa_norway_3g"))
        .arg("--out")
        .arg(dir.join("r.json"))
        .arg("--csv")
        .arg(dir.join("s.csv"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("r.json")).unwrap()).unwrap();
    assert_eq!(report["mode"], "trace");
    assert_eq!(report["abr"], "bola");
    assert_eq!(report["players"], 86);
    for k in [
        "startup_s",
        "rebuffer_count",
        "rebuffer_s",
        "rebuffer_ratio",
        "avg_bitrate_kbps",
        "switches",
        "qoe_lin",
    ] {
        for s in ["mean", "p50", "p95"] {
            assert!(report["aggregate"][k][s].is_number(), "{k}.{s}");
        }
    }
    let sessions = report["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 86);
    assert!(
        sessions[0]["trace"]
            .as_str()
            .unwrap()
            .starts_with("report.")
    );
    let bitrate = report["aggregate"]["avg_bitrate_kbps"]["mean"]
        .as_f64()
        .unwrap();
    assert!((300.0..=4300.0).contains(&bitrate));
    let csv = std::fs::read_to_string(dir.join("s.csv")).unwrap();
    assert_eq!(csv.lines().count(), 87);
    // Deterministic: a second run (other thread count) gives the same report.
    let again = Command::new(env!("CARGO_BIN_EXE_player-sim"))
        .args(["trace", "--abr", "bola", "--threads", "1"])
        .arg("--movie")
        .arg(data().join("movies/envivio_dash3/movie_envivio_sabre.json"))
        .arg("--traces")
        .arg(data().join("traces/hsdpa_norway_3g"))
        .arg("--out")
        .arg(dir.join("r2.json"))
        .output()
        .unwrap();
    assert!(again.status.success());
    assert_eq!(
        std::fs::read(dir.join("r.json")).unwrap(),
        std::fs::read(dir.join("r2.json")).unwrap()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_flags_are_named() {
    let out = Command::new(env!("CARGO_BIN_EXE_player-sim"))
        .args([
            "trace",
            "--movie",
            "/nonexistent",
            "--traces",
            "/nonexistent",
            "--abr",
            "magic",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--abr magic"));
}
