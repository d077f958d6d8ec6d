//! `player-sim`: ABR player simulator (not built yet: this binary only documents itself).

use clap::Parser;

/// Simulates many ABR players against a live HLS URL (or offline over network traces) and
/// reports quality of experience. Not implemented yet: see the player-simulator issue.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {}

fn main() -> std::process::ExitCode {
    let _ = Cli::parse();
    eprintln!("player-sim: no simulation is implemented yet; see --help");
    std::process::ExitCode::from(2)
}
