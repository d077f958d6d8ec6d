//! HLS-aware HTTP caching reverse proxy: concurrent requests for one object become one
//! upstream fetch whose body streams to every waiter as it arrives; complete objects live in
//! a byte-bounded moka cache; stale copies are served while revalidating or when upstreams
//! fail; overload is shed so viewers already watching keep playing.
//!
//! [`run`] takes a bound listener, a config and a shutdown future, so tests start the real
//! proxy in-process on port 0.

pub mod access_log;
pub mod admin;
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
pub mod prefetch;
pub mod proxy;
pub mod rendezvous;
pub mod retry;
pub mod token;
pub mod upstream;
pub mod via;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
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
    Signal(std::io::Error),
    /// The listening sockets could not be copied for a successor.
    #[error("upgrade_socket: cannot copy the listening sockets: {0}")]
    Sockets(std::io::Error),
    /// The upgrade socket could not be bound.
    #[error("upgrade_socket: {0}")]
    Upgrade(#[from] service::handoff::HandoffError),
}

/// One generation of the edge's state: a config and what is built from it. A reload
/// builds the next generation; a request or fetch under way keeps the one it started with,
/// and the cache, flights, metrics and admission carry over from one to the next.
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
    pub admission: Arc<Admission>,
    /// Rate limit for warnings that repeat per request (an upstream down, a breaker open).
    pub log_limit: Arc<service::telemetry::LogLimit>,
    /// The access log, when configured.
    pub access_log: Option<Arc<access_log::AccessLog>>,
    /// This node's `Via` entry (`1.1 NODE_ID`), built once per config.
    pub via: http::HeaderValue,
    /// Pre-warming: the last segment seen per media playlist (kept across reloads).
    pub prefetch_seen: prefetch::Seen,
    /// Pre-warming: fetches allowed at once (`prefetch.max_concurrent`).
    pub prefetch_permits: Arc<tokio::sync::Semaphore>,
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

fn new_cache(
    capacity_bytes: u64,
    wasted: prometheus::IntCounter,
) -> Cache<CacheKey, Arc<CachedObject>> {
    Cache::builder()
        .max_capacity(capacity_bytes)
        .weigher(|k: &CacheKey, v: &Arc<CachedObject>| {
            v.weight().saturating_add(k.as_str().len() as u32)
        })
        .expire_after(UsefulFor)
        // A prefetched object leaving unread (evicted, expired, replaced, purged) was
        // fetched for nothing.
        .eviction_listener(move |_k, v: Arc<CachedObject>, _cause| {
            if v.claim_prefetched() {
                wasted.inc();
            }
        })
        .build()
}

fn open_access_log(
    cfg: &config::AccessLogConfig,
    dropped: &prometheus::IntCounter,
) -> Result<Option<Arc<access_log::AccessLog>>, StartError> {
    let Some(p) = cfg.path.as_deref() else {
        return Ok(None);
    };
    let sink = if p == "-" {
        access_log::Sink::Stdout
    } else {
        access_log::Sink::File(p.into())
    };
    access_log::AccessLog::start(sink, cfg.format, dropped.clone())
        .map(|l| Some(Arc::new(l)))
        .map_err(|e| StartError::AccessLog(p.to_string(), e))
}

impl App {
    /// Builds the edge's first generation from a validated config.
    pub fn new(cfg: Config) -> Result<Self, StartError> {
        let metrics = Arc::new(Metrics::new()?);
        // Validated with the config: a CA file that does not load never gets here.
        let tls = service::client::tls_config(cfg.upstream.ca_file.as_deref())
            .map_err(|e| StartError::UpstreamTls(e.to_string()))?;
        let client = service::client::new_client_with(Duration::from_secs(90), tls);
        let upstreams = Arc::new(Upstreams::new(&cfg.upstream, client, metrics.clone(), None));
        let admission = Arc::new(Admission::new(
            &cfg.overload,
            metrics.active_requests.clone(),
        ));
        let access_log = open_access_log(&cfg.access_log, &metrics.access_log_dropped)?;
        Ok(Self {
            via: via::own_entry(&cfg.node_id),
            cache: new_cache(cfg.cache.capacity_bytes, metrics.prefetched_wasted.clone()),
            prefetch_seen: prefetch::Seen::default(),
            prefetch_permits: Arc::new(tokio::sync::Semaphore::new(cfg.prefetch.max_concurrent)),
            cfg,
            flights: Arc::new(FlightTable::default()),
            upstreams,
            metrics,
            admission,
            log_limit: Arc::new(service::telemetry::LogLimit::new(Duration::from_secs(5))),
            access_log,
        })
    }

    /// The next generation for a reloaded `cfg`, reusing what did not change: the upstream
    /// set (with its health and breakers) and its connection pool, the cache (or a smaller
    /// or larger one holding its objects), the access log's writer.
    fn next(&self, cfg: Config) -> Result<Self, StartError> {
        let upstreams = if cfg.upstream == self.cfg.upstream {
            self.upstreams.clone()
        } else {
            let client = if cfg.upstream.ca_file == self.cfg.upstream.ca_file {
                self.upstreams.client().clone()
            } else {
                let tls = service::client::tls_config(cfg.upstream.ca_file.as_deref())
                    .map_err(|e| StartError::UpstreamTls(e.to_string()))?;
                service::client::new_client_with(Duration::from_secs(90), tls)
            };
            Arc::new(Upstreams::new(
                &cfg.upstream,
                client,
                self.metrics.clone(),
                Some(&self.upstreams),
            ))
        };
        let access_log = if cfg.access_log.path == self.cfg.access_log.path
            && cfg.access_log.format == self.cfg.access_log.format
        {
            self.access_log.clone()
        } else {
            open_access_log(&cfg.access_log, &self.metrics.access_log_dropped)?
        };
        let cache = if cfg.cache.capacity_bytes == self.cfg.cache.capacity_bytes {
            self.cache.clone()
        } else {
            // moka cannot resize a cache: a new one takes the objects, and a smaller one
            // evicts down to its capacity by its own policy. A fetch finishing meanwhile
            // stores into the old one, which costs a miss later, nothing more.
            let resized = new_cache(
                cfg.cache.capacity_bytes,
                self.metrics.prefetched_wasted.clone(),
            );
            for (k, v) in self.cache.iter() {
                resized.insert((*k).clone(), v);
            }
            resized.run_pending_tasks();
            resized
        };
        let prefetch_permits = if cfg.prefetch.max_concurrent == self.cfg.prefetch.max_concurrent {
            self.prefetch_permits.clone()
        } else {
            Arc::new(tokio::sync::Semaphore::new(cfg.prefetch.max_concurrent))
        };
        Ok(Self {
            via: via::own_entry(&cfg.node_id),
            prefetch_seen: self.prefetch_seen.clone(),
            prefetch_permits,
            cfg,
            cache,
            flights: self.flights.clone(),
            upstreams,
            metrics: self.metrics.clone(),
            admission: self.admission.clone(),
            log_limit: self.log_limit.clone(),
            access_log,
        })
    }
}

/// Re-reads the config for a reload (the file with the command line's overrides applied),
/// or says why it cannot.
pub type ReloadSource = Arc<dyn Fn() -> Result<Config, String> + Send + Sync>;

/// A running edge: the current generation, and what reloads and drains it.
pub struct Edge {
    current: ArcSwap<App>,
    certs: Option<Arc<service::tls::Certs>>,
    source: Option<ReloadSource>,
    /// The current upstream set's health checks.
    health: std::sync::Mutex<Option<tokio::task::AbortHandle>>,
    /// One reload at a time (SIGHUP and `POST /reload` may coincide).
    reloading: std::sync::Mutex<()>,
    /// The node id chosen at start when the config sets none (kept across reloads).
    auto_node: Option<String>,
    drain: tokio::sync::watch::Sender<bool>,
}

impl Edge {
    /// An edge serving `app`, its health checks started (call inside a runtime).
    pub fn new(
        app: App,
        certs: Option<Arc<service::tls::Certs>>,
        source: Option<ReloadSource>,
        auto_node: Option<String>,
    ) -> Arc<Self> {
        let health = tokio::spawn(app.upstreams.clone().check_health()).abort_handle();
        Arc::new(Self {
            current: ArcSwap::from_pointee(app),
            certs,
            source,
            health: std::sync::Mutex::new(Some(health)),
            reloading: std::sync::Mutex::new(()),
            auto_node,
            drain: tokio::sync::watch::channel(false).0,
        })
    }

    /// The current generation.
    pub fn app(&self) -> Arc<App> {
        self.current.load_full()
    }

    /// Re-reads the config and applies it: upstreams, cache capacity, TLS certificates,
    /// access log, tokens, overload limits and every per-request setting. Open connections,
    /// fetches under way and the cache carry on. An invalid config or certificate is refused
    /// whole and the running one stays. Returns what changed.
    pub fn reload(&self) -> Result<String, String> {
        let _one = self.reloading.lock().unwrap_or_else(|p| p.into_inner());
        let result = self.apply_reload();
        let app = self.app();
        let outcome = if result.is_ok() { "ok" } else { "refused" };
        app.metrics.reloads.with_label_values(&[outcome]).inc();
        match &result {
            Ok(what) => tracing::info!(changed = %what, "config reloaded"),
            Err(e) => tracing::warn!(error = %e, "reload refused; the running config stays"),
        }
        result
    }

    fn apply_reload(&self) -> Result<String, String> {
        let source = self
            .source
            .as_ref()
            .ok_or("this edge was started without a config file to reload")?;
        let mut cfg = source()?;
        if cfg.node_id.is_empty()
            && let Some(n) = &self.auto_node
        {
            cfg.node_id = n.clone();
        }
        let certs = match &self.certs {
            Some(_) => Some(
                service::tls::SniCerts::load(&cfg.tls.certificates)
                    .map_err(|e| format!("tls.certificates: {e}"))?,
            ),
            None => None,
        };
        let old = self.app();
        let next = old.next(cfg).map_err(|e| e.to_string())?;
        let changed = changes(&old.cfg, &next.cfg);
        // Nothing has changed until here; from here on nothing can fail.
        if let (Some(c), Some(new)) = (&self.certs, certs) {
            c.replace(new);
        }
        next.admission.set_limits(&next.cfg.overload);
        if !Arc::ptr_eq(&next.upstreams, &old.upstreams) {
            let health = tokio::spawn(next.upstreams.clone().check_health()).abort_handle();
            let mut h = self.health.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(old) = h.replace(health) {
                old.abort();
            }
        }
        if let Some(log) = &next.access_log {
            // logrotate moves the file and sends SIGHUP: write to a new one.
            log.reopen();
        }
        if next.cfg.log_level != old.cfg.log_level
            && let Err(e) = service::telemetry::set_filter(&next.cfg.log_level)
        {
            // Checked with the config; a failure here is a bug, not a reason to refuse.
            tracing::warn!(error = %e, "log_level not applied");
        }
        self.current.store(Arc::new(next));
        Ok(changed)
    }

    /// Starts draining: the listeners stop accepting, connections finish what they are
    /// doing (HTTP/1.1 ones are told `Connection: close`, HTTP/2 ones get GOAWAY) within
    /// `server.drain_timeout`, then the edge exits.
    pub fn drain(&self) {
        self.drain.send_replace(true);
    }

    /// Whether a drain has started.
    pub fn draining(&self) -> bool {
        *self.drain.borrow()
    }

    /// Resolves when a drain starts.
    pub async fn drained(&self) {
        let mut rx = self.drain.subscribe();
        let _ = rx.wait_for(|d| *d).await;
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        if let Some(h) = self
            .health
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            h.abort();
        }
    }
}

/// What a reload changed, for the log and the `POST /reload` answer; settings that need a
/// restart (or an in-place upgrade) are named as such.
fn changes(old: &Config, new: &Config) -> String {
    let mut applied = Vec::new();
    let mut restart = Vec::new();
    let mut note = |same: bool, key: &'static str, needs_restart: bool| {
        if !same {
            if needs_restart {
                restart.push(key);
            } else {
                applied.push(key);
            }
        }
    };
    note(old.upstream == new.upstream, "upstream", false);
    note(old.cache == new.cache, "cache", false);
    note(old.tls == new.tls, "tls", false);
    note(old.access_log == new.access_log, "access_log", false);
    note(old.tokens == new.tokens, "tokens", false);
    note(old.overload == new.overload, "overload", false);
    note(old.log_level == new.log_level, "log_level", false);
    note(old.node_id == new.node_id, "node_id", false);
    note(old.listen == new.listen, "listen", true);
    note(old.listeners == new.listeners, "listeners", true);
    note(old.server == new.server, "server", true);
    note(old.admin == new.admin, "admin", true);
    note(
        old.upgrade_socket == new.upgrade_socket,
        "upgrade_socket",
        true,
    );
    let mut out = if applied.is_empty() {
        "nothing changed".to_string()
    } else {
        format!("applied: {}", applied.join(", "))
    };
    if !restart.is_empty() {
        out.push_str(&format!(
            "; unchanged until a restart or upgrade: {}",
            restart.join(", ")
        ));
    }
    out
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

/// Sockets the edge serves on, bound by the caller.
pub struct Sockets {
    /// The viewers' listeners, plain or TLS.
    pub viewers: Vec<service::Listener>,
    /// The admin listener; none: no admin endpoints (tests that do not need them).
    pub admin: Option<TcpListener>,
}

/// How `main` continues a predecessor in an in-place upgrade.
#[derive(Default)]
pub struct Upgrade {
    /// Listening sockets taken from the predecessor, used for the configured addresses they
    /// are bound to.
    pub taken: Vec<std::net::TcpListener>,
    /// The predecessor, told to drain once this edge accepts on its sockets.
    pub predecessor: Option<service::handoff::Taken>,
}

/// Runs the edge on `listener` (the plain `listen` socket), binds the config's other
/// `listeners` and the admin listener itself, until `shutdown` resolves, then drains.
pub async fn run(
    listener: TcpListener,
    cfg: Config,
    reload_from: Option<ReloadSource>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    run_upgraded(listener, cfg, reload_from, Upgrade::default(), shutdown).await
}

/// [`run`], taking sockets from a predecessor where their addresses match and telling it
/// to drain once serving.
pub async fn run_upgraded(
    listener: TcpListener,
    cfg: Config,
    reload_from: Option<ReloadSource>,
    mut upgrade: Upgrade,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let tls = tls_setup(&cfg)?;
    let backlog = cfg.server.listen_backlog;
    let mut take_or_bind = |addr: std::net::SocketAddr| -> Result<TcpListener, RunError> {
        let bind_err = |source| RunError::Bind { addr, source };
        match upgrade
            .taken
            .iter()
            .position(|l| l.local_addr().ok() == Some(addr))
        {
            Some(i) => TcpListener::from_std(upgrade.taken.swap_remove(i)).map_err(bind_err),
            None => service::bind(addr, backlog).map_err(bind_err),
        }
    };
    let mut viewers = vec![service::Listener {
        tcp: listener,
        tls: None,
    }];
    for l in &cfg.listeners {
        viewers.push(service::Listener {
            tcp: take_or_bind(l.addr)?,
            tls: if l.tls {
                tls.as_ref().map(|t| t.acceptor.clone())
            } else {
                None
            },
        });
    }
    let admin = take_or_bind(cfg.admin.listen)?;
    for l in &upgrade.taken {
        tracing::warn!(addr = ?l.local_addr().ok(), "a socket taken from the old edge is not in this config; connections queued on it are lost when the old edge exits");
    }
    let sockets = Sockets {
        viewers,
        admin: Some(admin),
    };
    serve(
        sockets,
        cfg,
        tls.map(|t| t.certs),
        reload_from,
        upgrade.predecessor,
        shutdown,
    )
    .await?;
    Ok(())
}

/// Runs the edge on sockets bound by the caller (tests bind ports on port 0), with the TLS
/// certificates they serve; SIGHUP and `POST /reload` reload from `reload_from`.
pub async fn run_on(
    sockets: Sockets,
    cfg: Config,
    certs: Option<Arc<service::tls::Certs>>,
    reload_from: Option<ReloadSource>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    serve(sockets, cfg, certs, reload_from, None, shutdown).await
}

/// An edge in this process, viewers on 127.0.0.1:0 and its admin listener on another
/// loopback port 0 (tests, the player-sim demo): the running edge and the admin address.
pub async fn spawn_local(
    cfg: Config,
) -> std::io::Result<(service::InProcess, std::net::SocketAddr)> {
    let admin = service::bind(([127, 0, 0, 1], 0).into(), 64)?;
    let admin_addr = admin.local_addr()?;
    let running = service::InProcess::spawn("edge", move |l, stop| {
        let sockets = Sockets {
            viewers: vec![service::Listener { tcp: l, tls: None }],
            admin: Some(admin),
        };
        run_on(sockets, cfg, None, None, stop)
    })
    .await?;
    Ok((running, admin_addr))
}

/// Limits of the admin listener: a few operators and scrapers, no per-client caps.
fn admin_limits(server: &service::ServerLimits) -> service::ServerLimits {
    service::ServerLimits {
        max_connections: 64,
        max_connections_per_client: 0,
        max_requests_per_client: 0,
        drain_timeout: server.drain_timeout.min(Duration::from_secs(2)),
        ..server.clone()
    }
}

async fn serve(
    sockets: Sockets,
    cfg: Config,
    certs: Option<Arc<service::tls::Certs>>,
    reload_from: Option<ReloadSource>,
    predecessor: Option<service::handoff::Taken>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let limits = cfg.server.limits();
    let upgrade_socket = cfg.upgrade_socket.clone();
    // Our own copies of the listening sockets, for a successor to take.
    let offered: Vec<std::os::fd::OwnedFd> = if upgrade_socket.is_some() {
        use std::os::fd::AsFd;
        sockets
            .viewers
            .iter()
            .map(|l| l.tcp.as_fd().try_clone_to_owned())
            .chain(sockets.admin.iter().map(|a| a.as_fd().try_clone_to_owned()))
            .collect::<Result<_, _>>()
            .map_err(StartError::Sockets)?
    } else {
        Vec::new()
    };
    // A first start binds the upgrade socket before serving: a path that cannot be bound, or
    // that another edge answers at, is an error now rather than a failed upgrade later.
    let mut offer = match (&upgrade_socket, &predecessor) {
        (Some(path), None) => Some(service::handoff::Offer::bind(path)?),
        _ => None,
    };
    let mut cfg = cfg;
    let auto_node = cfg.node_id.is_empty().then(|| {
        let port = sockets
            .viewers
            .first()
            .and_then(|l| l.tcp.local_addr().ok())
            .map_or(0, |a| a.port());
        via::auto_node_id(&via::hostname(), port)
    });
    if let Some(n) = &auto_node {
        cfg.node_id = n.clone();
    }
    let edge = Edge::new(App::new(cfg)?, certs, reload_from.clone(), auto_node);
    let app = edge.app();
    let hangups = match reload_from {
        Some(_) => {
            // Installed whenever a reload source exists: SIGHUP's default would kill us.
            let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                .map_err(StartError::Signal)?;
            let edge = edge.clone();
            Some(tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    let _ = edge.reload();
                }
            }))
        }
        None => None,
    };
    let addrs: Vec<String> = sockets
        .viewers
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
    let admin_addr = sockets.admin.as_ref().and_then(|a| a.local_addr().ok());
    tracing::info!(
        listeners = ?addrs,
        admin = ?admin_addr,
        upstreams = ?app.cfg.upstream.urls,
        cache_bytes = app.cfg.cache.capacity_bytes,
        "edge serving"
    );
    let h = edge.clone();
    let stop_edge = edge.clone();
    let viewers = tokio::spawn({
        let conns = app.metrics.conns.clone();
        let viewers = sockets.viewers;
        let stop = async move {
            tokio::select! {
                _ = shutdown => stop_edge.drain(),
                _ = stop_edge.drained() => {}
            }
        };
        service::serve_listeners(
            viewers,
            move |req, peer| proxy::handle(h.app(), req, peer),
            limits.clone(),
            Some(conns),
            stop,
        )
    });
    // The admin listener stops when the viewers' loop has drained, or at once when a
    // successor has taken the sockets (its admin endpoints are the ones that matter).
    let (admin_stop, mut admin_stopped) = tokio::sync::watch::channel(false);
    let admin = sockets.admin.map(|a| {
        let e = edge.clone();
        tokio::spawn(service::serve_listeners(
            vec![service::Listener { tcp: a, tls: None }],
            move |req, _peer| admin::handle(e.clone(), req),
            admin_limits(&limits),
            None,
            async move {
                let _ = admin_stopped.wait_for(|s| *s).await;
            },
        ))
    });
    if let Some(p) = predecessor {
        match tokio::task::spawn_blocking(move || p.serving()).await {
            Ok(Ok(())) => tracing::info!("took over from the old edge, which is draining"),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "the old edge did not confirm the handoff; both may be serving")
            }
            Err(e) => tracing::error!(error = %e, "handoff task failed"),
        }
    }
    if offer.is_none()
        && let Some(path) = &upgrade_socket
    {
        // After an upgrade the predecessor has let go of the path by now.
        match service::handoff::Offer::bind(path) {
            Ok(o) => offer = Some(o),
            Err(err) => {
                tracing::error!(error = %err, "upgrade_socket: no further in-place upgrade possible")
            }
        }
    }
    let offer = offer.map(|o| {
        let (e, handed) = (edge.clone(), admin_stop.clone());
        tokio::spawn(async move {
            o.hand_over(offered).await;
            handed.send_replace(true);
            e.drain();
        })
    });
    if let Err(e) = viewers.await {
        tracing::error!(error = %e, "serve loop failed");
    }
    admin_stop.send_replace(true);
    if let Some(a) = admin {
        let _ = a.await;
    }
    if let Some(o) = offer {
        o.abort();
    }
    if let Some(h) = hangups {
        h.abort();
    }
    tracing::info!("edge stopped");
    Ok(())
}
