//! HLS-aware HTTP caching reverse proxy: concurrent requests for one object become one
//! upstream fetch whose body streams to every waiter as it arrives; complete objects live in
//! a byte-bounded moka cache; stale copies are served while revalidating or when upstreams
//! fail; overload is shed so viewers already watching keep playing.
//!
//! [`run`] takes a bound listener, a config and a shutdown future, so tests start the real
//! proxy in-process on port 0.

pub mod access_log;
pub mod breaker;
pub mod cache_control;
pub mod classify;
pub mod config;
pub mod flight;
pub mod key;
pub mod metrics;
pub mod object;
pub mod overload;
pub mod pace;
pub mod proxy;
pub mod retry;
pub mod token;
pub mod upstream;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::flight::FlightTable;
use crate::key::CacheKey;
use crate::metrics::Metrics;
use crate::object::CachedObject;
use crate::overload::Admission;
use crate::upstream::Upstreams;

/// Why the edge could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Metrics could not be registered (a bug).
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The access log could not be opened.
    #[error("access_log.path {0}: {1}")]
    AccessLog(String, std::io::Error),
    /// The upstream TLS settings could not be built.
    #[error("upstream.ca_file: {0}")]
    UpstreamTls(String),
    /// The SIGHUP handler could not be installed.
    #[error("cannot listen for SIGHUP: {0}")]
    Signal(#[from] std::io::Error),
}

/// Shared state of a running edge.
pub struct App {
    /// The config it runs with.
    pub cfg: Config,
    /// Complete objects, weighed in bytes.
    pub cache: Cache<CacheKey, Arc<CachedObject>>,
    /// Fetches under way.
    pub flights: Arc<FlightTable>,
    /// Where objects come from.
    pub upstreams: Arc<Upstreams>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Load shedding.
    pub admission: Admission,
    /// Rate limit for warnings that repeat per request (an upstream down, a breaker open).
    pub log_limit: service::telemetry::LogLimit,
    /// The access log, when configured.
    pub access_log: Option<access_log::AccessLog>,
}

/// moka's per-entry expiry: a coarse upper bound (freshness itself is decided per request
/// with tokio's clock).
struct UsefulFor;

impl moka::Expiry<CacheKey, Arc<CachedObject>> for UsefulFor {
    fn expire_after_create(
        &self,
        _k: &CacheKey,
        v: &Arc<CachedObject>,
        _at: std::time::Instant,
    ) -> Option<Duration> {
        Some(
            v.freshness
                .useful_for()
                .saturating_add(Duration::from_secs(1)),
        )
    }
    fn expire_after_update(
        &self,
        _k: &CacheKey,
        v: &Arc<CachedObject>,
        _at: std::time::Instant,
        _d: Option<Duration>,
    ) -> Option<Duration> {
        Some(
            v.freshness
                .useful_for()
                .saturating_add(Duration::from_secs(1)),
        )
    }
}

impl App {
    /// Builds the edge's state from a validated config.
    pub fn new(cfg: Config) -> Result<Arc<Self>, StartError> {
        let metrics = Arc::new(Metrics::new()?);
        let cache = Cache::builder()
            .max_capacity(cfg.cache.capacity_bytes)
            .weigher(|k: &CacheKey, v: &Arc<CachedObject>| {
                v.weight().saturating_add(k.as_str().len() as u32)
            })
            .expire_after(UsefulFor)
            .build();
        // Validated with the config: a CA file that does not load never gets here.
        let tls = service::client::tls_config(cfg.upstream.ca_file.as_deref())
            .map_err(|e| StartError::UpstreamTls(e.to_string()))?;
        let client = service::client::new_client_with(Duration::from_secs(90), tls);
        let upstreams = Arc::new(Upstreams::new(&cfg.upstream, client, metrics.clone()));
        let admission = Admission::new(cfg.overload.clone(), metrics.active_requests.clone());
        let access_log = match cfg.access_log.path.as_deref() {
            None => None,
            Some(p) => {
                let sink = if p == "-" {
                    access_log::Sink::Stdout
                } else {
                    access_log::Sink::File(p.into())
                };
                Some(
                    access_log::AccessLog::start(
                        sink,
                        cfg.access_log.format,
                        metrics.access_log_dropped.clone(),
                    )
                    .map_err(|e| StartError::AccessLog(p.to_string(), e))?,
                )
            }
        };
        Ok(Arc::new(Self {
            cfg,
            cache,
            flights: Arc::new(FlightTable::default()),
            upstreams,
            metrics,
            admission,
            log_limit: service::telemetry::LogLimit::new(Duration::from_secs(5)),
            access_log,
        }))
    }
}

/// Why the edge could not serve.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Start-up failed.
    #[error(transparent)]
    Start(#[from] StartError),
    /// A listener from config could not be bound.
    #[error("cannot listen on {addr} (`listeners`): {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The TLS certificates could not be loaded.
    #[error("tls.certificates: {0}")]
    Tls(#[from] service::tls::TlsError),
    /// rustls refused the TLS settings (a bug).
    #[error("TLS settings: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The configured certificates (replaceable on reload) and their acceptor, if any TLS
/// listener needs them.
pub struct Tls {
    /// The certificates in service.
    pub certs: Arc<service::tls::Certs>,
    /// The acceptor serving them.
    pub acceptor: tokio_rustls::TlsAcceptor,
}

/// Loads the TLS certificates of `cfg`, if any TLS listener needs them.
pub fn tls_setup(cfg: &Config) -> Result<Option<Tls>, RunError> {
    if !cfg.listeners.iter().any(|l| l.tls) {
        return Ok(None);
    }
    let certs = service::tls::Certs::new(service::tls::SniCerts::load(&cfg.tls.certificates)?);
    let acceptor = service::tls::acceptor(certs.clone())?;
    Ok(Some(Tls { certs, acceptor }))
}

/// Re-reads the config for a reload (the file with the command line's overrides applied),
/// or says why it cannot.
pub type ReloadSource = Arc<dyn Fn() -> Result<Config, String> + Send + Sync>;

/// Applies a reloaded config: today the TLS certificates (the next handshakes get them,
/// open connections keep theirs). An invalid config or certificate is refused whole and
/// the running one stays.
pub fn reload(
    app: &App,
    certs: Option<&service::tls::Certs>,
    source: &ReloadSource,
) -> Result<(), String> {
    let result = source().and_then(|cfg| match certs {
        Some(c) => service::tls::SniCerts::load(&cfg.tls.certificates)
            .map(|new| c.replace(new))
            .map_err(|e| format!("tls.certificates: {e}")),
        None => Ok(()),
    });
    if result.is_ok()
        && let Some(log) = &app.access_log
    {
        // logrotate moves the file and sends SIGHUP: write to a new one.
        log.reopen();
    }
    let outcome = if result.is_ok() { "ok" } else { "refused" };
    app.metrics.reloads.with_label_values(&[outcome]).inc();
    match &result {
        Ok(()) => tracing::info!("config reloaded (TLS certificates)"),
        Err(e) => tracing::warn!(error = %e, "reload refused; the running config stays"),
    }
    result
}

/// Runs the edge on `listener` (the plain `listen` socket) and binds the config's other
/// `listeners` itself, until `shutdown` resolves, then drains.
pub async fn run(
    listener: TcpListener,
    cfg: Config,
    reload_from: Option<ReloadSource>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let tls = tls_setup(&cfg)?;
    let mut listeners = vec![service::Listener {
        tcp: listener,
        tls: None,
    }];
    for l in &cfg.listeners {
        let tcp =
            service::bind(l.addr, cfg.server.listen_backlog).map_err(|source| RunError::Bind {
                addr: l.addr,
                source,
            })?;
        listeners.push(service::Listener {
            tcp,
            tls: if l.tls {
                tls.as_ref().map(|t| t.acceptor.clone())
            } else {
                None
            },
        });
    }
    run_on(listeners, cfg, tls.map(|t| t.certs), reload_from, shutdown).await?;
    Ok(())
}

/// Runs the edge on listeners bound by the caller (tests bind TLS ports on port 0), with
/// the TLS certificates they serve; SIGHUP reloads from `reload_from`.
pub async fn run_on(
    listeners: Vec<service::Listener>,
    cfg: Config,
    certs: Option<Arc<service::tls::Certs>>,
    reload_from: Option<ReloadSource>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let limits = cfg.server.limits();
    let app = App::new(cfg)?;
    let health = tokio::spawn(app.upstreams.clone().check_health());
    let hangups = match reload_from {
        Some(source) => {
            // Installed whenever a reload source exists: SIGHUP's default would kill us.
            let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
            let app = app.clone();
            Some(tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    let _ = reload(&app, certs.as_deref(), &source);
                }
            }))
        }
        None => None,
    };
    let addrs: Vec<String> = listeners
        .iter()
        .map(|l| {
            let a = l
                .tcp
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_default();
            if l.tls.is_some() {
                format!("https://{a}")
            } else {
                format!("http://{a}")
            }
        })
        .collect();
    tracing::info!(
        listeners = ?addrs,
        upstreams = ?app.cfg.upstream.urls,
        cache_bytes = app.cfg.cache.capacity_bytes,
        "edge serving"
    );
    let h = app.clone();
    service::serve_listeners(
        listeners,
        move |req, peer| proxy::handle(h.clone(), req, peer),
        limits,
        Some(app.metrics.conns.clone()),
        shutdown,
    )
    .await;
    health.abort();
    if let Some(h) = hangups {
        h.abort();
    }
    tracing::info!("edge stopped");
    Ok(())
}
