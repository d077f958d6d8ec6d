//! `Cache-Control` response directives (RFC 9111 §5.2.2, RFC 5861) as the edge uses them, taken
//! from `CDN-Cache-Control` (RFC 9213) when the upstream sends one.

use std::time::Duration;

use http::HeaderMap;

/// The directives that decide whether and for how long an object is reused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directives {
    /// `max-age`.
    pub max_age: Option<Duration>,
    /// `s-maxage` (shared caches: wins over max-age).
    pub s_maxage: Option<Duration>,
    /// `no-store`: never stored.
    pub no_store: bool,
    /// `no-cache`: stored but revalidated before every use.
    pub no_cache: bool,
    /// `private`: not for shared caches.
    pub private: bool,
    /// `immutable`: never changes while fresh.
    pub immutable: bool,
    /// `stale-while-revalidate`.
    pub stale_while_revalidate: Option<Duration>,
    /// `stale-if-error`.
    pub stale_if_error: Option<Duration>,
    /// `must-revalidate` / `proxy-revalidate`: no stale serving at all.
    pub must_revalidate: bool,
}

impl Directives {
    /// Parses every `CDN-Cache-Control` header in `headers` when one holds a directive
    /// known here, as RFC 9213 §2.1 has a cache that knows the field do (`Cache-Control`,
    /// then meant for the browser, is ignored); otherwise every `Cache-Control`.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let targeted = Self::parse_all(headers, hls::CDN_CACHE_CONTROL);
        if targeted != Directives::default() {
            return targeted;
        }
        Self::parse_all(headers, http::header::CACHE_CONTROL.as_str())
    }

    /// Every header `name` in `headers`, parsed in order.
    fn parse_all(headers: &HeaderMap, name: &str) -> Self {
        let mut d = Directives::default();
        for v in headers.get_all(name) {
            if let Ok(s) = v.to_str() {
                d.parse_into(s);
            }
        }
        d
    }

    /// Parses one header value, adding to what is known.
    pub fn parse_into(&mut self, value: &str) {
        for part in value.split(',') {
            let part = part.trim();
            let (name, arg) = match part.split_once('=') {
                Some((n, a)) => (n.trim(), Some(a)),
                None => (part, None),
            };
            // Capped at 2^31 s (RFC 9111 §1.2.2): no later sum can overflow.
            let secs = || arg.and_then(service::delta::parse);
            match name.to_ascii_lowercase().as_str() {
                "max-age" => self.max_age = secs().or(self.max_age),
                "s-maxage" => self.s_maxage = secs().or(self.s_maxage),
                "no-store" => self.no_store = true,
                "no-cache" => self.no_cache = true,
                "private" => self.private = true,
                "immutable" => self.immutable = true,
                "stale-while-revalidate" => self.stale_while_revalidate = secs(),
                "stale-if-error" => self.stale_if_error = secs(),
                "must-revalidate" | "proxy-revalidate" => self.must_revalidate = true,
                _ => {}
            }
        }
    }

    /// May a shared cache store the response at all?
    pub fn storable(&self) -> bool {
        !self.no_store && !self.private
    }

    /// Freshness lifetime given by the upstream, if any.
    pub fn lifetime(&self) -> Option<Duration> {
        if self.no_cache {
            return Some(Duration::ZERO);
        }
        self.s_maxage.or(self.max_age)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_the_origin_sends() {
        let mut d = Directives::default();
        d.parse_into("public, max-age=1, stale-while-revalidate=2, stale-if-error=12");
        assert_eq!(d.lifetime(), Some(Duration::from_secs(1)));
        assert_eq!(d.stale_while_revalidate, Some(Duration::from_secs(2)));
        assert_eq!(d.stale_if_error, Some(Duration::from_secs(12)));
        let mut d = Directives::default();
        d.parse_into("public, max-age=31536000, immutable");
        assert!(d.immutable && d.storable());
        let mut d = Directives::default();
        d.parse_into("max-age=60, s-maxage=5, Private");
        assert_eq!(d.lifetime(), Some(Duration::from_secs(5)));
        assert!(!d.storable());
        let mut d = Directives::default();
        d.parse_into("no-cache, max-age=\"60\", garbage=, =x,,");
        assert_eq!(d.lifetime(), Some(Duration::ZERO));
    }

    /// The origin's live playlists: the browser gets max-age only, the edge may serve stale.
    #[test]
    fn cdn_cache_control_wins_over_cache_control() {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::CACHE_CONTROL,
            "public, max-age=1".parse().unwrap(),
        );
        h.insert(
            hls::CDN_CACHE_CONTROL,
            "max-age=1, stale-while-revalidate=2, stale-if-error=12"
                .parse()
                .unwrap(),
        );
        let d = Directives::from_headers(&h);
        assert_eq!(d.lifetime(), Some(Duration::from_secs(1)));
        assert_eq!(d.stale_while_revalidate, Some(Duration::from_secs(2)));
        assert_eq!(d.stale_if_error, Some(Duration::from_secs(12)));
        // Targeted at the CDN: the browser's `private` does not keep the edge from storing.
        h.insert(
            http::header::CACHE_CONTROL,
            "private, max-age=1".parse().unwrap(),
        );
        assert!(Directives::from_headers(&h).storable());
        // Empty or without a directive known here: Cache-Control decides.
        h.insert(hls::CDN_CACHE_CONTROL, "x-unknown=3, ,".parse().unwrap());
        assert!(!Directives::from_headers(&h).storable());
        h.remove(hls::CDN_CACHE_CONTROL);
        h.insert(http::header::CACHE_CONTROL, "max-age=5".parse().unwrap());
        assert_eq!(
            Directives::from_headers(&h).lifetime(),
            Some(Duration::from_secs(5))
        );
    }

    /// Regression: `max-age=18446744073709551615` made a worker panic ("overflow when
    /// adding durations") once freshness windows were added up; delta-seconds are now capped.
    #[test]
    fn huge_delta_seconds_are_capped() {
        let mut d = Directives::default();
        d.parse_into(
            "max-age=18446744073709551615, stale-while-revalidate=99999999999999999999999, stale-if-error=18446744073709551615",
        );
        assert_eq!(d.lifetime(), Some(service::delta::MAX_DELTA));
        assert_eq!(d.stale_while_revalidate, Some(service::delta::MAX_DELTA));
    }
}
