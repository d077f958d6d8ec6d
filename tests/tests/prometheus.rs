//! Monitoring (`deploy/prometheus`, `deploy/grafana`): promtool checks the rules and the
//! scrape config and runs the rules' unit tests, and the dashboard's every query is valid
//! PromQL. That every query and recording rule returns data against a real Prometheus
//! scraping a running fleet is checked by the lab (`lab run --prometheus`, in
//! lab/tests/scenarios.rs).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use e2e::{repo_root, tool};
use serde_json::Value;

fn deploy(path: &str) -> PathBuf {
    repo_root().join("deploy").join(path)
}

/// Runs `promtool args` from the repository root; its output, or a panic that shows it.
fn promtool(args: &[&OsStr]) -> String {
    let out = Command::new(tool("promtool"))
        .args(args)
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .output()
        .expect("run promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool {:?} failed ({}):\n{text}",
        args,
        out.status
    );
    text
}

/// A directory under the system's temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let dir = std::env::temp_dir().join(format!("{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Every target expression in a Grafana dashboard (rows' nested panels included), with the
/// title of its panel.
fn dashboard_exprs(dashboard: &Value) -> Vec<(String, String)> {
    fn walk(panels: &Value, out: &mut Vec<(String, String)>) {
        for p in panels.as_array().into_iter().flatten() {
            let title = p["title"].as_str().unwrap_or("?").to_string();
            for t in p["targets"].as_array().into_iter().flatten() {
                out.push((title.clone(), t["expr"].as_str().unwrap_or("").to_string()));
            }
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

fn load_dashboard() -> Value {
    let path = deploy("grafana/live-stack.json");
    let text = std::fs::read_to_string(&path).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// What is wrong with a dashboard's panels: ids not unique, a panel or target not on the
/// `${datasource}` variable, a panel without targets, an empty expression or one using a
/// Grafana variable (the scrape test runs every expression as it is).
fn dashboard_problems(dashboard: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let mut ids = std::collections::HashSet::new();
    let mut stack = vec![&dashboard["panels"]];
    while let Some(panels) = stack.pop() {
        for p in panels.as_array().into_iter().flatten() {
            let title = p["title"].as_str().unwrap_or("?");
            if !ids.insert(p["id"].as_i64().unwrap_or(-1)) {
                problems.push(format!("{title}: duplicate or missing id"));
            }
            stack.push(&p["panels"]);
            if p["type"] == "row" {
                continue;
            }
            if p["datasource"]["uid"] != "${datasource}" {
                problems.push(format!("{title}: panel datasource is not ${{datasource}}"));
            }
            let targets = p["targets"].as_array().map(Vec::as_slice).unwrap_or(&[]);
            if targets.is_empty() {
                problems.push(format!("{title}: no targets"));
            }
            for t in targets {
                if t["datasource"]["uid"] != "${datasource}" {
                    problems.push(format!("{title}: target datasource is not ${{datasource}}"));
                }
                let expr = t["expr"].as_str().unwrap_or("");
                if expr.trim().is_empty() || expr.contains('$') {
                    problems.push(format!("{title}: expr {expr:?}"));
                }
            }
        }
    }
    problems
}

/// promtool accepts the rules, their unit tests pass, the example config (which loads the
/// rules) is valid, and the dashboard is a Grafana dashboard on a `${datasource}` variable
/// whose every target is valid PromQL.
#[test]
fn prometheus_rules_config_and_dashboard_pass_promtool() {
    let rules = deploy("prometheus/rules.yml");
    promtool(&["check".as_ref(), "rules".as_ref(), rules.as_os_str()]);
    let tests = deploy("prometheus/rules_test.yml");
    let out = promtool(&["test".as_ref(), "rules".as_ref(), tests.as_os_str()]);
    assert!(out.contains("SUCCESS"), "{out}");
    let config = deploy("prometheus/prometheus.yml");
    promtool(&["check".as_ref(), "config".as_ref(), config.as_os_str()]);

    let d = load_dashboard();
    let schema = d["schemaVersion"].as_i64().unwrap_or(0);
    assert!((36..=41).contains(&schema), "schemaVersion {schema}");
    let vars = d["templating"]["list"].as_array().expect("templating.list");
    assert!(
        vars.iter().any(|v| v["name"] == "datasource"
            && v["type"] == "datasource"
            && v["query"] == "prometheus"),
        "no `datasource` variable of type datasource (prometheus): {vars:?}"
    );
    let problems = dashboard_problems(&d);
    assert!(problems.is_empty(), "dashboard: {problems:#?}");

    // PromQL syntax: every expression as a recording rule through `promtool check rules`
    // (a JSON string is a YAML double-quoted scalar).
    let exprs = dashboard_exprs(&d);
    assert!(exprs.len() >= 10, "{exprs:?}");
    let mut yaml = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, (_, e)) in exprs.iter().enumerate() {
        let quoted = serde_json::to_string(e).unwrap();
        writeln!(
            yaml,
            "      - record: dashboard:expr_{i}\n        expr: {quoted}"
        )
        .unwrap();
    }
    let dir = TempDir::new("dashboard-promql");
    let file = dir.0.join("dashboard_exprs.yml");
    std::fs::write(&file, yaml).unwrap();
    promtool(&["check".as_ref(), "rules".as_ref(), file.as_os_str()]);
}
