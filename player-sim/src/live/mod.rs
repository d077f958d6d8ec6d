//! Live mode: a population of players, one tokio task each, against a real HLS URL, with
//! seeded joins and exits, per-player bandwidth schedules, `/metrics` and a progress bar.

pub mod link;
pub mod metrics;
pub mod player;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use service::client::HttpClient;
use tokio::time::Instant;

use crate::abr;
use crate::join::{Exit, Join};
use crate::schedule::SplitMix;
use crate::trace::Trace;
pub use metrics::Metrics;
pub use player::Outcome;

/// How every player behaves (the `[player]` table of the config).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Largest buffer, ms.
    pub buffer_max_ms: f64,
    /// Buffer needed to start playback, ms.
    pub start_threshold_ms: f64,
    /// Buffer needed to resume after a stall, ms.
    pub resume_threshold_ms: f64,
    /// After each stall the resume threshold doubles up to this, ms (0: it stays).
    pub resume_growth_max_ms: f64,
    /// Hold-back from the live edge in target durations (RFC 8216: at least 3).
    pub live_sync_segments: u32,
    /// Added to the hold-back per stall, up to one target duration, ms (hls.js's
    /// `liveSyncOnStallIncrease`).
    pub live_sync_stall_increase_ms: f64,
    /// Deadline of one request, head and body.
    pub request_timeout: Duration,
    /// Retries of one request before the session fails.
    pub max_retries: u32,
    /// First backoff ceiling (doubles per attempt, full jitter).
    pub retry_base: Duration,
    /// Largest backoff ceiling.
    pub retry_cap: Duration,
    /// Abandon a download that will not finish before the buffer runs dry (hls.js rule).
    pub abandon: bool,
    /// Seed of every random choice.
    pub seed: u64,
    /// CMCD (CTA-5004) with every request: off, as a query parameter or as headers.
    pub cmcd: crate::cmcd::Mode,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            buffer_max_ms: 30_000.0,
            // Chromium's media renderer: 200 ms to start or resume, doubling per stall up
            // to 3 s (hls.js itself plays as soon as the element can).
            start_threshold_ms: 200.0,
            resume_threshold_ms: 200.0,
            resume_growth_max_ms: 3_000.0,
            live_sync_segments: 3,
            live_sync_stall_increase_ms: 1000.0,
            request_timeout: Duration::from_secs(20),
            max_retries: 6,
            retry_base: Duration::from_millis(500),
            retry_cap: Duration::from_secs(8),
            abandon: true,
            seed: 1,
            cmcd: crate::cmcd::Mode::Off,
        }
    }
}

/// What every player task shares.
#[derive(Debug)]
pub struct Shared {
    /// The pooled HTTP client.
    pub client: HttpClient,
    /// `player_*` metrics.
    pub metrics: Metrics,
    /// Player behaviour.
    pub settings: Settings,
}

/// A population to run.
#[derive(Debug, Clone)]
pub struct Population {
    /// Master (or media) playlist URL.
    pub url: String,
    /// Number of players.
    pub players: usize,
    /// Length of the run.
    pub duration: Duration,
    /// Controller name (see [`abr::by_name`]).
    pub abr: String,
    /// The bandwidth schedule every player follows (before `vary`).
    pub schedule: Trace,
    /// Each player's schedule is scaled by a seeded factor in [1 − vary, 1 + vary].
    pub vary: f64,
    /// When players join.
    pub join: Join,
    /// Who leaves early, and when.
    pub exit: Option<Exit>,
    /// Timelines are kept for this many players (ids 0..n), for plots.
    pub record: usize,
}

/// The result of a live run.
#[derive(Debug)]
pub struct RunResult {
    /// One per player that joined before the end, by id.
    pub outcomes: Vec<Outcome>,
    /// Each player's schedule, by id (for plots).
    pub schedules: Vec<Arc<Trace>>,
}

/// Runs `pop` and waits for every player to leave. `progress` draws a bar on stderr (hidden
/// when stderr is not a terminal).
pub async fn run(pop: &Population, shared: Arc<Shared>, progress: bool) -> RunResult {
    let started = Instant::now();
    let end = started + pop.duration;
    let joins = pop.join.times(pop.players);
    let leaves = pop
        .exit
        .as_ref()
        .map(|e| e.times(pop.players, shared.settings.seed))
        .unwrap_or_default();
    let mut schedules = Vec::with_capacity(pop.players);
    let mut tasks = Vec::with_capacity(pop.players);
    for (id, join_ms) in joins.iter().enumerate() {
        let mut rng = SplitMix(shared.settings.seed ^ (id as u64).wrapping_mul(0x2545_f491));
        let factor = 1.0 + pop.vary * (2.0 * rng.unit() - 1.0);
        let mut t = pop.schedule.clone().scaled(factor.max(0.01));
        t.name = format!("{}#{id}", pop.schedule.name);
        let trace = Arc::new(t);
        schedules.push(trace.clone());
        let Some(abr) = abr::by_name(&pop.abr) else {
            continue;
        };
        let leave_at = leaves
            .get(id)
            .copied()
            .flatten()
            .map(|ms| started + Duration::from_secs_f64(ms / 1000.0))
            .map_or(end, |l| l.min(end));
        let join_at = started + Duration::from_secs_f64(join_ms / 1000.0);
        if leave_at <= join_at {
            // Joins after the run (or its exit) is over: never watches, so no session.
            continue;
        }
        let spec = player::Spec {
            id,
            abr,
            trace,
            join_at,
            leave_at,
            record: id < pop.record,
        };
        tasks.push(tokio::spawn(player::run(
            spec,
            pop.url.clone(),
            shared.clone(),
        )));
    }
    let bar = progress.then(|| progress_bar(pop.duration));
    let ticker = bar.clone().map(|bar| {
        let shared = shared.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let m = &shared.metrics;
                bar.set_position(started.elapsed().as_secs());
                bar.set_message(format!(
                    "players {} · stalled {} · rebuffer {:.1} s · requests {}",
                    m.active.get(),
                    m.stalled.get(),
                    m.rebuffer_seconds.get(),
                    requests_total(m)
                ));
            }
        })
    });
    let mut outcomes = Vec::with_capacity(tasks.len());
    for t in tasks {
        match t.await {
            Ok(o) => outcomes.push(o),
            Err(e) => tracing::error!(error = %e, "player task failed"),
        }
    }
    if let Some(t) = ticker {
        t.abort();
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    RunResult {
        outcomes,
        schedules,
    }
}

fn requests_total(m: &Metrics) -> u64 {
    use prometheus::core::Collector;
    m.requests
        .collect()
        .iter()
        .flat_map(|f| f.get_metric())
        .map(|m| m.get_counter().get_value() as u64)
        .sum()
}

fn progress_bar(duration: Duration) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(duration.as_secs().max(1));
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} s  {msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Serves `/metrics` and `/healthz` for the run on `addr` until `stop` resolves.
pub async fn serve_metrics(
    addr: SocketAddr,
    metrics: Metrics,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<SocketAddr> {
    let listener = service::bind(addr, service::server::DEFAULT_LISTEN_BACKLOG)?;
    let local = listener.local_addr()?;
    let registry = metrics.registry.clone();
    let handler = move |req: http::Request<hyper::body::Incoming>, _peer| {
        let registry = registry.clone();
        async move {
            match req.uri().path() {
                "/metrics" => service::body::metrics(&registry),
                "/healthz" => service::body::text(http::StatusCode::OK, "ok\n"),
                _ => service::body::text(http::StatusCode::NOT_FOUND, "not found\n"),
            }
        }
    };
    tokio::spawn(service::server::serve(
        listener,
        handler,
        service::server::ServerLimits::default(),
        stop,
    ));
    Ok(local)
}
