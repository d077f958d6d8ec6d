//! Monitoring (`deploy/prometheus`, `deploy/grafana`): promtool checks the rules and the
//! scrape config and runs the rules' unit tests; then a real Prometheus scrapes an origin, a
//! shield in front of it, an edge in front of the shield and live players through the edge,
//! all in-process, and every query of the Grafana dashboard and every recording rule must
//! return data.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::{repo_root, start_edge, start_origin, tool, wait_ok};
use player_sim::join::Join;
use player_sim::live::{self, Metrics, Population, Settings, Shared};
use player_sim::schedule;
use serde_json::Value;
use service::client::{HttpClient, fetch, new_client};

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

/// The recording rules' names in rules.yml, read as text (`- record: NAME` lines).
fn recording_rule_names() -> Vec<String> {
    std::fs::read_to_string(deploy("prometheus/rules.yml"))
        .unwrap()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- record:"))
        .map(|n| n.trim().to_string())
        .collect()
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

/// A Prometheus server run as a child process; killed (and waited for) on drop, so a failing
/// test does not leave it running.
struct Prometheus {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Prometheus {
    fn start(dir: &Path, config: &str) -> Self {
        let cfg = dir.join("prometheus.yml");
        std::fs::write(&cfg, config).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = dir.join("prometheus.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(tool("prometheus"))
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start prometheus");
        Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    /// The end of its log.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let start = text.len().saturating_sub(6000);
        let start = (start..text.len())
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(text.len());
        text[start..].to_string()
    }

    async fn get(&mut self, c: &HttpClient, path_and_query: &str) -> Result<Value, String> {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("prometheus exited ({status}):\n{}", self.log_tail());
        }
        let url = format!("{}{path_and_query}", self.base);
        let r = fetch(c, http::Method::GET, &url, &[], Duration::from_secs(5))
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        let v: Value =
            serde_json::from_slice(&r.body).map_err(|e| format!("GET {url}: {} {e}", r.status))?;
        if v["status"] != "success" {
            return Err(format!("GET {url}: {v}"));
        }
        Ok(v["data"].clone())
    }

    /// An instant query's result (an empty list: no data).
    async fn query(&mut self, c: &HttpClient, expr: &str) -> Result<Vec<Value>, String> {
        let data = self
            .get(c, &format!("/api/v1/query?query={}", encode(expr)))
            .await?;
        Ok(match &data["result"] {
            Value::Array(a) if data["resultType"] == "scalar" => vec![Value::Array(a.clone())],
            Value::Array(a) => a.clone(),
            other => vec![other.clone()],
        })
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Percent-encodes a query parameter value.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            write!(out, "%{b:02X}").unwrap();
        }
    }
    out
}

/// Whether a sample (vector element or scalar) has a value other than NaN: a ratio whose
/// denominator is zero, or a quantile of a histogram that observed nothing, is NaN and shows
/// as no data on a dashboard.
fn is_number(sample: &Value) -> bool {
    let v = &sample["value"][1];
    let v = if v.is_null() { &sample[1] } else { v };
    v.as_str()
        .and_then(|v| v.parse::<f64>().ok())
        .is_some_and(|v| !v.is_nan())
}

/// `metric{labels} value` of every sample of a result, for messages.
fn show(result: &[Value]) -> String {
    result
        .iter()
        .map(|s| {
            let labels = s["metric"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .filter(|(k, _)| !["__name__", "job", "instance"].contains(&k.as_str()))
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            let value = s["value"][1]
                .as_str()
                .or_else(|| s[1].as_str())
                .unwrap_or("?");
            format!("{{{labels}}} {value}")
        })
        .collect::<Vec<_>>()
        .join("  ")
}

const CACHE: &str = "[server]\nmax_connections_per_client = 0\nmax_requests_per_client = 0\n[upstream]\nurls = [\"http://127.0.0.1:9\"]\n[upstream.health]\ninterval = \"250ms\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_a_live_stack_and_every_dashboard_query_returns_data() {
    let began = Instant::now();
    tool("prometheus");
    let c = new_client(Duration::from_secs(5));
    let origin = start_origin("[[streams]]\nname = \"demo\"\nsource = \"loop\"\n").await;
    wait_ok(&c, &origin.url("/readyz"), Duration::from_secs(15)).await;
    let shield = start_edge(
        &format!("node_id = \"shield-1\"\n{CACHE}"),
        &[origin.url("")],
    )
    .await;
    let edge = start_edge(&format!("node_id = \"edge-1\"\n{CACHE}"), &[shield.url("")]).await;
    wait_ok(&c, &edge.admin_url("/readyz"), Duration::from_secs(10)).await;

    // Six players through the edge, joining over 6 s once Prometheus scrapes, with their
    // /metrics.
    let metrics = Metrics::new().unwrap();
    let (stop_players, stopped) = tokio::sync::oneshot::channel::<()>();
    let players_addr = live::serve_metrics(
        "127.0.0.1:0".parse().unwrap(),
        metrics.clone(),
        async move {
            let _ = stopped.await;
        },
    )
    .await
    .unwrap();
    let secs = 50;
    let mut schedule = schedule::parse("4000kbps", 10.0, secs as f64 * 1000.0).unwrap();
    schedule.name = "4000kbps".into();
    let population = Population {
        url: edge.url("/live/demo/master.m3u8"),
        players: 6,
        duration: Duration::from_secs(secs),
        abr: "throughput".into(),
        schedule,
        vary: 0.2,
        join: Join::Ramp(6000.0),
        exit: None,
        record: 0,
    };
    let shared = Arc::new(Shared {
        client: new_client(Duration::from_secs(30)),
        metrics,
        settings: Settings::default(),
    });

    let rules = deploy("prometheus/rules.yml");
    let job = |name: &str, addr: std::net::SocketAddr| {
        format!(
            "  - job_name: {name}\n    static_configs:\n      - targets: [\"{addr}\"]\n        labels:\n          tier: {name}\n"
        )
    };
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {rules:?}\nscrape_configs:\n{}{}{}{}",
        job("origin", origin.addr),
        job("shield", shield.admin),
        job("edge", edge.admin),
        job("player-sim", players_addr),
    );
    let dir = TempDir::new("prometheus-e2e");
    let mut prom = Prometheus::start(&dir.0, &config);

    let ready_by = Instant::now() + Duration::from_secs(20);
    loop {
        let ready = fetch(
            &c,
            http::Method::GET,
            &format!("{}/-/ready", prom.base),
            &[],
            Duration::from_secs(2),
        )
        .await;
        if matches!(&ready, Ok(r) if r.status == 200) {
            break;
        }
        if let Ok(Some(status)) = prom.child.try_wait() {
            panic!("prometheus exited ({status}):\n{}", prom.log_tail());
        }
        assert!(
            Instant::now() < ready_by,
            "prometheus not ready within 20 s:\n{}",
            prom.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Every target up.
    let up_by = Instant::now() + Duration::from_secs(10);
    loop {
        let up = prom.query(&c, "up == 1").await.unwrap_or_default();
        if up.len() == 4 {
            break;
        }
        let all = prom.query(&c, "up").await.unwrap_or_default();
        assert!(
            Instant::now() < up_by,
            "not every target up after 10 s: {}\n{}",
            show(&all),
            prom.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The players start now, so their joins and startups fall inside the scraped window.
    let players = tokio::spawn(async move { live::run(&population, shared, false).await });
    // Traffic for a while: rates need a few samples, recording rules a few evaluations.
    tokio::time::sleep(Duration::from_secs(15)).await;

    // Every rule of rules.yml loaded and evaluating without errors.
    let data = prom.get(&c, "/api/v1/rules").await.unwrap();
    let mut loaded = Vec::new();
    let mut rule_errors = Vec::new();
    for g in data["groups"].as_array().into_iter().flatten() {
        for r in g["rules"].as_array().into_iter().flatten() {
            let name = r["name"].as_str().unwrap_or("?").to_string();
            if r["health"] == "err" {
                rule_errors.push(format!("{name}: {}", r["lastError"]));
            }
            if r["type"] == "recording" {
                loaded.push(name);
            }
        }
    }
    let names = recording_rule_names();
    let mut wanted = names.clone();
    wanted.sort();
    loaded.sort();
    assert_eq!(loaded, wanted, "recording rules loaded vs rules.yml");
    assert!(rule_errors.is_empty(), "rules failing: {rule_errors:#?}");

    // Every dashboard query and every recording rule returns data: at least one sample that
    // is a number (not NaN). Retried for a while: some need their window to fill.
    let mut queries: Vec<(String, String)> = dashboard_exprs(&load_dashboard())
        .into_iter()
        .map(|(title, e)| (format!("dashboard panel {title:?}"), e))
        .collect();
    queries.extend(
        names
            .iter()
            .map(|n| ("recording rule".to_string(), n.clone())),
    );
    let mut pending: Vec<usize> = (0..queries.len()).collect();
    let mut results = vec![String::new(); queries.len()];
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        let mut still = Vec::new();
        for &i in &pending {
            match prom.query(&c, &queries[i].1).await {
                Ok(r) if r.iter().any(is_number) => results[i] = show(&r),
                Ok(r) if r.is_empty() => {
                    results[i] = "(no data)".into();
                    still.push(i);
                }
                Ok(r) => {
                    results[i] = format!("(only NaN) {}", show(&r));
                    still.push(i);
                }
                Err(e) => {
                    results[i] = e;
                    still.push(i);
                }
            }
        }
        pending = still;
        if pending.is_empty() || Instant::now() > until {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let mut report = String::new();
    for (i, (what, expr)) in queries.iter().enumerate() {
        writeln!(report, "{what}: {expr}\n    => {}", results[i]).unwrap();
    }
    eprintln!("{report}");
    let empty: Vec<String> = pending
        .iter()
        .map(|&i| format!("{}: {}  => {}", queries[i].0, queries[i].1, results[i]))
        .collect();
    let _ = stop_players.send(());
    players.abort();
    assert!(
        empty.is_empty(),
        "{} of {} queries returned no data after {:?}:\n{}\n\nprometheus log:\n{}",
        empty.len(),
        queries.len(),
        began.elapsed(),
        empty.join("\n"),
        prom.log_tail()
    );
    drop(prom);
    eprintln!("prometheus test took {:?}", began.elapsed());
}
