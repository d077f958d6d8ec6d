//! Every parser and time computation the edge applies to what an upstream or a client sends,
//! fed arbitrary header values: none may panic, and the results stay within their bounds
//! (hardening item 7: `max-age=18446744073709551615` once panicked a worker).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bytes::Bytes;
use edge::cache_control::Directives;
use edge::classify::Kind;
use edge::config::CacheConfig;
use edge::object::{CachedObject, Freshness, end_to_end, upstream_age};
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode, header};
use proptest::prelude::*;
use service::conditional::{Validators, etag_matches, if_range_holds, range_for};
use tokio::time::Instant;

/// Header values as they may come off the wire: digits (huge ones too), directive-like text,
/// and arbitrary visible bytes.
fn wire_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9]{1,40}",
        "(max-age|s-maxage|stale-if-error|stale-while-revalidate)=\"?[0-9]{0,30}\"?(, ?(no-cache|no-store|private|immutable|must-revalidate|max-age=[0-9]{0,25}))*",
        "bytes=[0-9]{0,25}-[0-9]{0,25}(,[0-9]{0,5}-[0-9]{0,5})?",
        "(W/)?\"[ -~]{0,20}\"",
        "[ -~]{0,60}",
    ]
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::Master),
        Just(Kind::Playlist),
        Just(Kind::BlockingPlaylist),
        Just(Kind::Segment),
        Just(Kind::Other),
    ]
}

fn map(pairs: &[(HeaderName, String)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.append(k.clone(), v);
        }
    }
    h
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Upstream response headers through freshness, age and the object's clock.
    #[test]
    fn upstream_headers_never_panic(
        cc in wire_value(),
        cc2 in wire_value(),
        age in wire_value(),
        status in 100u16..600,
        kind in kind(),
        later_s in 0u64..(1 << 40),
        ct in "[ -~]{0,40}",
        body in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let h = map(&[
            (header::CACHE_CONTROL, cc),
            (header::CACHE_CONTROL, cc2),
            (header::AGE, age),
            (header::CONTENT_TYPE, ct.clone()),
        ]);
        let d = Directives::from_headers(&h);
        let initial_age = upstream_age(&h);
        prop_assert!(initial_age <= service::delta::MAX_DELTA);
        let status = StatusCode::from_u16(status).unwrap();
        let kind = kind.refine(&ct, &body);
        let cfg = CacheConfig::default();
        if let Some(freshness) = Freshness::of(status, &d, kind, &cfg) {
            let _ = freshness.useful_for().saturating_add(Duration::from_secs(1));
            let o = CachedObject {
                status,
                headers: end_to_end(&h),
                body: Bytes::from(body),
                stored_at: Instant::now(),
                initial_age,
                freshness,
                kind,
                prefetched: Default::default(),
            };
            let later = Instant::now() + Duration::from_secs(later_s);
            let _ = o.state(later);
            let _ = o.ttl_secs(later);
            let _ = o.weight();
            let _ = HeaderValue::from(o.age(later).as_secs());
        }
    }

    /// A response's status and Retry-After decide retries and the breaker.
    #[test]
    fn retry_after_and_status_never_panic(status in 100u16..600, ra in wire_value()) {
        let mut r = Response::new(());
        *r.status_mut() = StatusCode::from_u16(status).unwrap();
        if let Ok(v) = HeaderValue::from_str(&ra) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        let deliberate = edge::upstream::is_deliberate(&r);
        prop_assert!(deliberate || status >= 500);
    }

    /// Client conditional and range headers against a body and its validators.
    #[test]
    fn client_conditionals_never_panic(
        range in wire_value(),
        if_range in wire_value(),
        inm in wire_value(),
        etag in "(W/)?\"[a-z0-9]{0,8}\"",
        len in 0u64..(1 << 40),
    ) {
        let h = map(&[
            (header::RANGE, range),
            (header::IF_RANGE, if_range),
            (header::IF_NONE_MATCH, inm),
        ]);
        let v = Validators { etag: Some(&etag), last_modified: Some("Sun, 29 Nov 2026 12:00:00 GMT") };
        let _ = etag_matches(&h, &etag);
        let _ = if_range_holds(&h, v);
        if let service::conditional::RangeReq::Part(s, e) = range_for(&h, len, v) {
            prop_assert!(s <= e && e < len);
        }
    }

    /// Request targets through the cache key and the classifier.
    #[test]
    fn request_targets_never_panic(t in "[ -~]{0,120}") {
        let allow = CacheConfig::default().query_allowlist;
        if let Ok(k) = edge::key::normalize(&t, &allow) {
            let _ = Kind::of_request(&k);
            prop_assert_eq!(edge::key::normalize(k.as_str(), &allow).unwrap(), k);
        }
    }
}
