//! Tracing setup: `RUST_LOG` filter (default `info`), human-readable lines on stderr; the
//! filter can be replaced at run time (a config reload's `log_level`).

use std::sync::OnceLock;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, reload};

/// The installed filter, replaceable by [`set_filter`].
static FILTER: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// Installs the global tracing subscriber; later calls are no-ops (tests start many servers).
pub fn init_tracing() {
    init_tracing_at("info");
}

/// Like [`init_tracing`] with another default level when `RUST_LOG` is unset (a client that
/// draws a progress bar wants only warnings).
pub fn init_tracing_at(default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let (layer, handle) = reload::Layer::new(filter);
    let installed = tracing_subscriber::registry()
        .with(layer)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                // Colour codes only for a terminal: not in files, journald or `kubectl logs`.
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .try_init()
        .is_ok();
    if installed {
        let _ = FILTER.set(handle);
    }
}

/// Checks a filter such as `info` or `warn,edge=debug` (`RUST_LOG` syntax).
pub fn check_filter(directives: &str) -> Result<(), String> {
    EnvFilter::try_new(directives)
        .map(|_| ())
        .map_err(|e| format!("not a log filter ({e}); e.g. \"info\" or \"warn,edge=debug\""))
}

/// Replaces the log filter with `directives`, unless `RUST_LOG` is set (the environment
/// wins, as at start). Returns whether it was applied.
pub fn set_filter(directives: &str) -> Result<bool, String> {
    if std::env::var_os("RUST_LOG").is_some() {
        return Ok(false);
    }
    let f = EnvFilter::try_new(directives).map_err(|e| e.to_string())?;
    match FILTER.get() {
        Some(h) => h.reload(f).map(|()| true).map_err(|e| e.to_string()),
        None => Ok(false),
    }
}

/// Rate limit for a warning that can repeat once per request (an upstream that is down, a
/// breaker that is open): at most one line per key per period, and the line says how many
/// were suppressed since the last one. Metrics still count every occurrence.
#[derive(Debug)]
pub struct LogLimit {
    period: std::time::Duration,
    last: std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, u64)>>,
}

/// Keys a [`LogLimit`] remembers at most (keys come from config, e.g. upstream names; past
/// this, every key shares one slot rather than grow without bound).
const LOG_LIMIT_KEYS: usize = 1024;

impl LogLimit {
    /// At most one line per key every `period`.
    pub fn new(period: std::time::Duration) -> Self {
        Self {
            period,
            last: Default::default(),
        }
    }

    /// Whether to log an occurrence of `key` now; `Some(n)` with the number of occurrences
    /// suppressed since the last logged one.
    pub fn check(&self, key: &str) -> Option<u64> {
        let now = std::time::Instant::now();
        let mut map = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let key = if map.len() >= LOG_LIMIT_KEYS && !map.contains_key(key) {
            "(other)"
        } else {
            key
        };
        match map.get_mut(key) {
            Some((at, suppressed)) if now.duration_since(*at) < self.period => {
                *suppressed = suppressed.saturating_add(1);
                None
            }
            Some((at, suppressed)) => {
                *at = now;
                Some(std::mem::take(suppressed))
            }
            None => {
                map.insert(key.to_string(), (now, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn one_line_per_key_per_period_with_the_suppressed_count() {
        let l = LogLimit::new(Duration::from_millis(50));
        assert_eq!(l.check("a"), Some(0));
        assert_eq!(l.check("b"), Some(0), "keys are independent");
        for _ in 0..1000 {
            assert_eq!(l.check("a"), None);
        }
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(l.check("a"), Some(1000));
        assert_eq!(l.check("a"), None);
        for i in 0..5000 {
            let _ = l.check(&format!("k{i}"));
        }
        assert!(l.last.lock().unwrap().len() <= LOG_LIMIT_KEYS + 1);
    }
}
