//! The edge's TOML config (`config/edge.toml`), typed and validated.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use service::config::{Problem, Validate};

/// The whole config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address the proxy listens on.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// HTTP server limits.
    #[serde(default)]
    pub server: service::ServerConfig,
    /// The cache.
    #[serde(default)]
    pub cache: CacheConfig,
    /// Where objects come from.
    pub upstream: UpstreamConfig,
    /// Load shedding.
    #[serde(default)]
    pub overload: OverloadConfig,
    /// Pre-warming of newly listed live segments.
    #[serde(default)]
    pub prefetch: PrefetchConfig,
    /// More listeners beside `listen`, each plain or TLS.
    #[serde(default)]
    pub listeners: Vec<ListenerConfig>,
    /// Certificates for TLS listeners.
    #[serde(default)]
    pub tls: TlsConfig,
    /// The access log.
    #[serde(default)]
    pub access_log: AccessLogConfig,
    /// Path prefixes that need a signed viewer token.
    #[serde(default)]
    pub tokens: Vec<crate::token::TokenRule>,
    /// This node's name in `Via` and `Cache-Status` (and in loop detection): unique per
    /// node in a chain of caches. Empty: the host name and the viewers' port
    /// (`edge::via::auto_node_id`).
    #[serde(default)]
    pub node_id: String,
    /// Log filter for the edge's own log (`RUST_LOG` syntax; `RUST_LOG`, when set, wins).
    #[serde(default = "default_log_level")]
    pub log_level: String,
    /// The admin listener.
    #[serde(default)]
    pub admin: AdminConfig,
    /// A Unix socket where this edge hands its listening sockets to a new binary started
    /// with `--upgrade` (in-place upgrade); unset: no upgrade.
    #[serde(default)]
    pub upgrade_socket: Option<std::path::PathBuf>,
}

/// The admin listener: metrics, health, readiness and admin actions.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Address to listen on (keep it private: loopback or an internal network).
    pub listen: SocketAddr,
    /// Bearer token for `POST /purge`, `/reload` and `/drain` (at least 16 characters).
    pub token: Option<String>,
    /// Or the environment variable that holds it.
    pub token_env: Option<String>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9081)),
            token: None,
            token_env: None,
        }
    }
}

impl AdminConfig {
    /// The admin token, from `token` or the variable `token_env` names.
    pub fn token_value(&self) -> Option<String> {
        self.token.clone().or_else(|| {
            self.token_env
                .as_deref()
                .and_then(|v| std::env::var(v).ok())
        })
    }
}

/// One line per response.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessLogConfig {
    /// A file to append to, `-` for standard output; unset: no access log.
    pub path: Option<String>,
    /// `json` (every field) or `combined`.
    pub format: crate::access_log::Format,
    /// Peers whose `Forwarded` / `X-Forwarded-For` is logged (load balancers in front).
    pub trusted_proxies: Vec<std::net::IpAddr>,
}

/// One more listener.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// Address to listen on.
    pub addr: SocketAddr,
    /// Speak TLS (certificates from `[tls]`).
    #[serde(default)]
    pub tls: bool,
}

/// Certificates for the TLS listeners.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Certificate chains and keys; SNI picks among them, the first is the default.
    #[serde(default)]
    pub certificates: Vec<service::tls::CertSpec>,
}

fn default_log_level() -> String {
    "info".into()
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8081))
}

/// Cache sizing and freshness defaults.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Capacity in bytes (bodies plus headers).
    pub capacity_bytes: u64,
    /// Objects larger than this are served but not stored.
    pub max_object_bytes: u64,
    /// Longest a 404 is cached (negative caching must not outlive a segment's gap).
    #[serde(with = "humantime_serde")]
    pub negative_ttl: Duration,
    /// Freshness of a segment the upstream sent without Cache-Control.
    #[serde(with = "humantime_serde")]
    pub default_segment_ttl: Duration,
    /// Freshness of a playlist the upstream sent without Cache-Control.
    #[serde(with = "humantime_serde")]
    pub default_playlist_ttl: Duration,
    /// Query parameters that are part of the cache key (and forwarded); all others are dropped.
    pub query_allowlist: Vec<String>,
    /// How long past freshness an object may be served when the upstream fails, if the
    /// upstream sent no `stale-if-error` of its own (`must-revalidate`, `no-cache` and
    /// `no-store` still forbid it).
    #[serde(with = "humantime_serde")]
    pub default_stale_if_error: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            capacity_bytes: 512 << 20,
            max_object_bytes: 64 << 20,
            negative_ttl: Duration::from_secs(1),
            default_segment_ttl: Duration::from_secs(60),
            default_playlist_ttl: Duration::from_secs(1),
            query_allowlist: vec!["_HLS_msn".into(), "_HLS_part".into(), "_HLS_skip".into()],
            default_stale_if_error: Duration::from_secs(30),
        }
    }
}

/// How an object's upstream is chosen (`upstream.pick`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pick {
    /// In the order of `urls` (failover to the next).
    #[default]
    Ordered,
    /// By rendezvous hashing of the cache key over `urls` (a shield pool).
    Hashed,
}

/// Upstreams and how to talk to them.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Base URLs in order of preference (`http://` or `https://host:port`, optionally with a
    /// path prefix).
    pub urls: Vec<String>,
    /// How an object's upstream is chosen: `ordered` (the list is an order of preference)
    /// or `hashed` (a shield pool: each object has one owner by rendezvous hashing of its
    /// cache key, and the next owner takes over when it fails).
    #[serde(default)]
    pub pick: Pick,
    /// PEM file of CA certificates trusted for `https://` upstreams, besides the system's.
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
    /// A header sent with every upstream request, for an origin that serves its CDN only
    /// (the origin's `pull_auth`).
    #[serde(default)]
    pub auth_header: Option<String>,
    /// The header's value, inline.
    #[serde(default)]
    pub auth_secret: Option<String>,
    /// Or the name of an environment variable holding it (keeps it out of config files).
    #[serde(default)]
    pub auth_secret_env: Option<String>,
    /// Time to get a response head from one upstream attempt.
    #[serde(default = "d_head", with = "humantime_serde")]
    pub head_timeout: Duration,
    /// Longest pause between body chunks before the fetch counts as failed.
    #[serde(default = "d_head", with = "humantime_serde")]
    pub body_idle_timeout: Duration,
    /// Longest an upstream body may take, head to last byte (time spent waiting for slow
    /// readers of a body too large to store not counted).
    #[serde(default = "d_body_deadline", with = "humantime_serde")]
    pub body_deadline: Duration,
    /// Slowest upstream body accepted, bytes per second over 5 s (0: no minimum).
    #[serde(default = "d_min_body_rate")]
    pub min_body_rate: u64,
    /// Deadline for all attempts of one fetch together.
    #[serde(default = "d_deadline", with = "humantime_serde")]
    pub deadline: Duration,
    /// Attempts per fetch (first try included).
    #[serde(default = "d_attempts")]
    pub max_attempts: u32,
    /// First retry backoff; doubles per retry up to `backoff_cap`, full jitter.
    #[serde(default = "d_backoff", with = "humantime_serde")]
    pub backoff_base: Duration,
    /// Largest retry backoff.
    #[serde(default = "d_backoff_cap", with = "humantime_serde")]
    pub backoff_cap: Duration,
    /// Retries allowed as a fraction of fetches (a retry budget, so retries cannot multiply
    /// load on a struggling origin).
    #[serde(default = "d_ratio")]
    pub retry_budget_ratio: f64,
    /// Retries always allowed per second, whatever the ratio.
    #[serde(default = "d_min_retries")]
    pub retry_budget_min_per_sec: u32,
    /// Re-resolve every host name in `urls` this often, each name standing for one upstream
    /// per address it resolves to (a Kubernetes headless Service of shields); unset: names
    /// are resolved per connection and each URL is one upstream.
    #[serde(default, with = "humantime_serde")]
    pub resolve_interval: Option<Duration>,
    /// In a `hashed` pool, a node that comes back healthy or newly appears takes its objects
    /// back over this long, a growing share at a time (0: all at once).
    #[serde(default = "d_ramp_in", with = "humantime_serde")]
    pub ramp_in: Duration,
    /// Health checks.
    #[serde(default)]
    pub health: HealthConfig,
    /// Circuit breaker per upstream.
    #[serde(default)]
    pub breaker: BreakerConfig,
}

fn d_ramp_in() -> Duration {
    Duration::from_secs(30)
}
fn d_head() -> Duration {
    Duration::from_secs(3)
}
fn d_body_deadline() -> Duration {
    Duration::from_secs(60)
}
fn d_min_body_rate() -> u64 {
    4096
}
fn d_deadline() -> Duration {
    Duration::from_secs(8)
}
fn d_attempts() -> u32 {
    3
}
fn d_backoff() -> Duration {
    Duration::from_millis(25)
}
fn d_backoff_cap() -> Duration {
    Duration::from_millis(500)
}
fn d_ratio() -> f64 {
    0.2
}
fn d_min_retries() -> u32 {
    10
}

impl UpstreamConfig {
    /// The secret for `auth_header`: inline, else from `auth_secret_env`.
    pub fn auth_secret_value(&self) -> Option<String> {
        self.auth_secret.clone().or_else(|| {
            self.auth_secret_env
                .as_ref()
                .and_then(|e| std::env::var(e).ok())
        })
    }
}

/// Active health checks.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// Path fetched on each upstream.
    pub path: String,
    /// Time between checks.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Time a check may take.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Consecutive failures that mark an upstream unhealthy.
    pub unhealthy_after: u32,
    /// Consecutive successes that mark it healthy again.
    pub healthy_after: u32,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            path: "/healthz".into(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            unhealthy_after: 2,
            healthy_after: 1,
        }
    }
}

/// Circuit breaker settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// Consecutive failed fetches that open the breaker.
    pub failure_threshold: u32,
    /// How long it stays open before one trial request is let through.
    #[serde(with = "humantime_serde")]
    pub open_for: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            open_for: Duration::from_secs(2),
        }
    }
}

/// Load shedding: protect viewers already watching.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OverloadConfig {
    /// Requests in progress at once; beyond it everything is shed with 503.
    pub max_active: usize,
    /// Above this many, new joins (multivariant playlists) are shed first.
    pub new_joins_above: usize,
    /// Retry-After sent with a shed response.
    #[serde(with = "humantime_serde")]
    pub retry_after: Duration,
}

impl Default for OverloadConfig {
    fn default() -> Self {
        // Below the default server.max_connections (10,000), so HTTP/1.1 can trigger both.
        Self {
            max_active: 8_000,
            new_joins_above: 6_000,
            retry_after: Duration::from_secs(1),
        }
    }
}

/// Pre-warming: when a refreshed media playlist lists new segments, fetch them before any
/// viewer asks (see `edge::prefetch`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrefetchConfig {
    /// On or off.
    pub enabled: bool,
    /// Media playlists under these path prefixes are watched.
    pub prefixes: Vec<String>,
    /// Prefetches under way at once; a new segment beyond that is left to the viewers.
    pub max_concurrent: usize,
    /// Newly listed segments fetched per playlist refresh (the newest ones).
    pub max_per_playlist: usize,
}

impl Default for PrefetchConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            prefixes: vec!["/live/".into()],
            max_concurrent: 16,
            max_per_playlist: 2,
        }
    }
}

impl PrefetchConfig {
    /// Whether the playlist at `path` is watched.
    pub fn watches(&self, path: &str) -> bool {
        self.enabled && self.prefixes.iter().any(|p| path.starts_with(p.as_str()))
    }

    fn problems(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        for (i, x) in self.prefixes.iter().enumerate() {
            if !x.starts_with('/') {
                p.push(Problem::new(
                    format!("prefetch.prefixes[{i}]"),
                    "must be a path starting with /",
                ));
            }
        }
        if !(1..=1024).contains(&self.max_concurrent) {
            p.push(Problem::new(
                "prefetch.max_concurrent",
                "must be between 1 and 1024",
            ));
        }
        if !(1..=16).contains(&self.max_per_playlist) {
            p.push(Problem::new(
                "prefetch.max_per_playlist",
                "must be between 1 and 16",
            ));
        }
        p
    }
}

impl Config {
    /// Parses a config from TOML text (`file` names it in errors).
    pub fn parse(file: &str, src: &str) -> Result<Self, service::ConfigError> {
        service::config::parse(file, src)
    }

    /// Reads and parses a config file.
    pub fn load(path: &std::path::Path) -> Result<Self, service::ConfigError> {
        service::config::load(path)
    }
}

/// Checks an upstream base URL: `http[s]://host:port[/prefix]`, no query or fragment.
pub fn check_upstream_url(u: &str) -> Result<http::Uri, String> {
    let uri: http::Uri = u.parse().map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err("only http:// and https:// upstreams are supported".into());
    }
    if uri.authority().is_none() {
        return Err("needs a host".into());
    }
    if uri.query().is_some() {
        return Err("must not have a query".into());
    }
    Ok(uri)
}

impl Validate for Config {
    fn validate(&self) -> Vec<Problem> {
        let mut p = self.server.problems("server");
        p.extend(self.prefetch.problems());
        let c = &self.cache;
        if c.capacity_bytes < 1 << 20 {
            p.push(Problem::new(
                "cache.capacity_bytes",
                "must be at least 1 MiB",
            ));
        }
        if c.max_object_bytes == 0 || c.max_object_bytes > c.capacity_bytes {
            p.push(Problem::new(
                "cache.max_object_bytes",
                "must be between 1 and cache.capacity_bytes",
            ));
        }
        if c.max_object_bytes > u64::from(u32::MAX) {
            p.push(Problem::new(
                "cache.max_object_bytes",
                "must be below 4 GiB",
            ));
        }
        for (i, q) in c.query_allowlist.iter().enumerate() {
            if q.is_empty()
                || !q
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                p.push(Problem::new(
                    format!("cache.query_allowlist[{i}]"),
                    "must be a plain parameter name",
                ));
            }
        }
        let u = &self.upstream;
        if u.urls.is_empty() {
            p.push(Problem::new(
                "upstream.urls",
                "at least one upstream is required",
            ));
        }
        for (i, url) in u.urls.iter().enumerate() {
            if let Err(e) = check_upstream_url(url) {
                p.push(Problem::new(format!("upstream.urls[{i}]"), e));
            }
        }
        match (&u.auth_header, u.auth_secret_value()) {
            (None, None) if u.auth_secret_env.is_none() => {}
            (Some(h), Some(v)) => {
                if http::HeaderName::from_bytes(h.as_bytes()).is_err() {
                    p.push(Problem::new(
                        "upstream.auth_header",
                        "must be a header name",
                    ));
                }
                if v.is_empty() || http::HeaderValue::from_str(&v).is_err() {
                    p.push(Problem::new(
                        "upstream.auth_secret",
                        "must be a non-empty header value",
                    ));
                }
            }
            (Some(_), None) => p.push(Problem::new(
                "upstream.auth_secret",
                match &u.auth_secret_env {
                    Some(env) => format!("environment variable {env} is not set"),
                    None => "auth_header needs auth_secret or auth_secret_env".to_string(),
                },
            )),
            _ => p.push(Problem::new(
                "upstream.auth_header",
                "a secret needs the header to send it in",
            )),
        }
        if let Some(ca) = &u.ca_file
            && let Err(e) = service::client::tls_config(Some(ca))
        {
            p.push(Problem::new("upstream.ca_file", e.to_string()));
        }
        if let Some(every) = u.resolve_interval {
            if every < Duration::from_secs(1) {
                p.push(Problem::new(
                    "upstream.resolve_interval",
                    "must be at least 1s",
                ));
            }
            for (i, url) in u.urls.iter().enumerate() {
                if url.starts_with("https://") {
                    p.push(Problem::new(
                        format!("upstream.urls[{i}]"),
                        "https upstreams cannot be re-resolved into addresses (certificates \
                         name hosts): list each node by name, or leave resolve_interval unset",
                    ));
                }
            }
        }
        if u.max_attempts == 0 || u.max_attempts > 10 {
            p.push(Problem::new(
                "upstream.max_attempts",
                "must be between 1 and 10",
            ));
        }
        if u.backoff_cap < u.backoff_base {
            p.push(Problem::new(
                "upstream.backoff_cap",
                "must be at least upstream.backoff_base",
            ));
        }
        if !(0.0..=1.0).contains(&u.retry_budget_ratio) {
            p.push(Problem::new(
                "upstream.retry_budget_ratio",
                "must be between 0 and 1",
            ));
        }
        if u.head_timeout.is_zero() || u.deadline < u.head_timeout {
            p.push(Problem::new(
                "upstream.deadline",
                "must be at least upstream.head_timeout (> 0)",
            ));
        }
        if u.body_idle_timeout.is_zero() || u.body_deadline < u.body_idle_timeout {
            p.push(Problem::new(
                "upstream.body_deadline",
                "must be at least upstream.body_idle_timeout (> 0)",
            ));
        }
        for (key, d) in [
            ("upstream.head_timeout", u.head_timeout),
            ("upstream.body_deadline", u.body_deadline),
            ("upstream.deadline", u.deadline),
        ] {
            if d > Duration::from_secs(86_400) {
                p.push(Problem::new(key, "must be at most 1 day"));
            }
        }
        if !u.health.path.starts_with('/') {
            p.push(Problem::new("upstream.health.path", "must start with /"));
        }
        if u.health.interval.is_zero() || u.health.timeout.is_zero() {
            p.push(Problem::new(
                "upstream.health.interval",
                "interval and timeout must be more than 0s",
            ));
        }
        if u.health.unhealthy_after == 0 || u.health.healthy_after == 0 {
            p.push(Problem::new(
                "upstream.health.unhealthy_after",
                "unhealthy_after and healthy_after must be at least 1",
            ));
        }
        if u.breaker.failure_threshold == 0 {
            p.push(Problem::new(
                "upstream.breaker.failure_threshold",
                "must be at least 1",
            ));
        }
        let tls_listeners = self.listeners.iter().filter(|l| l.tls).count();
        if tls_listeners > 0 && self.tls.certificates.is_empty() {
            p.push(Problem::new(
                "tls.certificates",
                "a TLS listener needs at least one certificate",
            ));
        }
        if tls_listeners > 0 || !self.tls.certificates.is_empty() {
            // Loaded now so that --check names the file at fault (a missing file, not PEM,
            // no certificate, an unusable key, a key that does not match).
            for (i, c) in self.tls.certificates.iter().enumerate() {
                if let Err(e) = service::tls::SniCerts::load(std::slice::from_ref(c)) {
                    p.push(Problem::new(
                        format!("tls.certificates[{i}]"),
                        e.to_string(),
                    ));
                }
            }
        }
        if !self.node_id.is_empty() && !crate::via::valid_node_id(&self.node_id) {
            p.push(Problem::new(
                "node_id",
                "must start with a letter and hold only letters, digits, -, . and _ (at most 64)",
            ));
        }
        if let Err(e) = service::telemetry::check_filter(&self.log_level) {
            p.push(Problem::new("log_level", e));
        }
        match (&self.admin.token, &self.admin.token_env) {
            (Some(_), Some(_)) => p.push(Problem::new(
                "admin.token_env",
                "set admin.token or admin.token_env, not both",
            )),
            (None, Some(v)) if std::env::var(v).is_err() => p.push(Problem::new(
                "admin.token_env",
                format!("environment variable {v} is not set"),
            )),
            _ => {}
        }
        if let Some(t) = self.admin.token_value()
            && t.trim().len() < 16
        {
            p.push(Problem::new(
                if self.admin.token.is_some() {
                    "admin.token"
                } else {
                    "admin.token_env"
                },
                "the admin token must be at least 16 characters",
            ));
        }
        if self.admin.listen == self.listen && self.listen.port() != 0 {
            p.push(Problem::new(
                "admin.listen",
                "must differ from `listen`: admin endpoints never share the viewers' port",
            ));
        }
        let mut addrs = vec![self.listen, self.admin.listen];
        for (i, l) in self.listeners.iter().enumerate() {
            if l.addr.port() != 0 && addrs.contains(&l.addr) {
                p.push(Problem::new(
                    format!("listeners[{i}].addr"),
                    "listens on an address already in use by another listener",
                ));
            }
            addrs.push(l.addr);
        }
        for (i, t) in self.tokens.iter().enumerate() {
            if !t.prefix.starts_with('/') {
                p.push(Problem::new(
                    format!("tokens[{i}].prefix"),
                    "must start with /",
                ));
            }
            if t.secrets.is_empty() || t.secrets.iter().any(|s| s.len() < 16) {
                p.push(Problem::new(
                    format!("tokens[{i}].secrets"),
                    "at least one secret, each at least 16 characters",
                ));
            }
            if t.param.is_empty() || self.cache.query_allowlist.contains(&t.param) {
                p.push(Problem::new(
                    format!("tokens[{i}].param"),
                    "must be a parameter name that is not in cache.query_allowlist (a token never enters the cache key)",
                ));
            }
        }
        let o = &self.overload;
        if o.max_active == 0 {
            p.push(Problem::new("overload.max_active", "must be at least 1"));
        }
        if o.new_joins_above >= o.max_active {
            p.push(Problem::new(
                "overload.new_joins_above",
                "must be below overload.max_active (new joins are shed first)",
            ));
        }
        // Over HTTP/1.1 a connection carries one request at a time: a limit at or above the
        // connection cap could never trigger.
        if o.max_active >= self.server.max_connections {
            p.push(Problem::new(
                "overload.max_active",
                "must be below server.max_connections, or HTTP/1.1 clients (one request per connection) can never trigger shedding",
            ));
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_config() {
        let c =
            Config::parse("e.toml", "[upstream]\nurls = [\"http://127.0.0.1:8080\"]\n").unwrap();
        assert_eq!(c.listen, default_listen());
        assert_eq!(c.cache.negative_ttl, Duration::from_secs(1));
    }

    /// Regression: the shipped config had max_connections 20000 below new_joins_above 40000
    /// and max_active 50000, so shedding could never trigger over HTTP/1.1, and --check
    /// accepted it. The shipped file and the defaults must pass the consistency rules.
    #[test]
    fn shipped_and_default_limits_are_consistent() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/edge.toml");
        let shipped = Config::load(std::path::Path::new(path)).unwrap();
        assert!(shipped.overload.max_active < shipped.server.max_connections);
        let src = "[server]\nmax_connections = 20000\n[overload]\nmax_active = 50000\nnew_joins_above = 40000\n[upstream]\nurls = [\"http://127.0.0.1:8080\"]\n";
        let e = Config::parse("e.toml", src).unwrap_err().to_string();
        assert!(e.contains("key `overload.max_active`"), "{e}");
        let src = "[overload]\nmax_active = 100\nnew_joins_above = 100\n[upstream]\nurls = [\"http://127.0.0.1:8080\"]\n";
        let e = Config::parse("e.toml", src).unwrap_err().to_string();
        assert!(e.contains("key `overload.new_joins_above`"), "{e}");
        Config::parse("e.toml", "[upstream]\nurls = [\"http://127.0.0.1:8080\"]\n").unwrap();
    }

    /// Regression: max_header_bytes = 4294967296 passed --check and was cast `as u32` into
    /// HTTP/2's header list size, advertising 0. Now it is refused with its key.
    #[test]
    fn header_bytes_beyond_what_http2_can_carry_are_refused() {
        let src = "[server]\nmax_header_bytes = 4294967296\n[upstream]\nurls = [\"http://127.0.0.1:8080\"]\n";
        let e = Config::parse("e.toml", src).unwrap_err().to_string();
        assert!(e.contains("line 2: key `server.max_header_bytes`"), "{e}");
    }

    /// A TLS listener's certificate problems are reported by --check with the key and the
    /// file at fault; so are a TLS listener without certificates and a reused address.
    #[test]
    fn tls_problems_name_the_key_and_the_file() {
        let dir = std::env::temp_dir().join(format!("edge-cfg-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let a = rcgen::generate_simple_self_signed(vec!["a.test".to_string()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["b.test".to_string()]).unwrap();
        std::fs::write(dir.join("a.crt"), a.cert.pem()).unwrap();
        std::fs::write(dir.join("b.key"), b.signing_key.serialize_pem()).unwrap();
        let up = "[upstream]\nurls = [\"http://127.0.0.1:8080\"]\n";
        let with = |certs: &str| {
            format!(
                "{up}[[listeners]]\naddr = \"127.0.0.1:8443\"\ntls = true\n[tls]\ncertificates = [{certs}]\n"
            )
        };
        let e = Config::parse("e.toml", &with("")).unwrap_err().to_string();
        assert!(e.contains("key `tls.certificates`"), "{e}");
        let missing = format!(
            "{{ cert = {:?}, key = {:?} }}",
            dir.join("none.crt"),
            dir.join("b.key")
        );
        let e = Config::parse("e.toml", &with(&missing))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("tls.certificates[0]") && e.contains("none.crt"),
            "{e}"
        );
        let mismatch = format!(
            "{{ cert = {:?}, key = {:?} }}",
            dir.join("a.crt"),
            dir.join("b.key")
        );
        let e = Config::parse("e.toml", &with(&mismatch))
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not match"), "{e}");
        let twice =
            format!("listen = \"127.0.0.1:8443\"\n{up}[[listeners]]\naddr = \"127.0.0.1:8443\"\n");
        let e = Config::parse("e.toml", &twice).unwrap_err().to_string();
        assert!(e.contains("listeners[0].addr"), "{e}");
    }

    #[test]
    fn admin_and_log_problems_name_their_key() {
        let up = "[upstream]\nurls = [\"http://127.0.0.1:8080\"]\n";
        let e = Config::parse("e.toml", &format!("log_level = \"edge=loud\"\n{up}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 1: key `log_level`"), "{e}");
        let e = Config::parse("e.toml", &format!("{up}[admin]\ntoken = \"short\"\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("key `admin.token`"), "{e}");
        let e = Config::parse(
            "e.toml",
            &format!("{up}[admin]\ntoken_env = \"EDGE_TEST_UNSET_VARIABLE_4711\"\n"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("EDGE_TEST_UNSET_VARIABLE_4711 is not set"),
            "{e}"
        );
        let e = Config::parse(
            "e.toml",
            &format!("listen = \"127.0.0.1:9081\"\n{up}[admin]\nlisten = \"127.0.0.1:9081\"\n"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("key `admin.listen`"), "{e}");
    }

    #[test]
    fn prefetch_problems_name_their_key_and_line() {
        let up = "[upstream]\nurls = [\"http://127.0.0.1:8080\"]\n";
        let src = format!(
            "{up}[prefetch]\nprefixes = [\"live/\"]\nmax_concurrent = 0\nmax_per_playlist = 99\n"
        );
        let e = Config::parse("e.toml", &src).unwrap_err().to_string();
        assert!(e.contains("line 4: key `prefetch.prefixes[0]`"), "{e}");
        assert!(e.contains("line 5: key `prefetch.max_concurrent`"), "{e}");
        assert!(e.contains("line 6: key `prefetch.max_per_playlist`"), "{e}");
        let c = Config::parse("e.toml", up).unwrap();
        assert!(c.prefetch.watches("/live/a/v/index.m3u8"));
        assert!(!c.prefetch.watches("/vod/a/index.m3u8"));
        let off = Config::parse("e.toml", &format!("{up}[prefetch]\nenabled = false\n")).unwrap();
        assert!(!off.prefetch.watches("/live/a/v/index.m3u8"));
    }

    #[test]
    fn resolve_problems_name_their_key() {
        let e = Config::parse(
            "e.toml",
            "[upstream]\nurls = [\"https://shields:8443\"]\nresolve_interval = \"100ms\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("line 3: key `upstream.resolve_interval`"), "{e}");
        assert!(
            e.contains("key `upstream.urls[0]`: https upstreams cannot"),
            "{e}"
        );
        let c = Config::parse(
            "e.toml",
            "[upstream]\nurls = [\"http://shields:8080\"]\nresolve_interval = \"5s\"\n",
        )
        .unwrap();
        assert_eq!(c.upstream.resolve_interval, Some(Duration::from_secs(5)));
        assert_eq!(c.upstream.ramp_in, Duration::from_secs(30));
    }

    #[test]
    fn problems_are_located() {
        let src = "[cache]\ncapacity_bytes = 10\n\n[upstream]\nurls = [\"ftp://x\", \"http://ok:1\"]\nmax_attempts = 0\n";
        let e = Config::parse("e.toml", src).unwrap_err().to_string();
        assert!(e.contains("line 2: key `cache.capacity_bytes`"), "{e}");
        assert!(e.contains("key `upstream.urls[0]`: only http://"), "{e}");
        assert!(e.contains("line 6: key `upstream.max_attempts`"), "{e}");
    }
}
