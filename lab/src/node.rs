//! What runs inside a host namespace: the lab starts itself there (`lab node ...`) as an
//! origin, an edge (shields are edges) or a player population, so one binary runs a whole
//! scenario and nothing else has to be built.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};

/// Serves an origin from its config file until SIGTERM.
pub fn origin(config: &Path) -> ExitCode {
    let cfg = match origin::config::Config::load(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let server = cfg.server.clone();
    let listen = cfg.listen;
    service::serve_main(&server, listen, move |l, stop| origin::run(l, cfg, stop))
}

/// Serves an edge (or shield) from its config file until SIGTERM.
pub fn edge(config: &Path) -> ExitCode {
    let cfg = match edge::config::Config::load(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let server = cfg.server.clone();
    let listen = cfg.listen;
    service::serve_main(&server, listen, move |l, stop| {
        edge::run(l, cfg, None, stop)
    })
}

/// Plays the population of a player-sim config and writes its report to `out`.
pub fn players(config: &Path, out: &Path) -> anyhow::Result<()> {
    let cfg = player_sim::config::Config::load(config).map_err(|e| anyhow!("{e}"))?;
    let pop = cfg
        .run
        .population(&cfg.run.url)
        .map_err(|e| anyhow!("{}: {e}", config.display()))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let result = rt.block_on(async {
        let metrics = player_sim::live::Metrics::new().context("metrics")?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        if !cfg.run.metrics_listen.is_empty() {
            let addr = cfg.run.metrics_listen.parse().context("metrics_listen")?;
            player_sim::live::serve_metrics(addr, metrics.clone(), async move {
                let _ = stopped.await;
            })
            .await
            .with_context(|| format!("metrics_listen {addr}"))?;
        }
        let shared = Arc::new(player_sim::live::Shared {
            client: service::client::new_client(Duration::from_secs(90)),
            metrics,
            settings: cfg.player.settings(),
        });
        let r = player_sim::live::run(&pop, shared, false).await;
        let _ = stop.send(());
        anyhow::Ok(r)
    })?;
    let sessions = result
        .outcomes
        .into_iter()
        .map(|o| o.session)
        .collect::<Vec<_>>();
    let report = player_sim::qoe::Report::new("live", &cfg.run.abr, sessions, None);
    std::fs::write(out, serde_json::to_string(&report)?)
        .with_context(|| format!("cannot write {}", out.display()))
}

/// Relays TCP from `listen` to `to`, holding every chunk `delay` in each direction: the
/// round trip to a far-away node (this machine's kernel has no netem). Memory is bounded:
/// at most 64 chunks of 64 KiB wait per direction per connection.
pub fn delay(
    listen: std::net::SocketAddr,
    to: std::net::SocketAddr,
    delay: Duration,
) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    rt.block_on(async move {
        let l = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        loop {
            let (client, _) = l.accept().await?;
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(to).await else {
                    return;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::join!(pump(cr, sw, delay), pump(sr, cw, delay));
            });
        }
    })
}

/// Copies `from` to `to`, each chunk written `delay` after it was read (order kept).
async fn pump(
    mut from: impl tokio::io::AsyncRead + Unpin,
    mut to: impl tokio::io::AsyncWrite + Unpin,
    delay: Duration,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(tokio::time::Instant, Vec<u8>)>(64);
    let reader = async move {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = from.read(&mut buf).await {
            if n == 0
                || tx
                    .send((tokio::time::Instant::now() + delay, buf[..n].to_vec()))
                    .await
                    .is_err()
            {
                break;
            }
        }
    };
    let writer = async move {
        while let Some((at, chunk)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}
