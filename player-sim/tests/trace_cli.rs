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

/// `player-sim merge`: the reports of two runs over the two halves of a trace folder merge
/// into the report of one run over the whole folder (same aggregate, same sessions in the
/// same order); `--no-sessions` keeps the totals; a file that is no single report is named.
#[test]
fn merge_of_the_halves_is_the_whole() {
    let dir = std::env::temp_dir().join(format!("player-sim-merge-{}", std::process::id()));
    let traces = data().join("traces/hsdpa_norway_3g");
    let mut files: Vec<_> = std::fs::read_dir(&traces)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let (a, b) = files.split_at(files.len() / 2);
    for (half, part) in [("a", a), ("b", b)] {
        let d = dir.join(half);
        std::fs::create_dir_all(&d).unwrap();
        for f in part {
            std::fs::copy(f, d.join(f.file_name().unwrap())).unwrap();
        }
    }
    let run = |traces: &Path, out: &Path, abr: &str| {
        let o = Command::new(env!("CARGO_BIN_EXE_player-sim"))
            .args(["trace", "--abr", abr, "--threads", "1"])
            .arg("--movie")
            .arg(data().join("movies/envivio_dash3/movie_envivio_sabre.json"))
            .arg("--traces")
            .arg(traces)
            .arg("--out")
            .arg(out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    run(&traces, &dir.join("whole.json"), "bba");
    run(&dir.join("a"), &dir.join("a.json"), "bba");
    run(&dir.join("b"), &dir.join("b.json"), "bba");
    let merge = |extra: &[&str], inputs: &[&str], out: &str| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_player-sim"));
        c.arg("merge").args(extra).arg("--out").arg(dir.join(out));
        for i in inputs {
            c.arg(dir.join(i));
        }
        c.output().unwrap()
    };
    let o = merge(&[], &["a.json", "b.json"], "m.json");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let read = |f: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join(f)).unwrap()).unwrap()
    };
    let (whole, m) = (read("whole.json"), read("m.json"));
    assert_eq!(m["players"], whole["players"]);
    assert_eq!(m["aggregate"], whole["aggregate"]);
    // Buckets, counts and extremes equal; sums equal but for the order of additions.
    for (k, h) in whole["histograms"].as_object().unwrap() {
        let mut a = m["histograms"][k].clone();
        let mut b = h.clone();
        let (sa, sb) = (a["sum"].as_f64().unwrap(), b["sum"].as_f64().unwrap());
        assert!(
            (sa - sb).abs() <= 1e-9 * (1.0 + sb.abs()),
            "{k}: {sa} vs {sb}"
        );
        a.as_object_mut().unwrap().remove("sum");
        b.as_object_mut().unwrap().remove("sum");
        assert_eq!(a, b, "{k}");
    }
    let strip_ids = |v: &serde_json::Value| {
        let mut v = v["sessions"].clone();
        for s in v.as_array_mut().unwrap() {
            s.as_object_mut().unwrap().remove("id");
        }
        v
    };
    assert_eq!(strip_ids(&m), strip_ids(&whole));

    let o = merge(&["--no-sessions"], &["a.json", "b.json"], "n.json");
    assert!(o.status.success());
    let n = read("n.json");
    assert_eq!(n["sessions"].as_array().unwrap().len(), 0);
    assert_eq!(n["aggregate"], whole["aggregate"]);

    // A `trace --abr all` file holds several reports: refused, naming it.
    run(&dir.join("a"), &dir.join("all.json"), "all");
    let o = merge(&[], &["a.json", "all.json"], "x.json");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("all.json"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
