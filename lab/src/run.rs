//! Runs a scenario: builds the network, writes each node's config, starts the nodes in
//! their namespaces, starts the players, plays the events, scrapes every node each second,
//! then judges the figures and writes `summary.json`.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::figures::{self, Summary};
use crate::net::{self, Net};
use crate::prom::{self, Growth};
use crate::scenario::{Action, NodeSpec, Role, Scenario};

/// Player populations' `/metrics` port.
const PLAYERS_METRICS: u16 = 9102;
/// The lab's Prometheus (with `--prometheus`), on the lab's own address.
const PROMETHEUS: u16 = 9090;

/// Viewers' (and origins') port on every host.
const PORT: u16 = 8080;
/// Shields' and edges' admin port.
const ADMIN: u16 = 9081;

/// A node of the topology and its process.
struct Node {
    spec: NodeSpec,
    ns: String,
    ip: Ipv4Addr,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    /// The delay relay in front of its content port, when it has a delay.
    relay: Option<Child>,
}

impl Node {
    fn metrics_url(&self) -> String {
        match self.spec.role {
            Role::Origin => format!("http://{}:{PORT}/metrics", self.ip),
            _ => format!("http://{}:{ADMIN}/metrics", self.ip),
        }
    }

    fn ready_url(&self) -> String {
        match self.spec.role {
            Role::Origin => format!("http://{}:{PORT}/readyz", self.ip),
            _ => format!("http://{}:{ADMIN}/readyz", self.ip),
        }
    }

    fn start(&mut self) -> anyhow::Result<()> {
        let role = match self.spec.role {
            Role::Origin => "origin",
            Role::Shield | Role::Edge => "edge",
        };
        self.child = Some(spawn_in(
            &self.ns,
            &["node", role, "--config", &self.config.to_string_lossy()],
            &self.log,
        )?);
        if let Some(d) = self.spec.delay {
            let log = self.log.with_extension("relay.log");
            self.relay = Some(spawn_in(
                &self.ns,
                &[
                    "node",
                    "delay",
                    "--listen",
                    &format!("{}:{PORT}", self.ip),
                    "--to",
                    &format!("127.0.0.1:{PORT}"),
                    "--delay",
                    &format!("{}us", d.as_micros()),
                ],
                &log,
            )?);
        }
        Ok(())
    }

    /// Kills it at once (a crash), relay included.
    fn crash(&mut self) {
        for mut c in [self.child.take(), self.relay.take()].into_iter().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn signal(&mut self, s: Signal) {
        if let Some(c) = &self.child
            && let Ok(pid) = i32::try_from(c.id())
        {
            let _ = kill(Pid::from_raw(pid), s);
        }
    }

    /// Stops it (SIGTERM, then SIGKILL after `grace`) and reaps it.
    fn stop(&mut self, grace: Duration) {
        self.signal(Signal::SIGTERM);
        if let Some(mut c) = self.child.take() {
            wait_or_kill(&mut c, grace);
        }
        self.crash();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // However the run ends (an error, a panic), no node outlives it.
        self.crash();
    }
}

/// Player processes, killed if the run ends before they do.
struct Players(Vec<Child>);

impl Drop for Players {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Waits for `c` at most `grace`, then kills it; always reaps it.
fn wait_or_kill(c: &mut Child, grace: Duration) {
    let end = Instant::now() + grace;
    while Instant::now() < end {
        if let Ok(Some(_)) = c.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = c.kill();
    let _ = c.wait();
}

/// Starts this program as `lab ARGS` in namespace `ns`, its output to `log`.
fn spawn_in(ns: &str, args: &[&str], log: &Path) -> anyhow::Result<Child> {
    let exe = std::env::current_exe().context("cannot find the lab's own executable")?;
    let out =
        std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let err = out.try_clone()?;
    Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(exe)
        .args(args)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .with_context(|| format!("cannot start `lab {}` in {ns}", args.join(" ")))
}

/// Where a node's server listens: its address, or loopback behind its delay relay.
fn listen_ip(n: &NodeSpec, ip: Ipv4Addr) -> Ipv4Addr {
    if n.delay.is_some() {
        Ipv4Addr::LOCALHOST
    } else {
        ip
    }
}

fn origin_toml(s: &Scenario, ip: Ipv4Addr) -> String {
    format!(
        "listen = \"{ip}:{PORT}\"\n[server]\ndrain_timeout = \"1s\"\n[[streams]]\nname = \"demo\"\nsource = \"loop\"\nsegment_duration = \"{}ms\"\nwindow = {}\n",
        s.stream.segment_duration.as_millis(),
        s.stream.window
    )
}

fn edge_toml(s: &Scenario, n: &NodeSpec, ip: Ipv4Addr, ips: &BTreeMap<String, Ipv4Addr>) -> String {
    let urls: Vec<String> = n
        .upstreams
        .iter()
        .map(|u| format!("\"http://{}:{PORT}\"", ips[u]))
        .collect();
    // A shield's viewers' port serves content only: edges check shields with the master
    // playlist (from the shield's cache), origins with their /healthz.
    let health = if n
        .upstreams
        .iter()
        .all(|u| s.node(u).is_some_and(|x| x.role == Role::Origin))
    {
        "/healthz"
    } else {
        "/live/demo/master.m3u8"
    };
    let listen = listen_ip(n, ip);
    format!(
        "listen = \"{listen}:{PORT}\"\nnode_id = \"{name}\"\nlog_level = \"warn\"\n\
         [server]\ndrain_timeout = \"1s\"\nmax_connections = 30000\n\
         max_connections_per_client = 0\nmax_requests_per_client = 0\n\
         [upstream]\nurls = [{urls}]\npick = \"{pick}\"\n\
         [upstream.health]\npath = \"{health}\"\ninterval = \"500ms\"\n\
         [overload]\nmax_active = 24000\nnew_joins_above = 20000\n\
         [prefetch]\nenabled = {prefetch}\n\
         [admin]\nlisten = \"{ip}:{ADMIN}\"\n",
        name = n.name,
        urls = urls.join(", "),
        pick = s.pick_of(n),
        prefetch = Scenario::prefetch_of(n),
    )
}

fn players_toml(s: &Scenario, i: usize, edge_ip: Ipv4Addr, own: Ipv4Addr) -> String {
    let p = &s.players[i];
    format!(
        "[run]\nmetrics_listen = \"{own}:{PLAYERS_METRICS}\"\nurl = \"http://{edge_ip}:{PORT}/live/demo/master.m3u8\"\nplayers = {}\nduration = \"{}ms\"\nabr = \"{}\"\nbandwidth = \"{}\"\nvary = {}\njoin = \"{}\"\nexit = \"{}\"\n[player]\nseed = {}\n",
        p.count,
        s.duration.as_millis(),
        p.abr,
        p.bandwidth,
        p.vary,
        p.join,
        p.exit,
        p.seed.unwrap_or(i as u64 + 1)
    )
}

/// Polls `url` until it answers 200, for at most `limit`.
async fn wait_ready(
    c: &service::client::HttpClient,
    url: &str,
    limit: Duration,
) -> anyhow::Result<()> {
    service::client::wait_ok(c, url, limit)
        .await
        .map_err(|last| anyhow!("{url} not ready within {limit:?}: {last}"))
}

/// Scrapes every running node once: (node, its `/metrics` text).
async fn scrape(c: &service::client::HttpClient, nodes: &[Node]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for n in nodes.iter().filter(|n| n.child.is_some()) {
        if let Ok(r) = service::client::fetch(
            c,
            http::Method::GET,
            &n.metrics_url(),
            &[],
            Duration::from_secs(2),
        )
        .await
            && r.status == 200
        {
            out.push((
                n.spec.name.clone(),
                String::from_utf8_lossy(&r.body).into_owned(),
            ));
        }
    }
    out
}

/// Parses one scrape of every node.
fn parse_all(scraped: &[(String, String)]) -> Vec<(String, Vec<prom::Sample>)> {
    scraped
        .iter()
        .map(|(n, text)| (n.clone(), prom::parse(text)))
        .collect()
}

/// Takes one scrape of every node into `g`.
fn observe(g: &mut Growth, scraped: &[(String, Vec<prom::Sample>)]) {
    for (node, samples) in scraped {
        g.observe(node, samples);
    }
}

/// Runs scenario `s` with its outputs in `out`; returns the summary (also written to
/// `out/summary.json`).
pub fn run(
    s: &Scenario,
    out: &Path,
    prometheus: Option<&crate::prometheus::Deploy>,
) -> anyhow::Result<Summary> {
    if !nix::unistd::geteuid().is_root() {
        bail!("the lab needs root: it creates network namespaces (run it as root, or in CI)");
    }
    for d in ["configs", "logs", "players", "metrics"] {
        std::fs::create_dir_all(out.join(d))
            .with_context(|| format!("cannot create {}", out.join(d).display()))?;
    }
    let prefix = format!("lab{}", std::process::id());
    let mut net = Net::create(&prefix)?;
    let mut ips = BTreeMap::new();
    let mut nodes = Vec::new();
    for (i, spec) in s.nodes.iter().enumerate() {
        let ip = net::address(u8::try_from(i + 1)?);
        let ns = net.add_host(&spec.name, ip)?;
        if let Some(r) = &spec.link {
            net.set_rate(&ns, Some(r))?;
        }
        ips.insert(spec.name.clone(), ip);
        nodes.push(Node {
            spec: spec.clone(),
            ns,
            ip,
            config: out.join("configs").join(format!("{}.toml", spec.name)),
            log: out.join("logs").join(format!("{}.log", spec.name)),
            child: None,
            relay: None,
        });
    }
    for n in &nodes {
        let toml = match n.spec.role {
            Role::Origin => origin_toml(s, listen_ip(&n.spec, n.ip)),
            _ => edge_toml(s, &n.spec, n.ip, &ips),
        };
        std::fs::write(&n.config, toml)?;
    }
    let mut populations = Vec::new();
    for (i, p) in s.players.iter().enumerate() {
        let own = net::address(u8::try_from(100 + i)?);
        let ns = net.add_host(&format!("players{i}"), own)?;
        let config = out.join("configs").join(format!("players{i}.toml"));
        std::fs::write(&config, players_toml(s, i, ips[&p.edge], own))?;
        populations.push((
            ns,
            config,
            out.join("players").join(format!("report-{i}.json")),
        ));
    }
    let ctl = net.add_host("ctl", net::address(254))?;
    // This thread and the runtime's threads (started below) live in the lab's network.
    net::enter(&ctl)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = rt.block_on(drive(s, &net, &mut nodes, &populations, out, prometheus));
    for n in nodes.iter_mut() {
        n.stop(Duration::from_secs(3));
    }
    drop(net);
    let summary = result?;
    std::fs::write(
        out.join("summary.json"),
        serde_json::to_string_pretty(&summary)?,
    )?;
    Ok(summary)
}

async fn drive(
    s: &Scenario,
    net: &Net,
    nodes: &mut [Node],
    populations: &[(String, PathBuf, PathBuf)],
    out: &Path,
    prometheus: Option<&crate::prometheus::Deploy>,
) -> anyhow::Result<Summary> {
    let c = service::client::new_client(Duration::from_secs(10));
    // Origins first (until their window is full), then shields, then edges.
    for role in [Role::Origin, Role::Shield, Role::Edge] {
        for n in nodes.iter_mut().filter(|n| n.spec.role == role) {
            n.start()?;
        }
        let limit = match role {
            Role::Origin => s.stream.segment_duration * (s.stream.window as u32 + 10),
            _ => Duration::from_secs(20),
        };
        for n in nodes.iter().filter(|n| n.spec.role == role) {
            wait_ready(&c, &n.ready_url(), limit)
                .await
                .with_context(|| {
                    format!("{} did not come up; see {}", n.spec.name, n.log.display())
                })?;
        }
    }
    // With --prometheus: a Prometheus in the lab scrapes every node and population by tier.
    let mut prom = None;
    let mut prom_targets: Vec<(&str, std::net::SocketAddr)> = nodes
        .iter()
        .map(|n| {
            let port = if n.spec.role == Role::Origin {
                PORT
            } else {
                ADMIN
            };
            (
                n.spec.role.as_str(),
                std::net::SocketAddr::from((n.ip, port)),
            )
        })
        .collect();
    for i in 0..populations.len() {
        let ip = net::address(u8::try_from(100 + i)?);
        prom_targets.push((
            "player-sim",
            std::net::SocketAddr::from((ip, PLAYERS_METRICS)),
        ));
    }
    if let Some(d) = prometheus {
        let cfg = crate::prometheus::config(&prom_targets, &d.rules);
        let listen = std::net::SocketAddr::from((net::address(254), PROMETHEUS));
        prom = Some(crate::prometheus::Server::start(
            &out.join("prometheus"),
            &cfg,
            listen,
        )?);
    }
    let mut growth = Growth::default();
    observe(&mut growth, &parse_all(&scrape(&c, nodes).await));
    // The same counters over the steady window only.
    let mut window = Growth::default();
    let (w_from, w_to) = s.steady_window();
    let mut window_secs = 0.0;
    let mut window_started: Option<Instant> = None;
    let mut players = Players(Vec::new());
    for (i, (ns, config, report)) in populations.iter().enumerate() {
        players.0.push(spawn_in(
            ns,
            &[
                "node",
                "players",
                "--config",
                &config.to_string_lossy(),
                "--out",
                &report.to_string_lossy(),
            ],
            &out.join("logs").join(format!("players{i}.log")),
        )?);
    }
    let t0 = Instant::now();
    let mut checked: Option<Vec<(String, String, bool)>> = None;
    let mut events = s.events.clone();
    events.sort_by_key(|e| e.at);
    let mut next = events.into_iter().peekable();
    // Players stop by themselves after `duration`; they are given a margin to finish their
    // last downloads and write their reports, then killed.
    let end = t0 + s.duration + Duration::from_secs(30);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let scraped = parse_all(&scrape(&c, nodes).await);
        observe(&mut growth, &scraped);
        let t = t0.elapsed();
        if t >= w_from && t <= w_to {
            observe(&mut window, &scraped);
            let started = *window_started.get_or_insert_with(Instant::now);
            window_secs = started.elapsed().as_secs_f64();
        }
        while let Some(e) = next.next_if(|e| t0.elapsed() >= e.at) {
            let Some(n) = nodes.iter_mut().find(|n| n.spec.name == e.node) else {
                continue;
            };
            println!(
                "{:>6.1} s  {:?} {}",
                t0.elapsed().as_secs_f64(),
                e.action,
                e.node
            );
            match e.action {
                Action::Kill => n.crash(),
                Action::Stop => n.stop(Duration::from_secs(5)),
                Action::Restart => {
                    if n.child.is_none() {
                        n.start()?;
                        growth.restarted(&n.spec.name);
                        window.restarted(&n.spec.name);
                    }
                }
                Action::Link => {
                    let rate = e.rate.as_deref().filter(|r| *r != "none");
                    net.set_rate(&n.ns, rate)?;
                }
            }
        }
        // The dashboard's queries, while the players still play (their series end with them).
        if let (Some(p), Some(d), None) = (prom.as_mut(), prometheus, &checked)
            && t0.elapsed() + Duration::from_secs(12) >= s.duration
        {
            p.wait_up(&c, prom_targets.len()).await?;
            let dashboard: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(&d.dashboard)
                    .with_context(|| format!("{}", d.dashboard.display()))?,
            )
            .with_context(|| format!("{}", d.dashboard.display()))?;
            let rules = std::fs::read_to_string(&d.rules)
                .with_context(|| format!("{}", d.rules.display()))?;
            let q = crate::prometheus::queries(&dashboard, &rules);
            checked = Some(p.check(&c, &q, Duration::from_secs(8)).await?);
        }
        let all_done = players
            .0
            .iter_mut()
            .all(|p| matches!(p.try_wait(), Ok(Some(_))));
        if all_done || Instant::now() >= end {
            break;
        }
    }
    let last = scrape(&c, nodes).await;
    observe(&mut growth, &parse_all(&last));
    // Each node's last /metrics, for a look afterwards.
    for (node, text) in &last {
        let _ = std::fs::write(out.join("metrics").join(format!("{node}.prom")), text);
    }
    for p in players.0.iter_mut() {
        wait_or_kill(p, Duration::from_millis(100));
    }
    let mut reports = Vec::new();
    for (i, (_, _, report)) in populations.iter().enumerate() {
        let text = std::fs::read_to_string(report).with_context(|| {
            format!(
                "players{i} wrote no report; see {}",
                out.join("logs").join(format!("players{i}.log")).display()
            )
        })?;
        reports.push(serde_json::from_str(&text).with_context(|| format!("{}", report.display()))?);
    }
    let merged = if reports.is_empty() {
        None
    } else {
        let m = player_sim::qoe::merge(reports, false)?;
        std::fs::write(out.join("players.json"), serde_json::to_string_pretty(&m)?)?;
        Some(m)
    };
    let roles: BTreeMap<String, Role> = nodes
        .iter()
        .map(|n| (n.spec.name.clone(), n.spec.role))
        .collect();
    let mut figures = figures::compute(&growth, |n| roles.get(n).copied(), merged.as_ref());
    if let Some(results) = &checked {
        let text: String = results
            .iter()
            .map(|(what, q, ok)| {
                format!("{} {what}: {q}\n", if *ok { "data   " } else { "NO DATA" })
            })
            .collect();
        std::fs::write(out.join("prometheus").join("queries.txt"), text)?;
        figures.insert("prometheus_queries".into(), results.len() as f64);
        figures.insert(
            "prometheus_queries_empty".into(),
            results.iter().filter(|(_, _, ok)| !ok).count() as f64,
        );
    }
    let count = |r: Role| s.nodes.iter().filter(|n| n.role == r).count();
    figures.extend(figures::steady_rates(
        &window,
        window_secs,
        |n| roles.get(n).copied(),
        merged.as_ref(),
        s.stream.segment_duration.as_secs_f64(),
        count(Role::Shield),
        count(Role::Origin),
    ));
    Ok(figures::judge(&s.name, figures, &s.expect))
}
