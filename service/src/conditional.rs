//! Conditional and range requests (RFC 9110 §13, §14) as origin and edge both answer them.

use http::{HeaderMap, HeaderValue, Response, StatusCode, header};

use crate::Body;

/// Whether `If-None-Match` in `headers` matches the strong validator `etag`.
pub fn etag_matches(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t == etag)
}

/// A `Range` header resolved against a body of known length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeReq {
    /// No (usable) Range header: the whole body.
    Full,
    /// One satisfiable range, inclusive bounds.
    Part(u64, u64),
    /// Unsatisfiable: answer 416 with `Content-Range: bytes */len`.
    Unsatisfiable,
}

/// `Content-Range: bytes {first}-{last}/{len}` for a 206 answer.
pub fn content_range(first: u64, last: u64, len: u64) -> HeaderValue {
    digits_value(format!("bytes {first}-{last}/{len}"))
}

/// The 416 answer for a body of `len` bytes (`Content-Range: bytes */len`, and why in text).
pub fn range_not_satisfiable(len: u64) -> Response<Body> {
    let mut r = crate::body::text(
        StatusCode::RANGE_NOT_SATISFIABLE,
        format!("range outside 0-{}", len.saturating_sub(1)),
    );
    r.headers_mut().insert(
        header::CONTENT_RANGE,
        digits_value(format!("bytes */{len}")),
    );
    r
}

/// A header value made of ASCII we wrote ourselves (always valid).
fn digits_value(s: String) -> HeaderValue {
    HeaderValue::from_str(&s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Whether the request has a `Range` header at all.
pub fn has_range(headers: &HeaderMap) -> bool {
    headers.contains_key(header::RANGE)
}

/// The validators of the representation a range would be cut from.
#[derive(Debug, Clone, Copy, Default)]
pub struct Validators<'a> {
    /// Its `ETag`.
    pub etag: Option<&'a str>,
    /// Its `Last-Modified`.
    pub last_modified: Option<&'a str>,
}

impl<'a> Validators<'a> {
    /// The validators among response headers `h`.
    pub fn of(h: &'a HeaderMap) -> Self {
        let get = |n| h.get(n).and_then(|v: &HeaderValue| v.to_str().ok());
        Self {
            etag: get(header::ETAG),
            last_modified: get(header::LAST_MODIFIED),
        }
    }
}

/// Whether a request's `If-Range` (RFC 9110 §13.1.5) lets its `Range` apply: true without
/// `If-Range`; with an entity-tag, only on a strong match; with a date, only when it equals
/// `Last-Modified` exactly. When false the whole representation is sent (200).
pub fn if_range_holds(headers: &HeaderMap, v: Validators<'_>) -> bool {
    let Some(cond) = headers.get(header::IF_RANGE) else {
        return true;
    };
    let Ok(cond) = cond.to_str() else {
        return false;
    };
    let cond = cond.trim();
    if cond.starts_with('"') || cond.starts_with("W/") {
        // Weak tags never match (strong comparison), neither on our side nor theirs.
        return !cond.starts_with("W/")
            && v.etag.is_some_and(|e| !e.starts_with("W/") && e == cond);
    }
    v.last_modified.is_some_and(|lm| lm.trim() == cond)
}

/// The range to answer for a representation of `len` bytes with validators `v`: `Range`
/// resolved by [`parse_range`], or the whole body when `If-Range` does not hold.
pub fn range_for(headers: &HeaderMap, len: u64, v: Validators<'_>) -> RangeReq {
    if has_range(headers) && !if_range_holds(headers, v) {
        return RangeReq::Full;
    }
    parse_range(headers, len)
}

/// Resolves the `Range` header against `len` bytes, ignoring `If-Range` ([`range_for`] checks it).
/// Multiple ranges and invalid syntax are answered with the whole body, which RFC 9110 §14.2
/// allows.
fn parse_range(headers: &HeaderMap, len: u64) -> RangeReq {
    let Some(v) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return RangeReq::Full;
    };
    let Some(spec) = v.trim().strip_prefix("bytes=") else {
        return RangeReq::Full;
    };
    if spec.contains(',') {
        return RangeReq::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeReq::Full;
    };
    let (a, b) = (a.trim(), b.trim());
    let parsed = match (a.is_empty(), b.is_empty()) {
        (true, false) => b.parse::<u64>().ok().map(|n| {
            if n == 0 || len == 0 {
                None
            } else {
                Some((len.saturating_sub(n), len - 1))
            }
        }),
        (false, _) => a.parse::<u64>().ok().and_then(|s| {
            let e = if b.is_empty() {
                Some(len.saturating_sub(1))
            } else {
                b.parse::<u64>().ok()
            };
            e.map(|e| (s <= e && s < len).then(|| (s, e.min(len - 1))))
        }),
        (true, true) => None,
    };
    match parsed {
        None => RangeReq::Full,
        Some(None) => RangeReq::Unsatisfiable,
        Some(Some((s, e))) => RangeReq::Part(s, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn h(range: &str) -> HeaderMap {
        let mut m = HeaderMap::new();
        m.insert(header::RANGE, HeaderValue::from_str(range).unwrap());
        m
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range(&h("bytes=0-99"), 1000), RangeReq::Part(0, 99));
        assert_eq!(
            parse_range(&h("bytes=900-"), 1000),
            RangeReq::Part(900, 999)
        );
        assert_eq!(
            parse_range(&h("bytes=-100"), 1000),
            RangeReq::Part(900, 999)
        );
        assert_eq!(
            parse_range(&h("bytes=990-2000"), 1000),
            RangeReq::Part(990, 999)
        );
        assert_eq!(
            parse_range(&h("bytes=1000-"), 1000),
            RangeReq::Unsatisfiable
        );
        assert_eq!(parse_range(&h("bytes=5-1"), 1000), RangeReq::Unsatisfiable);
        assert_eq!(parse_range(&h("bytes=-0"), 1000), RangeReq::Unsatisfiable);
        assert_eq!(parse_range(&h("bytes=x-1"), 1000), RangeReq::Full);
        assert_eq!(parse_range(&h("bytes=0-1,5-6"), 1000), RangeReq::Full);
        assert_eq!(parse_range(&h("items=0-1"), 1000), RangeReq::Full);
        assert_eq!(parse_range(&HeaderMap::new(), 1000), RangeReq::Full);
    }

    /// Regression: an `If-Range` that does not match got 206; RFC 9110 §13.1.5 wants 200.
    #[test]
    fn if_range_must_match_to_cut_a_range() {
        let v = Validators {
            etag: Some("\"abc\""),
            last_modified: Some("Sun, 29 Nov 2026 12:00:00 GMT"),
        };
        let with = |cond: &str| {
            let mut m = h("bytes=0-9");
            m.insert(header::IF_RANGE, HeaderValue::from_str(cond).unwrap());
            range_for(&m, 100, v)
        };
        assert_eq!(range_for(&h("bytes=0-9"), 100, v), RangeReq::Part(0, 9));
        assert_eq!(with("\"abc\""), RangeReq::Part(0, 9));
        assert_eq!(with("\"other\""), RangeReq::Full);
        assert_eq!(with("W/\"abc\""), RangeReq::Full, "weak tags never match");
        assert_eq!(with("Sun, 29 Nov 2026 12:00:00 GMT"), RangeReq::Part(0, 9));
        assert_eq!(with("Sat, 28 Nov 2026 12:00:00 GMT"), RangeReq::Full);
        let mut m = h("bytes=0-9");
        m.insert(header::IF_RANGE, HeaderValue::from_static("\"abc\""));
        assert_eq!(
            range_for(&m, 100, Validators::default()),
            RangeReq::Full,
            "no validators: nothing can match"
        );
    }

    #[test]
    fn etags() {
        let mut m = HeaderMap::new();
        m.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"a\", W/\"b\""),
        );
        assert!(
            etag_matches(&m, "\"a\"") && etag_matches(&m, "\"b\"") && !etag_matches(&m, "\"c\"")
        );
    }
}
