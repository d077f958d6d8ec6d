//! `edge`: caching reverse proxy (not built yet: this binary only documents itself).

use clap::Parser;

/// HTTP caching reverse proxy for HLS: request coalescing with streaming, byte-bounded
/// cache, stale serving, load shedding. Not implemented yet: see the edge issue.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {}

fn main() -> std::process::ExitCode {
    let _ = Cli::parse();
    eprintln!("edge: the proxy is not implemented yet; see --help");
    std::process::ExitCode::from(2)
}
