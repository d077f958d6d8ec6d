//! `player-sim`: ABR player simulator.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use player_sim::abr;
use player_sim::movie::Movie;
use player_sim::offline::{self, Settings};
use player_sim::qoe::{Aggregate, Report, Session};
use player_sim::trace::Trace;
use player_sim::{output, plot};

mod live_cmd;

/// Simulates ABR players and reports quality of experience: live against any HLS URL with
/// emulated bandwidth (`run`), against an origin + edge it starts itself (`demo`), or offline
/// over network traces on a virtual clock (`trace`).
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Live: N players against an HLS URL, each behind its own emulated link.
    Run(live_cmd::LiveArgs),
    /// The whole stack in one command: origin (loop source) + edge in-process, a few hundred
    /// players through bandwidth changes, QoE table and origin offload.
    Demo(live_cmd::LiveArgs),
    /// Offline: every trace in a folder × one movie, with one controller or all of them.
    Trace(TraceArgs),
    /// Fleet: combine the reports of many `run`s (one per edge or pod) into one, with
    /// exact totals and means and percentiles from mergeable histograms.
    Merge(MergeArgs),
}

#[derive(clap::Args, Debug)]
struct MergeArgs {
    /// Merged report to write.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Leave the sessions out of the merged report (aggregates still from them when every
    /// report has them).
    #[arg(long)]
    no_sessions: bool,
    /// Reports written by `player-sim run --out` (live) or `trace --out` with one controller.
    #[arg(required = true, value_name = "REPORT")]
    reports: Vec<PathBuf>,
}

fn merge_cmd(a: MergeArgs) -> anyhow::Result<()> {
    let mut reports = Vec::with_capacity(a.reports.len());
    for p in &a.reports {
        let text = std::fs::read_to_string(p)
            .map_err(|e| anyhow::anyhow!("report {}: {e}", p.display()))?;
        let r: Report = serde_json::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "report {}: not a player-sim report (a `trace --abr all` file holds several; merge one controller's): {e}",
                p.display()
            )
        })?;
        reports.push(r);
    }
    let merged = player_sim::qoe::merge(reports, !a.no_sessions)
        .map_err(|e| anyhow::anyhow!("{e} (reports in the order given, from 0)"))?;
    println!("{}", output::table_header());
    println!(
        "{}",
        output::table_row(&merged.abr, merged.players, &merged.aggregate)
    );
    let exact = if merged.percentiles_from_histograms {
        "means exact, percentiles from histograms (within 1 %)"
    } else {
        "exact, from every session"
    };
    println!(
        "{} reports, {} players ({} failed); aggregates {exact}",
        a.reports.len(),
        merged.players,
        merged.failed
    );
    if let Some(o) = merged.edge {
        println!(
            "edges: {} requests answered with {} upstream fetches ({:.2} % offload)",
            o.requests,
            o.upstream_fetches,
            100.0 * (1.0 - o.upstream_fetches as f64 / o.requests.max(1) as f64)
        );
    }
    if let Some(parent) = a.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| anyhow::anyhow!("--out {}: {e}", parent.display()))?;
    }
    std::fs::write(&a.out, serde_json::to_string_pretty(&merged)?)
        .map_err(|e| anyhow::anyhow!("--out {}: {e}", a.out.display()))?;
    println!("report: {}", a.out.display());
    Ok(())
}

#[derive(clap::Args, Debug)]
struct TraceArgs {
    /// Movie: a Sabre movie JSON file, or a folder of Pensieve video_size_N files.
    #[arg(long, value_name = "FILE")]
    movie: PathBuf,
    /// Folder of traces (Sabre JSON, Mahimahi, Pensieve cooked), or one trace file.
    #[arg(long, value_name = "DIR")]
    traces: PathBuf,
    /// Controller: hlsjs, throughput, bba, bola, mpc, fixed[:N], or `all` (side by side).
    #[arg(long, default_value = "all")]
    abr: String,
    /// JSON report to write.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Per-session CSV to write.
    #[arg(long, value_name = "FILE")]
    csv: Option<PathBuf>,
    /// Folder for SVG plots (sample timelines, rebuffer and startup CDFs).
    #[arg(long, value_name = "DIR")]
    plots: Option<PathBuf>,
    /// Largest buffer, seconds.
    #[arg(long, default_value_t = 25.0)]
    buffer_s: f64,
    /// Multiply every trace's bandwidth by this.
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// Latency for traces that carry none (Mahimahi, cooked), ms.
    #[arg(long, default_value_t = 80.0)]
    latency_ms: f64,
    /// Worker threads (0 = one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Let controllers abandon slow downloads (on a 100 ms timer, as live players do); off
    /// by default, as in Sabre.
    #[arg(long)]
    abandon: bool,
    /// The rung (0 = lowest) a master playlist would list first: hls.js starts there.
    #[arg(long, default_value_t = 0, value_name = "RUNG")]
    first_listed: usize,
}

fn load_traces(path: &std::path::Path, scale: f64, latency: f64) -> anyhow::Result<Vec<Trace>> {
    let mut files: Vec<PathBuf> = if path.is_dir() {
        std::fs::read_dir(path)
            .map_err(|e| anyhow::anyhow!("--traces {}: {e}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect()
    } else {
        vec![path.to_path_buf()]
    };
    files.sort();
    let mut out = Vec::with_capacity(files.len());
    for f in files {
        let t = Trace::load(&f).map_err(|e| anyhow::anyhow!("--traces: {e}"))?;
        let no_latency = t.periods.iter().all(|p| p.latency_ms == 0.0);
        let t = if no_latency {
            t.with_latency(latency)
        } else {
            t
        };
        out.push(t.scaled(scale));
    }
    if out.is_empty() {
        anyhow::bail!("--traces {}: no trace files", path.display());
    }
    Ok(out)
}

/// Runs every trace with a fresh controller per session, in parallel, deterministically.
fn run_all(
    movie: &Movie,
    traces: &[Trace],
    abr_name: &str,
    settings: Settings,
    threads: usize,
) -> Vec<Session> {
    let threads = threads.max(1).min(traces.len());
    let mut sessions: Vec<Session> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|w| {
                s.spawn(move || {
                    let mut out = Vec::new();
                    for (id, t) in traces.iter().enumerate().skip(w).step_by(threads) {
                        if let Some(abr) = abr::by_name(abr_name) {
                            out.push(offline::run(id, movie, t, abr, settings).session);
                        }
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    sessions.sort_by_key(|s| s.id);
    sessions
}

fn trace_cmd(a: TraceArgs) -> anyhow::Result<()> {
    let names: Vec<String> = if a.abr == "all" {
        abr::NAMES.iter().map(|s| s.to_string()).collect()
    } else if abr::by_name(&a.abr).is_some() {
        vec![a.abr.clone()]
    } else {
        anyhow::bail!(
            "--abr {}: unknown controller (have {}, fixed:N, all)",
            a.abr,
            abr::NAMES.join(", ")
        );
    };
    if !(a.buffer_s.is_finite() && a.buffer_s > 0.0) {
        anyhow::bail!("--buffer-s must be > 0");
    }
    if !(a.scale.is_finite() && a.scale > 0.0) {
        anyhow::bail!("--scale must be > 0");
    }
    let movie = Movie::load(&a.movie).map_err(|e| anyhow::anyhow!("--movie: {e}"))?;
    let traces = load_traces(&a.traces, a.scale, a.latency_ms)?;
    let threads = if a.threads == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    } else {
        a.threads
    };
    let settings = Settings {
        buffer_max_ms: a.buffer_s * 1000.0,
        abandon: a.abandon,
        first_listed: a.first_listed,
    };
    let mut reports = Vec::new();
    println!(
        "{} traces x {} segments of {:.1} s, ladder {:?} kbit/s, buffer {} s",
        traces.len(),
        movie.len(),
        movie.segment_ms / 1000.0,
        movie.bitrates_kbps,
        a.buffer_s
    );
    println!("{}", output::table_header());
    for name in &names {
        let started = Instant::now();
        let sessions = run_all(&movie, &traces, name, settings, threads);
        let took = started.elapsed();
        let agg = Aggregate::of(&sessions);
        println!(
            "{}   ({:.1} ms)",
            output::table_row(name, sessions.len(), &agg),
            took.as_secs_f64() * 1000.0
        );
        reports.push(Report::new("trace", name, sessions, None));
    }
    if let Some(out) = &a.out {
        let json = if reports.len() == 1 {
            serde_json::to_string_pretty(&reports[0])?
        } else {
            serde_json::to_string_pretty(
                &serde_json::json!({ "mode": "trace", "abr": "all", "reports": reports }),
            )?
        };
        std::fs::write(out, json).map_err(|e| anyhow::anyhow!("--out {}: {e}", out.display()))?;
        println!("report: {}", out.display());
    }
    if let Some(csv) = &a.csv {
        std::fs::write(csv, output::csv(&reports))
            .map_err(|e| anyhow::anyhow!("--csv {}: {e}", csv.display()))?;
        println!("sessions: {}", csv.display());
    }
    if let Some(dir) = &a.plots {
        let mut files = output::distribution_plots(&reports);
        // Timelines of the first sessions with the first controller, re-run with steps kept.
        let kept: Vec<_> = traces
            .iter()
            .take(4)
            .enumerate()
            .filter_map(|(id, t)| {
                let abr = abr::by_name(&names[0])?;
                let o = offline::run(id, &movie, t, abr, settings);
                Some((t, o.steps, o.stalls))
            })
            .collect();
        let lines: Vec<plot::Timeline<'_>> = kept
            .iter()
            .map(|(t, steps, stalls)| plot::Timeline {
                title: format!("{} on {}", names[0], t.name),
                trace: t,
                steps,
                ladder_kbps: &movie.bitrates_kbps,
                stalls,
            })
            .collect();
        files.push(("timelines.svg", plot::timelines(&lines)));
        live_cmd::write_files(dir, &files)?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    service::telemetry::init_tracing_at("warn");
    let result = match cli.cmd {
        Cmd::Trace(a) => trace_cmd(a),
        Cmd::Run(a) => live_cmd::run(a, false),
        Cmd::Demo(a) => live_cmd::run(a, true),
        Cmd::Merge(a) => merge_cmd(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
