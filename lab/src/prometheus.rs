//! `lab run --prometheus`: a Prometheus server (Debian's `prometheus`) inside the lab
//! scrapes every node by tier with the fleet's rules (deploy/prometheus/rules.yml) loaded,
//! and before the players leave, every Grafana dashboard query (deploy/grafana) and every
//! recording rule must return data.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

/// Where the rules and the dashboard are.
#[derive(Debug, Clone)]
pub struct Deploy {
    /// deploy/prometheus/rules.yml.
    pub rules: PathBuf,
    /// deploy/grafana/live-stack.json.
    pub dashboard: PathBuf,
}

impl Deploy {
    /// The files under a `deploy/` folder.
    pub fn under(dir: &Path) -> Self {
        Self {
            rules: dir.join("prometheus/rules.yml"),
            dashboard: dir.join("grafana/live-stack.json"),
        }
    }
}

/// The scrape config: one job per tier, every target labelled with its `tier`.
pub fn config(targets: &[(&str, SocketAddr)], rules: &Path) -> String {
    let mut tiers: Vec<&str> = targets.iter().map(|(t, _)| *t).collect();
    tiers.dedup();
    let mut s = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {:?}\nscrape_configs:\n",
        rules.display().to_string()
    );
    for tier in tiers {
        let addrs: Vec<String> = targets
            .iter()
            .filter(|(t, _)| *t == tier)
            .map(|(_, a)| format!("\"{a}\""))
            .collect();
        s.push_str(&format!(
            "  - job_name: {tier}\n    static_configs:\n      - targets: [{}]\n        labels:\n          tier: {tier}\n",
            addrs.join(", ")
        ));
    }
    s
}

/// Every query to check: each dashboard panel's targets (rows' nested panels included)
/// and each recording rule of `rules` (read as text: `- record: NAME` lines).
pub fn queries(dashboard: &Value, rules: &str) -> Vec<(String, String)> {
    fn walk(panels: &Value, out: &mut Vec<(String, String)>) {
        for p in panels.as_array().into_iter().flatten() {
            let title = p["title"].as_str().unwrap_or("?");
            for t in p["targets"].as_array().into_iter().flatten() {
                out.push((
                    format!("panel {title:?}"),
                    t["expr"].as_str().unwrap_or("").to_string(),
                ));
            }
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out.extend(
        rules
            .lines()
            .filter_map(|l| l.trim().strip_prefix("- record:"))
            .map(|n| ("recording rule".to_string(), n.trim().to_string())),
    );
    out
}

/// Whether a query result holds a number that is not NaN (a ratio over nothing, or a
/// quantile of an empty histogram, is NaN: no data on a dashboard).
pub fn has_number(data: &Value) -> bool {
    let num = |v: &Value| {
        v.as_str()
            .and_then(|s| s.parse::<f64>().ok())
            .is_some_and(|x| !x.is_nan())
    };
    match &data["result"] {
        Value::Array(a) if data["resultType"] == "scalar" => a.get(1).is_some_and(num),
        Value::Array(a) => a.iter().any(|s| num(&s["value"][1])),
        _ => false,
    }
}

/// A Prometheus server; killed when dropped.
pub struct Server {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Server {
    /// Starts `prometheus` on `listen` with `config`, its data and log under `dir`.
    pub fn start(dir: &Path, config: &str, listen: SocketAddr) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let cfg = dir.join("prometheus.yml");
        std::fs::write(&cfg, config)?;
        let log = dir.join("prometheus.log");
        let out = std::fs::File::create(&log)?;
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={listen}"))
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("cannot start prometheus (Debian package `prometheus`)")?;
        Ok(Self {
            child,
            base: format!("http://{listen}"),
            log,
        })
    }

    async fn get(&mut self, c: &service::client::HttpClient, pq: &str) -> anyhow::Result<Value> {
        if let Ok(Some(status)) = self.child.try_wait() {
            bail!("prometheus exited ({status}); see {}", self.log.display());
        }
        let url = format!("{}{pq}", self.base);
        let r = service::client::fetch(c, http::Method::GET, &url, &[], Duration::from_secs(5))
            .await
            .with_context(|| format!("GET {url}"))?;
        let v: Value = serde_json::from_slice(&r.body).with_context(|| format!("GET {url}"))?;
        if v["status"] != "success" {
            bail!("GET {url}: {v}");
        }
        Ok(v["data"].clone())
    }

    /// Waits until it is ready and every one of `targets` targets is up.
    pub async fn wait_up(
        &mut self,
        c: &service::client::HttpClient,
        targets: usize,
    ) -> anyhow::Result<()> {
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(d) = self
                .get(
                    c,
                    &format!(
                        "/api/v1/query?query={}",
                        service::percent::encode("up == 1")
                    ),
                )
                .await
                && d["result"].as_array().is_some_and(|a| a.len() >= targets)
            {
                return Ok(());
            }
            if Instant::now() > until {
                bail!(
                    "prometheus: not every target up within 30 s; see {}",
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Runs every query until it returns a number (each retried for at most `patience`):
    /// (what, expr, answered) per query.
    pub async fn check(
        &mut self,
        c: &service::client::HttpClient,
        queries: &[(String, String)],
        patience: Duration,
    ) -> anyhow::Result<Vec<(String, String, bool)>> {
        let mut answered = vec![false; queries.len()];
        let until = Instant::now() + patience;
        loop {
            for (i, (_, q)) in queries.iter().enumerate() {
                if !answered[i] {
                    let d = self
                        .get(
                            c,
                            &format!("/api/v1/query?query={}", service::percent::encode(q)),
                        )
                        .await?;
                    answered[i] = has_number(&d);
                }
            }
            if answered.iter().all(|a| *a) || Instant::now() > until {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        Ok(queries
            .iter()
            .zip(answered)
            .map(|((w, q), a)| (w.clone(), q.clone(), a))
            .collect())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_come_from_panels_rows_and_recording_rules() {
        let d: Value = serde_json::from_str(
            r#"{"panels":[{"title":"A","targets":[{"expr":"up"}]},{"title":"row","type":"row","panels":[{"title":"B","targets":[{"expr":"sum(x)"},{"expr":"y"}]}]}]}"#,
        )
        .unwrap();
        let rules = "groups:\n  - name: g\n    rules:\n      - record: tier:x:rate1m\n        expr: sum(rate(x[1m]))\n      - alert: Down\n";
        let q = queries(&d, rules);
        let exprs: Vec<&str> = q.iter().map(|(_, e)| e.as_str()).collect();
        assert_eq!(exprs, ["up", "sum(x)", "y", "tier:x:rate1m"]);
    }

    #[test]
    fn nan_and_empty_are_no_data() {
        let v = |s: &str| serde_json::from_str::<Value>(s).unwrap();
        assert!(has_number(&v(
            r#"{"resultType":"vector","result":[{"metric":{},"value":[1,"0.5"]}]}"#
        )));
        assert!(!has_number(&v(
            r#"{"resultType":"vector","result":[{"metric":{},"value":[1,"NaN"]}]}"#
        )));
        assert!(!has_number(&v(r#"{"resultType":"vector","result":[]}"#)));
        assert!(has_number(&v(
            r#"{"resultType":"scalar","result":[1,"3"]}"#
        )));
    }

    #[test]
    fn one_job_per_tier() {
        let t = [
            ("origin", "10.77.0.1:8080".parse().unwrap()),
            ("edge", "10.77.0.2:9081".parse().unwrap()),
            ("edge", "10.77.0.3:9081".parse().unwrap()),
        ];
        let c = config(&t, Path::new("/r.yml"));
        assert!(c.contains("job_name: edge\n    static_configs:\n      - targets: [\"10.77.0.2:9081\", \"10.77.0.3:9081\"]\n        labels:\n          tier: edge"));
        assert!(c.contains("rule_files:\n  - \"/r.yml\""));
    }
}
