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
    if cli.check {
        let checked = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
            .and_then(|rt| {
                rt.block_on(origin::check(&config))
                    .map_err(|e| e.to_string())
            });
        return match checked {
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
    let (server, listen) = (config.server.clone(), config.listen);
    service::serve_main(&server, listen, move |listener, shutdown| {
        origin::run(listener, config, shutdown)
    })
}
