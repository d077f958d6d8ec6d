//! What an upstream or a client sends in headers, through every parser and time
//! computation the edge applies to it: `Cache-Control`, `Age`, `Retry-After`, `Range`,
//! `If-Range`, `If-None-Match`, `Via` and `Cache-Status` (hop lists, loop detection). Never
//! panics; ranges stay inside the body; this node's entry always ends the hop lists.

#![no_main]

use std::time::Duration;

use edge::cache_control::Directives;
use edge::classify::Kind;
use edge::config::CacheConfig;
use edge::object::{Freshness, upstream_age};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use libfuzzer_sys::fuzz_target;
use service::conditional::{RangeReq, Validators, range_for};

fuzz_target!(|data: &[u8]| {
    // Fields separated by NUL: cache-control, age, retry-after, range, if-range, etag, via,
    // cache-status.
    let mut f = data.split(|b| *b == 0);
    let mut h = HeaderMap::new();
    for name in [
        header::CACHE_CONTROL,
        header::AGE,
        header::RETRY_AFTER,
        header::RANGE,
        header::IF_RANGE,
        header::IF_NONE_MATCH,
        header::VIA,
        http::HeaderName::from_static("cache-status"),
    ] {
        if let Some(v) = f.next().and_then(|v| HeaderValue::from_bytes(v).ok()) {
            h.insert(name, v);
        }
    }
    let d = Directives::from_headers(&h);
    let age = upstream_age(&h);
    assert!(age <= service::delta::MAX_DELTA);
    for kind in [Kind::Segment, Kind::Playlist, Kind::Other] {
        for status in [StatusCode::OK, StatusCode::NOT_FOUND] {
            if let Some(fr) = Freshness::of(status, &d, kind, &CacheConfig::default()) {
                let _ = fr.useful_for().saturating_add(Duration::from_secs(1));
            }
        }
    }
    let len = data.len() as u64;
    let v = Validators {
        etag: Some("\"e\""),
        last_modified: Some("Sun, 29 Nov 2026 12:00:00 GMT"),
    };
    if let RangeReq::Part(s, e) = range_for(&h, len, v) {
        assert!(s <= e && e < len);
    }
    let _ = edge::via::passed(&h, "edge-a");
    let up = edge::via::upstream_via(&h, "edge-a");
    assert!(up.len() <= edge::via::MAX_FORWARDED_VIA + 16);
    edge::via::append_hop(&mut h, "edge-a", "edge-a; hit");
    assert!(h[header::VIA].as_bytes().ends_with(b"1.1 edge-a"));
});
