//! `player-sim run` and `player-sim demo`: config + flags → a live population → table,
//! report, CSV and plots.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use player_sim::config::{Config, run_problems};
use player_sim::demo::{self, Stack};
use player_sim::live::{self, Metrics, Shared};
use player_sim::qoe::{Aggregate, Report};
use player_sim::{output, plot};

/// Flags of `run` and `demo`; each overrides the config's `[run]` key of the same name.
#[derive(clap::Args, Debug)]
pub struct LiveArgs {
    /// Config file (TOML); without it, the embedded defaults (as config/player-sim.toml).
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Master playlist URL (`run`).
    #[arg(long)]
    url: Option<String>,
    /// Number of players.
    #[arg(long)]
    players: Option<usize>,
    /// Length of the run, e.g. 60s, 2m.
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Controller: hlsjs (default), throughput, bba, bola, mpc, fixed[:N].
    #[arg(long)]
    abr: Option<String>,
    /// Bandwidth schedule: 3000kbps | 4000kbps@0s,800kbps@20s | walk:... | trace:PATH,...
    #[arg(long)]
    bandwidth: Option<String>,
    /// Per-player bandwidth spread in [0, 1).
    #[arg(long)]
    vary: Option<f64>,
    /// Join pattern: all | ramp:D | flash:T[,F,S] | poisson:R/s[,seed=N].
    #[arg(long)]
    join: Option<String>,
    /// Mass exit: T[,FRACTION].
    #[arg(long)]
    exit: Option<String>,
    /// Seed of every random choice.
    #[arg(long)]
    seed: Option<u64>,
    /// CMCD with every request: off, query or headers (or player.cmcd).
    #[arg(long, value_parser = player_sim::cmcd::Mode::parse)]
    cmcd: Option<player_sim::cmcd::Mode>,
    /// Serve /metrics here during the run.
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<String>,
    /// Edge /metrics URL to read the origin offload from (`run`).
    #[arg(long, value_name = "URL")]
    edge_metrics: Option<String>,
    /// JSON report path (default: OUT_DIR/report.json).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Folder for the report, sessions.csv and plots.
    #[arg(long, value_name = "DIR")]
    out_dir: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Validate the config file and flags, say what is wrong (file, line, key or flag) or
    /// `ok`, and exit without running.
    #[arg(long)]
    check: bool,
}

fn merged(a: &LiveArgs) -> anyhow::Result<Config> {
    let mut cfg = match &a.config {
        Some(p) => Config::load(p).map_err(|e| anyhow!("{e}"))?,
        None => Config::default(),
    };
    let r = &mut cfg.run;
    macro_rules! take {
        ($($f:ident),*) => { $( if let Some(v) = &a.$f { r.$f = v.clone(); } )* };
    }
    take!(
        url,
        players,
        duration,
        abr,
        bandwidth,
        vary,
        join,
        exit,
        metrics_listen,
        edge_metrics,
        out_dir
    );
    if let Some(s) = a.seed {
        cfg.player.seed = s;
    }
    if let Some(m) = a.cmcd {
        cfg.player.cmcd = m;
    }
    let problems = run_problems(&cfg.run, |k| {
        let flag = k.replace('_', "-");
        format!("--{flag} (or run.{k})")
    });
    if !problems.is_empty() {
        bail!(
            "{}",
            problems
                .iter()
                .map(|p| format!("{}: {}", p.key, p.message))
                .collect::<Vec<_>>()
                .join("\n       ")
        );
    }
    Ok(cfg)
}

/// Writes `files` (name, text) into `dir`.
pub fn write_files(dir: &Path, files: &[(&str, String)]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for (name, text) in files {
        let p = dir.join(name);
        std::fs::write(&p, text).with_context(|| format!("cannot write {}", p.display()))?;
    }
    Ok(())
}

/// Runs `run` (or `demo`, which first starts its own origin + edge).
pub fn run(a: LiveArgs, demo_mode: bool) -> anyhow::Result<()> {
    let cfg = merged(&a)?;
    if a.check {
        if !cfg.run.metrics_listen.is_empty() {
            cfg.run
                .metrics_listen
                .parse::<std::net::SocketAddr>()
                .context("--metrics-listen (or run.metrics_listen)")?;
        }
        let from = a.config.as_ref().map_or_else(
            || "the embedded defaults".to_string(),
            |p| p.display().to_string(),
        );
        println!("{from}: ok");
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    rt.block_on(live(cfg, a, demo_mode))
}

async fn live(cfg: Config, a: LiveArgs, demo_mode: bool) -> anyhow::Result<()> {
    let r = &cfg.run;
    let stack = if demo_mode {
        eprintln!("starting origin (loop source) + edge in-process; waiting for a full window…");
        let s = Stack::start(Duration::from_secs(60)).await?;
        eprintln!(
            "origin http://{}  edge http://{}  (Ctrl-C stops)",
            s.origin, s.edge
        );
        Some(s)
    } else {
        None
    };
    let url = stack.as_ref().map_or(r.url.clone(), Stack::master_url);
    let pop = r.population(&url).map_err(|e| anyhow!("--{e}"))?;
    let metrics = Metrics::new().context("metrics")?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    if !r.metrics_listen.is_empty() {
        let addr = r.metrics_listen.parse().context("--metrics-listen")?;
        let bound = live::serve_metrics(addr, metrics.clone(), async move {
            let _ = stop_rx.await;
        })
        .await
        .with_context(|| format!("--metrics-listen {addr}"))?;
        eprintln!("metrics: http://{bound}/metrics");
    }
    let client = service::client::new_client(Duration::from_secs(90));
    let shared = Arc::new(Shared {
        client: client.clone(),
        metrics,
        settings: cfg.player.settings(),
    });
    println!(
        "{} players × {:?} against {url}\nabr {}, bandwidth {} (±{:.0} % per player), join {}{}",
        r.players,
        r.duration,
        r.abr,
        r.bandwidth,
        r.vary * 100.0,
        r.join,
        if r.exit.is_empty() {
            String::new()
        } else {
            format!(", exit {}", r.exit)
        }
    );
    // The edge's counters before the run: the report gives this run's share, not all the
    // edge ever served.
    let edge_metrics = match &stack {
        Some(s) => Some(format!("http://{}/metrics", s.edge_admin)),
        None => (!r.edge_metrics.is_empty()).then(|| r.edge_metrics.clone()),
    };
    let before = match &edge_metrics {
        Some(u) => demo::offload(&client, u).await,
        None => None,
    };
    if edge_metrics.is_some() && before.is_none() {
        eprintln!(
            "warning: cannot read the edge's counters before the run: no offload in the report"
        );
    }
    let run = tokio::select! {
        res = live::run(&pop, shared.clone(), !a.quiet) => res,
        _ = service::shutdown::signal() => bail!("interrupted"),
    };
    let _ = stop_tx.send(());
    let offload = match (&edge_metrics, before) {
        (Some(u), Some(b)) => demo::offload(&client, u).await.map(|after| after.since(&b)),
        _ => None,
    };
    let sessions: Vec<_> = run.outcomes.iter().map(|o| o.session.clone()).collect();
    let aggregate = Aggregate::of(&sessions);
    println!("{}", output::table_header());
    println!("{}", output::table_row(&r.abr, sessions.len(), &aggregate));
    println!(
        "p95: rebuffer {:.2} % · startup {:.2} s · latency {} · QoE_lin p50 {:.1}",
        aggregate.rebuffer_ratio.p95 * 100.0,
        aggregate.startup_s.p95,
        aggregate
            .latency_s
            .map_or("-".into(), |l| format!("{:.1} s", l.p95)),
        aggregate.qoe_lin.p50
    );
    let failed: Vec<_> = run
        .outcomes
        .iter()
        .filter_map(|o| o.session.error.as_ref())
        .collect();
    let abandoned: u32 = run.outcomes.iter().map(|o| o.abandoned).sum();
    let requests: u64 = run.outcomes.iter().map(|o| o.requests).sum();
    let left_early = run
        .outcomes
        .iter()
        .filter(|o| o.session.never_started && o.session.error.is_none())
        .count();
    println!(
        "{} sessions failed{}; {left_early} players left before playback started; {abandoned} downloads abandoned for a lower rendition; {requests} player requests",
        failed.len(),
        failed
            .first()
            .map_or(String::new(), |e| format!(" (first: {e})"))
    );
    if let Some(o) = offload {
        println!(
            "origin offload: the edge answered {} requests with {} upstream fetches ({:.2} % offload)",
            o.requests,
            o.upstream_fetches,
            100.0 * (1.0 - o.upstream_fetches as f64 / (o.requests.max(1)) as f64)
        );
    }
    let report = Report::new("live", &r.abr, sessions, offload);
    let out_json = a
        .out
        .clone()
        .unwrap_or_else(|| r.out_dir.join("report.json"));
    let mut files = output::distribution_plots(std::slice::from_ref(&report));
    let recorded: Vec<plot::Timeline<'_>> = run
        .outcomes
        .iter()
        .filter(|o| !o.steps.is_empty())
        .take(r.plot_players)
        .map(|o| plot::Timeline {
            title: format!("player {} ({})", o.session.id, r.abr),
            trace: &run.schedules[o.session.id],
            steps: &o.steps,
            ladder_kbps: &o.ladder_kbps,
            stalls: &o.stall_spans,
        })
        .collect();
    files.push(("timelines.svg", plot::timelines(&recorded)));
    files.push(("sessions.csv", output::csv(std::slice::from_ref(&report))));
    write_files(&r.out_dir, &files)?;
    if let Some(parent) = out_json.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::write(&out_json, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("--out {}", out_json.display()))?;
    println!(
        "report: {}  sessions: {}  plots: {}/{{timelines,rebuffer_cdf,startup_cdf,startup_hist}}.svg",
        out_json.display(),
        r.out_dir.join("sessions.csv").display(),
        r.out_dir.display()
    );
    drop(stack);
    Ok(())
}
