//! `lab`: rehearses a fleet on one machine. Each origin, shield, edge and player population
//! runs in its own network namespace (this same binary, started there as `lab node ...`);
//! a scenario file sets the topology, the players, timed events and the ranges the run's
//! figures must fall in.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod figures;
mod model;
mod net;
mod node;
mod prom;
mod prometheus;
mod run;
mod scenario;

/// Runs fleet scenarios in network namespaces (needs root and iproute2) and checks their
/// figures against the scenario's expected ranges.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Runs a scenario; exits 0 when every expected range holds, 1 when one does not.
    Run {
        /// Scenario file (TOML; see lab/README.md).
        scenario: PathBuf,
        /// Folder for summary.json, players.json, the nodes' configs and logs.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Also run Prometheus (Debian's `prometheus`) in the lab with the fleet's rules,
        /// and check that every dashboard query and recording rule returns data.
        #[arg(long)]
        prometheus: bool,
        /// Where the rules and the dashboard are (prometheus/rules.yml,
        /// grafana/live-stack.json).
        #[arg(long, value_name = "DIR", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy"))]
        deploy: PathBuf,
    },
    /// Checks scenario files and exits: 0 when valid, 2 with the problems otherwise.
    Check {
        /// Scenario files.
        #[arg(required = true)]
        scenarios: Vec<PathBuf>,
    },
    /// One node of a running scenario (started by `run` inside the node's namespace).
    #[command(hide = true)]
    Node {
        #[command(subcommand)]
        what: NodeCmd,
    },
}

#[derive(Subcommand, Debug)]
enum NodeCmd {
    Origin {
        #[arg(long)]
        config: PathBuf,
    },
    Edge {
        #[arg(long)]
        config: PathBuf,
    },
    Players {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    Delay {
        #[arg(long)]
        listen: std::net::SocketAddr,
        #[arg(long)]
        to: std::net::SocketAddr,
        #[arg(long, value_parser = humantime::parse_duration)]
        delay: std::time::Duration,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    service::telemetry::init_tracing_at("warn");
    match cli.cmd {
        Cmd::Node { what } => match what {
            NodeCmd::Origin { config } => node::origin(&config),
            NodeCmd::Edge { config } => node::edge(&config),
            NodeCmd::Delay { listen, to, delay } => match node::delay(listen, to, delay) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            },
            NodeCmd::Players { config, out } => match node::players(&config, &out) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            },
        },
        Cmd::Check { scenarios } => {
            let mut ok = true;
            for p in &scenarios {
                match scenario::Scenario::load(p) {
                    Ok(s) => println!(
                        "{}: OK ({} nodes, {} players, {} events, {} expected ranges)",
                        p.display(),
                        s.nodes.len(),
                        s.players.iter().map(|x| x.count).sum::<usize>(),
                        s.events.len(),
                        s.expect.len()
                    ),
                    Err(e) => {
                        eprintln!("error: {e}");
                        ok = false;
                    }
                }
            }
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            }
        }
        Cmd::Run {
            scenario,
            out,
            prometheus,
            deploy,
        } => {
            let s = match scenario::Scenario::load(&scenario) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            println!(
                "scenario {}: {} nodes, {} players, {:?}{}",
                s.name,
                s.nodes.len(),
                s.players.iter().map(|x| x.count).sum::<usize>(),
                s.duration,
                if s.description.is_empty() {
                    String::new()
                } else {
                    format!("\n  {}", s.description)
                }
            );
            let deploy = prometheus.then(|| prometheus::Deploy::under(&deploy));
            match run::run(&s, &out, deploy.as_ref()) {
                Ok(summary) => {
                    for (k, v) in &summary.figures {
                        let verdict = summary.expect.get(k).map_or(String::new(), |h| {
                            format!(
                                "  [{}, {}] {}",
                                h.min,
                                h.max,
                                if h.held { "held" } else { "NOT HELD" }
                            )
                        });
                        println!("  {k:<28} {v:>12.4}{verdict}");
                    }
                    for (k, h) in summary
                        .expect
                        .iter()
                        .filter(|(k, _)| !summary.figures.contains_key(*k))
                    {
                        println!("  {k:<28} {:>12}  [{}, {}] NOT MEASURED", "-", h.min, h.max);
                    }
                    println!(
                        "{}: {} (summary: {})",
                        summary.scenario,
                        if summary.held {
                            "every range held"
                        } else {
                            "FAILED"
                        },
                        out.join("summary.json").display()
                    );
                    if summary.held {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
    }
}
