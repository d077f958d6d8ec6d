//! `edge`: HLS caching reverse proxy.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use edge::config::{Config, check_upstream_url};

/// HTTP caching reverse proxy for HLS: one upstream fetch per object however large the
/// audience (request coalescing with streaming), a byte-bounded cache, stale serving when the
/// origin fails, and load shedding that protects viewers already watching.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Config file (TOML); see config/edge.toml.
    #[arg(long, value_name = "PATH")]
    config: PathBuf,
    /// Listen address, overriding the config's `listen`.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Upstream base URL, repeatable, in order of preference; replaces `upstream.urls`.
    #[arg(long = "upstream", value_name = "URL")]
    upstreams: Vec<String>,
    /// One TLS listener, replacing the config's `listeners` (needs --tls-cert and --tls-key).
    #[arg(long, value_name = "ADDR", requires_all = ["tls_cert", "tls_key"])]
    listen_tls: Option<SocketAddr>,
    /// PEM certificate chain for --listen-tls (replaces `tls.certificates`).
    #[arg(long, value_name = "FILE", requires = "listen_tls")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --listen-tls.
    #[arg(long, value_name = "FILE", requires = "listen_tls")]
    tls_key: Option<PathBuf>,
    /// Access log file (`-` for standard output), replacing `access_log.path`.
    #[arg(long, value_name = "FILE")]
    access_log: Option<String>,
    /// Admin listener (metrics, health, purge, reload, drain), replacing `admin.listen`.
    #[arg(long, value_name = "ADDR")]
    admin_listen: Option<SocketAddr>,
    /// Unix socket for in-place upgrades, replacing `upgrade_socket`.
    #[arg(long, value_name = "PATH")]
    upgrade_socket: Option<PathBuf>,
    /// Take the listening sockets from the edge running at the upgrade socket, then tell it
    /// to drain (in-place upgrade; see the README's runbook).
    #[arg(long)]
    upgrade: bool,
    /// Validate the config and exit: 0 when valid, 2 with the problems otherwise.
    #[arg(long)]
    check: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    service::telemetry::init_tracing();
    for u in &cli.upstreams {
        if let Err(e) = check_upstream_url(u) {
            eprintln!("error: --upstream {u}: {e}");
            return ExitCode::from(2);
        }
    }
    let config = match load(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if cli.check {
        println!(
            "config OK: {} upstream(s), cache {} bytes, {} more listener(s) ({} TLS)",
            config.upstream.urls.len(),
            config.cache.capacity_bytes,
            config.listeners.len(),
            config.listeners.iter().filter(|l| l.tls).count()
        );
        return ExitCode::SUCCESS;
    }
    if let Err(e) = service::telemetry::set_filter(&config.log_level) {
        eprintln!("error: log_level: {e}");
        return ExitCode::from(2);
    }
    let mut upgrade = edge::Upgrade::default();
    let mut listen = service::Listen::Addr(config.listen);
    if cli.upgrade {
        let Some(path) = &config.upgrade_socket else {
            eprintln!("error: --upgrade needs --upgrade-socket or `upgrade_socket` in the config");
            return ExitCode::from(2);
        };
        let mut taken = match service::handoff::take(path) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: --upgrade: {e}");
                return ExitCode::FAILURE;
            }
        };
        upgrade.taken = std::mem::take(&mut taken.sockets);
        if let Some(i) = upgrade
            .taken
            .iter()
            .position(|l| l.local_addr().ok() == Some(config.listen))
        {
            listen = service::Listen::Taken(upgrade.taken.swap_remove(i));
        }
        upgrade.predecessor = Some(taken);
    }
    let server = config.server.clone();
    // SIGHUP and POST /reload re-read the same file with the same flags applied.
    let reload_from: edge::ReloadSource = std::sync::Arc::new(move || load(&cli));
    service::serve_main(&server, listen, move |listener, shutdown| {
        edge::run_upgraded(listener, config, Some(reload_from), upgrade, shutdown)
    })
}

/// The config file with the command line's overrides applied, its certificates loaded to
/// check them: what the edge starts with, and what a reload applies.
fn load(cli: &Cli) -> Result<Config, String> {
    let mut config = Config::load(&cli.config).map_err(|e| e.to_string())?;
    if let Some(l) = cli.listen {
        config.listen = l;
    }
    if !cli.upstreams.is_empty() {
        config.upstream.urls = cli.upstreams.clone();
    }
    if let (Some(addr), Some(cert), Some(key)) = (cli.listen_tls, &cli.tls_cert, &cli.tls_key) {
        config.listeners = vec![edge::config::ListenerConfig { addr, tls: true }];
        config.tls.certificates = vec![service::tls::CertSpec {
            cert: cert.clone(),
            key: key.clone(),
            names: Vec::new(),
        }];
        // The config's certificates were checked on load; these replace them.
        service::tls::SniCerts::load(&config.tls.certificates)
            .map_err(|e| format!("--tls-cert/--tls-key: {e}"))?;
    }
    if let Some(p) = &cli.access_log {
        config.access_log.path = Some(p.clone());
    }
    if let Some(a) = cli.admin_listen {
        config.admin.listen = a;
    }
    if let Some(p) = &cli.upgrade_socket {
        config.upgrade_socket = Some(p.clone());
    }
    Ok(config)
}
