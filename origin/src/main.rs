//! `origin`: live MPEG-TS in, aligned ABR ladder of HLS segments and playlists out.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use origin::config::Config;

/// Live HLS origin: cuts MPEG-TS input (embedded loop, HTTP push or UDP) into an aligned ABR
/// ladder and serves master/media playlists and segments over HTTP.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Config file (TOML). Without it, the embedded default: loop stream `demo` on 127.0.0.1:8080.
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Listen address, overriding the config's `listen`.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Validate the config (and loop files) and exit: 0 when valid, 2 with the problems otherwise.
    #[arg(long)]
    check: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    service::telemetry::init_tracing();
    let mut config = match &cli.config {
        Some(path) => match Config::load(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        },
        None => Config::demo(),
    };
    if let Some(l) = cli.listen {
        config.listen = l;
    }
    let rt = match config.server.runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        if cli.check {
            return match origin::check(&config).await {
                Ok(()) => {
                    println!("config OK: {} stream(s)", config.streams.len());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            };
        }
        let listener = match tokio::net::TcpListener::bind(config.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!(
                    "error: cannot listen on {} (--listen / `listen`): {e}",
                    config.listen
                );
                return ExitCode::FAILURE;
            }
        };
        match origin::run(listener, config, service::shutdown::signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
