//! Hop lists in a chain of caches: `Via` (RFC 9110 §7.6.3) and `Cache-Status` (RFC 9211)
//! get this node appended rather than overwritten, so a response through edge → shield →
//! origin names every cache it passed; a request whose `Via` already names this node has
//! gone round in a loop (508).

use http::{HeaderMap, HeaderValue};

/// Longest incoming `Via` carried on upstream: a longer one (no real chain is that long) is
/// not forwarded, only this node's own entry is.
pub const MAX_FORWARDED_VIA: usize = 2048;

/// Whether `node` is a usable node id: it goes into `Via` as a pseudonym (an HTTP token)
/// and into `Cache-Status` as a structured-field token, so letters, digits, `-`, `.`, `_`,
/// starting with a letter, at most 64.
pub fn valid_node_id(node: &str) -> bool {
    let b = node.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_alphabetic()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_'))
}

/// The node id when the config sets none: the host name (a Kubernetes pod's name) and the
/// viewers' port, so that two edges on one host differ too; made a valid id.
pub fn auto_node_id(hostname: &str, port: u16) -> String {
    let mut id: String = hostname
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_') {
                c
            } else {
                '-'
            }
        })
        .take(50)
        .collect();
    if !id.starts_with(|c: char| c.is_ascii_alphabetic()) {
        id.insert_str(0, "edge-");
    }
    format!("{id}-{port}")
}

/// This machine's host name (empty when unknown).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Whether any `Via` entry in `headers` was received by `node` (`protocol received-by
/// [comment]`, comma-separated, over any number of header lines).
pub fn passed(headers: &HeaderMap, node: &str) -> bool {
    headers
        .get_all(http::header::VIA)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|entry| {
            let mut words = entry.split_whitespace();
            let _protocol = words.next();
            words.next() == Some(node)
        })
}

/// `existing` list entries (every line of header `name`, joined) followed by `ours`.
fn appended(headers: &HeaderMap, name: &http::HeaderName, ours: &str, limit: usize) -> String {
    let mut out = String::new();
    for v in headers.get_all(name) {
        if let Ok(s) = v.to_str() {
            let s = s.trim();
            if !s.is_empty() {
                if !out.is_empty() {
                    out.push_str(", ");
                }
                out.push_str(s);
            }
        }
    }
    if out.len() > limit {
        out.clear();
    }
    if !out.is_empty() {
        out.push_str(", ");
    }
    out.push_str(ours);
    out
}

/// The `Via` to send upstream for a request that arrived with `headers`: its own `Via`
/// (when not oversized) and this node.
pub fn upstream_via(headers: &HeaderMap, node: &str) -> HeaderValue {
    if !headers.contains_key(http::header::VIA) {
        return own_entry(node);
    }
    value(appended(
        headers,
        &http::header::VIA,
        &format!("1.1 {node}"),
        MAX_FORWARDED_VIA,
    ))
}

/// This node's own `Via` entry, `1.1 NODE` (built once per config, not per response).
pub fn own_entry(node: &str) -> HeaderValue {
    value(format!("1.1 {node}"))
}

/// Appends this node to the response's `Via` and its entry `ours` to `Cache-Status`
/// (the upstream's entries, if any, stay first: closest to the origin first).
pub fn append_hop(headers: &mut HeaderMap, node: &str, ours: &str) {
    append_entries(headers, &own_entry(node), ours.to_string());
}

/// [`append_hop`] with this node's `Via` entry prebuilt ([`own_entry`]): a response whose
/// upstream sent neither header (the usual case) costs no list building.
pub fn append_entries(headers: &mut HeaderMap, own: &HeaderValue, ours: String) {
    let cache_status = http::HeaderName::from_static("cache-status");
    let via = if headers.contains_key(http::header::VIA) {
        let own = own.to_str().unwrap_or("");
        value(appended(
            headers,
            &http::header::VIA,
            own,
            MAX_FORWARDED_VIA,
        ))
    } else {
        own.clone()
    };
    let cs = if headers.contains_key(&cache_status) {
        value(appended(headers, &cache_status, &ours, MAX_FORWARDED_VIA))
    } else {
        value(ours)
    };
    headers.insert(http::header::VIA, via);
    headers.insert(cache_status, cs);
}

fn value(s: String) -> HeaderValue {
    // Built from valid header values, a checked node id and our own entries; the String's
    // buffer becomes the value's without a copy.
    HeaderValue::try_from(s).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn hops_are_appended_closest_to_the_origin_first() {
        let mut h = map(&[
            ("via", "1.1 shield-a"),
            ("cache-status", "shield-a; fwd=miss; fwd-status=200"),
        ]);
        append_hop(&mut h, "edge-7", "edge-7; hit; ttl=3");
        assert_eq!(h["via"], "1.1 shield-a, 1.1 edge-7");
        assert_eq!(
            h["cache-status"],
            "shield-a; fwd=miss; fwd-status=200, edge-7; hit; ttl=3"
        );
        let mut alone = HeaderMap::new();
        append_hop(&mut alone, "edge", "edge; hit");
        assert_eq!(alone["via"], "1.1 edge");
        assert_eq!(alone["cache-status"], "edge; hit");
    }

    #[test]
    fn a_loop_is_seen_in_any_line_and_entry() {
        let h = map(&[
            ("via", "1.0 fred, 1.1 p.example.net (Apache)"),
            ("via", "HTTP/1.1 edge-7"),
        ]);
        assert!(passed(&h, "edge-7"));
        assert!(passed(&h, "fred"));
        assert!(!passed(&h, "edge"));
        assert!(!passed(&h, "1.1"));
        assert_eq!(
            upstream_via(&h, "edge-8"),
            "1.0 fred, 1.1 p.example.net (Apache), HTTP/1.1 edge-7, 1.1 edge-8"
        );
    }

    #[test]
    fn an_oversized_via_is_not_forwarded() {
        let long = "1.1 x, ".repeat(400);
        let h = map(&[("via", long.trim_end_matches(", "))]);
        assert_eq!(upstream_via(&h, "edge"), "1.1 edge");
    }

    #[test]
    fn automatic_ids_are_valid_and_differ_by_port() {
        assert_eq!(auto_node_id("edge-7f9c", 8081), "edge-7f9c-8081");
        assert_eq!(auto_node_id("10.0.0.5", 80), "edge-10.0.0.5-80");
        assert_eq!(auto_node_id("", 80), "edge--80");
        assert_eq!(auto_node_id("héllo wörld", 1), "h-llo-w-rld-1");
        for h in ["", "x", "9", "a b", &"y".repeat(200)] {
            assert!(valid_node_id(&auto_node_id(h, 65535)), "{h}");
        }
    }

    #[test]
    fn node_ids() {
        for ok in ["edge", "edge-7", "shield.eu-west.3", "a_b"] {
            assert!(valid_node_id(ok), "{ok}");
        }
        for bad in ["", "7edge", "edge 7", "edge,7", "edge;x", &"x".repeat(65)] {
            assert!(!valid_node_id(bad), "{bad}");
        }
    }

    proptest! {
        /// Any header bytes: no panic, and our own entry always ends the list.
        #[test]
        fn never_panics_and_ends_with_us(v in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut h = HeaderMap::new();
            if let Ok(val) = HeaderValue::from_bytes(&v) {
                h.append(http::header::VIA, val.clone());
                h.append("cache-status", val);
            }
            let _ = passed(&h, "edge");
            let up = upstream_via(&h, "edge");
            prop_assert!(up.to_str().unwrap_or("1.1 edge").ends_with("1.1 edge"));
            append_hop(&mut h, "edge", "edge; hit");
            prop_assert!(h["cache-status"].to_str().map(|s| s.ends_with("edge; hit")).unwrap_or(true));
        }
    }
}
