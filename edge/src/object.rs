//! A stored response and its freshness, kept as data read through tokio's clock (moka ages
//! entries with the real clock, so its expiry is only a coarse upper bound).

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use tokio::time::Instant;

use crate::cache_control::Directives;
use crate::classify::Kind;
use crate::config::CacheConfig;

/// How long an object may be served, and how long past that in which circumstances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    /// Served as a hit while younger than this.
    pub fresh_for: Duration,
    /// Past freshness, served stale while one background refresh runs.
    pub stale_while_revalidate: Duration,
    /// Past freshness, served stale when the upstream fails.
    pub stale_if_error: Duration,
}

impl Freshness {
    /// Freshness for a response, or `None` when it must not be stored.
    pub fn of(status: StatusCode, d: &Directives, kind: Kind, cfg: &CacheConfig) -> Option<Self> {
        if !d.storable() {
            return None;
        }
        let stale = |w: Option<Duration>| {
            if d.must_revalidate {
                Duration::ZERO
            } else {
                w.unwrap_or_default()
            }
        };
        match status {
            StatusCode::OK => {
                let fresh_for = d.lifetime().or(match kind {
                    Kind::Segment => Some(cfg.default_segment_ttl),
                    Kind::Master | Kind::Playlist | Kind::BlockingPlaylist => {
                        Some(cfg.default_playlist_ttl)
                    }
                    Kind::Other => None,
                })?;
                // An upstream that said nothing about errors gets the configured window: for
                // viewers a slightly old playlist beats a 502 (nginx, Varnish and ATS do the
                // same). `no-cache` asked for validation on every use, so it gets none.
                let default_sie = (!d.no_cache).then_some(cfg.default_stale_if_error);
                let f = Freshness {
                    fresh_for,
                    stale_while_revalidate: stale(d.stale_while_revalidate),
                    stale_if_error: stale(d.stale_if_error.or(default_sie)),
                };
                (f.useful_for() > Duration::ZERO).then_some(f)
            }
            // Negative caching, capped: a segment that is not there yet soon will be.
            StatusCode::NOT_FOUND => {
                let ttl = d
                    .lifetime()
                    .unwrap_or(cfg.negative_ttl)
                    .min(cfg.negative_ttl);
                (!ttl.is_zero()).then_some(Freshness {
                    fresh_for: ttl,
                    stale_while_revalidate: Duration::ZERO,
                    stale_if_error: Duration::ZERO,
                })
            }
            _ => None,
        }
    }

    /// Longest this object can be of any use: the upper bound handed to moka.
    pub fn useful_for(&self) -> Duration {
        self.fresh_for
            .saturating_add(self.stale_while_revalidate.max(self.stale_if_error))
    }
}

/// Where an object stands at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Serve it.
    Fresh,
    /// Serve it and refresh in the background.
    StaleWhileRevalidate,
    /// Only as a fallback when the upstream fails.
    StaleIfError,
    /// Of no use.
    Expired,
}

/// A complete stored response.
#[derive(Debug)]
pub struct CachedObject {
    /// Status (200 or a negatively cached 404).
    pub status: StatusCode,
    /// End-to-end headers to replay (no hop-by-hop, no Content-Length, no Age).
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
    /// When it was stored.
    pub stored_at: Instant,
    /// The upstream's own `Age` at that moment.
    pub initial_age: Duration,
    /// Freshness policy.
    pub freshness: Freshness,
    /// What it is.
    pub kind: Kind,
    /// Fetched by pre-warming and not yet served to any viewer.
    pub prefetched: std::sync::atomic::AtomicBool,
}

impl CachedObject {
    /// True once, for the first viewer served a prefetched object (a plain load first: hits
    /// are the hot path, and a swap on every hit would bounce the cache line between cores).
    pub fn claim_prefetched(&self) -> bool {
        use std::sync::atomic::Ordering;
        self.prefetched.load(Ordering::Relaxed) && self.prefetched.swap(false, Ordering::Relaxed)
    }

    /// Current age (RFC 9111 §4.2.3, simplified: upstream Age plus resident time).
    pub fn age(&self, now: Instant) -> Duration {
        self.initial_age
            .saturating_add(now.saturating_duration_since(self.stored_at))
    }

    /// Where it stands at `now`.
    pub fn state(&self, now: Instant) -> State {
        let age = self.age(now);
        let f = &self.freshness;
        if age < f.fresh_for {
            State::Fresh
        } else if age < f.fresh_for.saturating_add(f.stale_while_revalidate) {
            State::StaleWhileRevalidate
        } else if age < f.fresh_for.saturating_add(f.stale_if_error) {
            State::StaleIfError
        } else {
            State::Expired
        }
    }

    /// Remaining freshness in whole seconds (negative once stale), for `Cache-Status: ttl=`.
    pub fn ttl_secs(&self, now: Instant) -> i64 {
        // Both are at most 2^31 s plus resident time: far inside i64.
        let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        secs(self.freshness.fresh_for).saturating_sub(secs(self.age(now)))
    }

    /// Bytes this object costs in the cache.
    pub fn weight(&self) -> u32 {
        let headers: usize = self
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 32)
            .sum();
        u32::try_from(self.body.len() + headers + 256).unwrap_or(u32::MAX)
    }

    /// The strong validator, if any.
    pub fn etag(&self) -> Option<&str> {
        self.headers.get(header::ETAG).and_then(|v| v.to_str().ok())
    }
}

/// Headers that describe one connection, not the object (RFC 9110 §7.6.1), plus the ones the
/// edge recomputes or must never replay to other clients.
pub fn end_to_end(headers: &HeaderMap) -> HeaderMap {
    const DROP: &[HeaderName] = &[
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::TE,
        header::TRAILER,
        header::UPGRADE,
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        header::CONTENT_LENGTH,
        header::AGE,
        header::DATE,
        header::SET_COOKIE,
    ];
    // Room for what the edge adds per response (Age, Content-Length, Accept-Ranges or
    // Content-Range, X-Cache, Cache-Status, Via): a clone keeps the index size, so adding
    // them does not rehash the map on every response.
    let mut out = HeaderMap::with_capacity(headers.len() + 8);
    for (k, v) in headers {
        if !DROP.contains(k) && k.as_str() != "keep-alive" && k.as_str() != "x-cache" {
            // A copy, not `v.clone()`: hyper's header values are slices of the connection's
            // read buffer (up to ~400 KB, holding the start of the body too), and a stored
            // clone kept that whole buffer alive per cached object (~220 MiB over a full
            // 512 MiB cache of 1 MB segments).
            let mut copy = HeaderValue::from_bytes(v.as_bytes()).unwrap_or_else(|_| v.clone());
            copy.set_sensitive(v.is_sensitive());
            out.append(k.clone(), copy);
        }
    }
    out
}

/// The upstream's `Age`, if given.
pub fn upstream_age(headers: &HeaderMap) -> Duration {
    headers
        .get(header::AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(service::delta::parse)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn directives(s: &str) -> Directives {
        let mut d = Directives::default();
        d.parse_into(s);
        d
    }

    #[test]
    fn freshness_rules() {
        let cfg = CacheConfig::default();
        let f = Freshness::of(
            StatusCode::OK,
            &directives("max-age=1, stale-while-revalidate=2, stale-if-error=12"),
            Kind::Playlist,
            &cfg,
        )
        .unwrap();
        assert_eq!(f.useful_for(), Duration::from_secs(13));
        // 404s are cached for at most negative_ttl whatever the upstream says.
        let f = Freshness::of(
            StatusCode::NOT_FOUND,
            &directives("max-age=600"),
            Kind::Segment,
            &cfg,
        )
        .unwrap();
        assert_eq!(f.fresh_for, Duration::from_secs(1));
        assert!(
            Freshness::of(StatusCode::OK, &directives("no-store"), Kind::Segment, &cfg).is_none()
        );
        assert!(
            Freshness::of(
                StatusCode::BAD_GATEWAY,
                &directives("max-age=5"),
                Kind::Segment,
                &cfg
            )
            .is_none()
        );
        assert!(Freshness::of(StatusCode::OK, &directives(""), Kind::Other, &cfg).is_none());
        let f = Freshness::of(StatusCode::OK, &directives(""), Kind::Segment, &cfg).unwrap();
        assert_eq!(f.fresh_for, cfg.default_segment_ttl);
        let f = Freshness::of(
            StatusCode::OK,
            &directives("max-age=1, stale-if-error=9, must-revalidate"),
            Kind::Playlist,
            &cfg,
        )
        .unwrap();
        assert_eq!(f.stale_if_error, Duration::ZERO);
    }

    /// Regression: an upstream that sends only `max-age` left nothing to serve when it
    /// failed (nginx, Varnish and ATS serve the stale copy); now the configured default
    /// window applies unless the upstream said otherwise.
    #[test]
    fn default_stale_if_error_when_the_upstream_says_nothing() {
        let cfg = CacheConfig::default();
        let sie = |cc: &str| {
            Freshness::of(StatusCode::OK, &directives(cc), Kind::Playlist, &cfg)
                .map(|f| f.stale_if_error)
        };
        assert_eq!(sie("max-age=1"), Some(cfg.default_stale_if_error));
        assert_eq!(sie(""), Some(cfg.default_stale_if_error));
        assert_eq!(
            sie("max-age=1, stale-if-error=5"),
            Some(Duration::from_secs(5))
        );
        assert_eq!(sie("max-age=1, stale-if-error=0"), Some(Duration::ZERO));
        assert_eq!(sie("max-age=1, must-revalidate"), Some(Duration::ZERO));
        assert_eq!(sie("no-cache"), None, "nothing to reuse: not stored");
        assert_eq!(sie("max-age=1, no-store"), None);
    }

    /// Regression: stored header values were clones of hyper's, which are slices of the
    /// connection's read buffer, so every cached object kept a buffer of up to ~400 KB
    /// alive (a full 512 MiB cache of 1 MB segments: 870 MiB RSS, now 556 MiB).
    #[test]
    fn stored_headers_do_not_share_the_read_buffer() {
        let buf = Bytes::from(vec![b'a'; 64 * 1024]);
        let mut h = HeaderMap::new();
        h.insert(
            header::ETAG,
            HeaderValue::from_maybe_shared(buf.slice(0..10)).unwrap(),
        );
        let stored = end_to_end(&h);
        let v = stored.get(header::ETAG).unwrap().as_bytes();
        assert_eq!(v, &buf[0..10]);
        let range = buf.as_ptr_range();
        assert!(
            !range.contains(&v.as_ptr()),
            "the stored value points into the read buffer"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn states_follow_the_controllable_clock() {
        let o = CachedObject {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: Bytes::new(),
            stored_at: Instant::now(),
            initial_age: Duration::ZERO,
            freshness: Freshness {
                fresh_for: Duration::from_secs(1),
                stale_while_revalidate: Duration::from_secs(2),
                stale_if_error: Duration::from_secs(10),
            },
            kind: Kind::Playlist,
            prefetched: Default::default(),
        };
        let t0 = Instant::now();
        assert_eq!(o.state(t0), State::Fresh);
        assert_eq!(
            o.state(t0 + Duration::from_millis(1500)),
            State::StaleWhileRevalidate
        );
        assert_eq!(o.state(t0 + Duration::from_secs(5)), State::StaleIfError);
        assert_eq!(o.state(t0 + Duration::from_secs(11)), State::Expired);
        assert_eq!(o.ttl_secs(t0 + Duration::from_secs(5)), -4);
    }
}
