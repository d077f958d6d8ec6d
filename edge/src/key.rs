//! Cache keys: the request path plus the allow-listed query parameters, normalised, so that
//! every spelling of one object shares one entry and one upstream fetch. Anything ambiguous
//! (dot segments, encoded slashes, bad percent-encoding, control characters) is refused:
//! a proxy that guesses is a proxy that can be tricked into serving the wrong object.

use std::fmt;

use crate::classify::Kind;

/// A normalised `path[?query]`, also the path and query sent upstream.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey(String);

impl CacheKey {
    /// The key as `path[?query]`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The path part.
    pub fn path(&self) -> &str {
        self.0.split_once('?').map_or(&self.0, |(p, _)| p)
    }
    /// The value of query parameter `name`, if kept.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        let (_, q) = self.0.split_once('?')?;
        q.split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a request target has no cache key (answered with 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not an origin-form path.
    #[error("the request target must be a path starting with /")]
    NotAPath,
    /// `%` not followed by two hex digits.
    #[error("bad percent-encoding")]
    BadPercent,
    /// Decodes to something that is not UTF-8.
    #[error("path does not decode to UTF-8")]
    NotUtf8,
    /// `.` or `..` segments (or their encodings).
    #[error("dot segments are not allowed")]
    DotSegment,
    /// An encoded `/`, `\`, `%`, or a control character.
    #[error("encoded separator or control character in path")]
    Forbidden,
    /// `//` in the path.
    #[error("empty path segment")]
    EmptySegment,
    /// A kept query parameter given twice, or with a value outside `[A-Za-z0-9._-]`; an
    /// `_HLS_msn`/`_HLS_part` that is not a non-negative integer, an `_HLS_skip` other than
    /// `YES`/`v2`, or `_HLS_part` without `_HLS_msn`.
    #[error("bad query parameter {0:?}")]
    BadQuery(String),
    /// Longer than the limit.
    #[error("request target too long")]
    TooLong,
}

const MAX_TARGET: usize = 2048;

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn decode(s: &str) -> Result<String, KeyError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hi = b
                .get(i + 1)
                .copied()
                .and_then(hex)
                .ok_or(KeyError::BadPercent)?;
            let lo = b
                .get(i + 2)
                .copied()
                .and_then(hex)
                .ok_or(KeyError::BadPercent)?;
            let c = hi << 4 | lo;
            // An encoded separator or escape would change meaning once decoded upstream.
            if matches!(c, b'/' | b'\\' | b'%' | b'?' | b'#') {
                return Err(KeyError::Forbidden);
            }
            out.push(c);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    let s = String::from_utf8(out).map_err(|_| KeyError::NotUtf8)?;
    if s.chars().any(|c| c.is_control() || c == '\\') {
        return Err(KeyError::Forbidden);
    }
    Ok(s)
}

/// Characters left as they are in a canonical path; everything else is percent-encoded.
fn keep(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&c)
}

fn encode_segment(seg: &str, out: &mut String) {
    for &b in seg.as_bytes() {
        if keep(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// Builds the cache key of a request target (`path[?query]`), keeping only the query
/// parameters named in `allow`, sorted.
pub fn normalize(target: &str, allow: &[String]) -> Result<CacheKey, KeyError> {
    if target.len() > MAX_TARGET {
        return Err(KeyError::TooLong);
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let path = path.split_once('#').map_or(path, |(p, _)| p);
    if !path.starts_with('/') {
        return Err(KeyError::NotAPath);
    }
    let mut key = String::with_capacity(target.len());
    let segments: Vec<&str> = path[1..].split('/').collect();
    for (i, raw) in segments.iter().enumerate() {
        let seg = decode(raw)?;
        if seg == "." || seg == ".." {
            return Err(KeyError::DotSegment);
        }
        if seg.is_empty() && i + 1 != segments.len() {
            return Err(KeyError::EmptySegment);
        }
        key.push('/');
        encode_segment(&seg, &mut key);
    }
    // LL-HLS delivery directives mean something only on a media playlist; anywhere else
    // each new value would be a new key, i.e. a free cache-busting lever.
    let media_playlist = Kind::of_path(&key) == Kind::Playlist;
    let mut kept: Vec<(&str, String)> = Vec::new();
    for kv in query.unwrap_or("").split('&').filter(|s| !s.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        if !allow.iter().any(|a| a == k) || (k.starts_with("_HLS_") && !media_playlist) {
            continue;
        }
        let bad = || KeyError::BadQuery(k.to_string());
        let v = decode(v).map_err(|_| bad())?;
        let v = match k {
            // Non-negative decimal integers, written canonically (`007` is `7`).
            "_HLS_msn" | "_HLS_part" => {
                if v.is_empty() || v.len() > 20 || !v.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad());
                }
                v.parse::<u64>().map_err(|_| bad())?.to_string()
            }
            "_HLS_skip" if v == "YES" || v == "v2" => v,
            "_HLS_skip" => return Err(bad()),
            _ if v.len() > 64
                || !v
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) =>
            {
                return Err(bad());
            }
            _ => v,
        };
        if kept.iter().any(|(x, _)| *x == k) {
            return Err(bad());
        }
        kept.push((k, v));
    }
    // RFC 8216bis §6.2.5.2: _HLS_part without _HLS_msn is an error.
    if kept.iter().any(|(k, _)| *k == "_HLS_part") && !kept.iter().any(|(k, _)| *k == "_HLS_msn") {
        return Err(KeyError::BadQuery("_HLS_part".into()));
    }
    kept.sort();
    for (i, (k, v)) in kept.iter().enumerate() {
        key.push(if i == 0 { '?' } else { '&' });
        key.push_str(k);
        key.push('=');
        key.push_str(v);
    }
    // Percent-encoding can triple a target's length: the key itself (what goes upstream)
    // must also be within the limit, or the key would not be a valid target.
    if key.len() > MAX_TARGET {
        return Err(KeyError::TooLong);
    }
    Ok(CacheKey(key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn allow() -> Vec<String> {
        vec!["_HLS_msn".into(), "_HLS_part".into(), "_HLS_skip".into()]
    }

    #[test]
    fn normalises_spellings_of_one_object() {
        let k = |t| normalize(t, &allow()).unwrap().to_string();
        assert_eq!(
            k("/live/demo/360p/index.m3u8"),
            "/live/demo/360p/index.m3u8"
        );
        assert_eq!(
            k("/live/%64emo/360p/index.m3u8?t=123"),
            "/live/demo/360p/index.m3u8"
        );
        assert_eq!(
            k("/a/index.m3u8?_HLS_part=2&x=1&_HLS_msn=10"),
            "/a/index.m3u8?_HLS_msn=10&_HLS_part=2"
        );
        assert_eq!(k("/a%20b/c"), "/a%20b/c");
        assert_eq!(k("/a b"), "/a%20b");
        assert_eq!(k("/"), "/");
        assert_eq!(k("/dir/"), "/dir/");
    }

    #[test]
    fn refuses_ambiguous_targets() {
        for t in [
            "/live/../etc/passwd",
            "/live/%2e%2e/etc",
            "/live/./x",
            "/a%2Fb",
            "/a%5cb",
            "/a%zz",
            "/a%4",
            "/a%00b",
            "/a//b",
            "/a%ff",
            "/a%2525",
            "x/y",
            "*",
            "/a.m3u8?_HLS_msn=1&_HLS_msn=2",
            "/a.m3u8?_HLS_msn=%3Cscript%3E",
        ] {
            assert!(normalize(t, &allow()).is_err(), "{t}");
        }
    }

    /// Regression: `?_HLS_msn=N` on a segment made a new key (and an origin fetch, and a
    /// stored copy) per value. LL-HLS directives are kept only on media playlists, only
    /// well-formed, and written canonically.
    #[test]
    fn hls_directives_only_key_media_playlists() {
        let k = |t| normalize(t, &allow()).map(|k| k.to_string());
        for t in [
            "/live/x/360p/12.ts?_HLS_msn=7",
            "/live/x/360p/12.ts?_HLS_part=3&_HLS_msn=1",
            "/live/x/360p/12.ts?_HLS_msn=bogus",
        ] {
            assert_eq!(k(t).unwrap(), "/live/x/360p/12.ts", "{t}");
        }
        assert_eq!(
            k("/live/x/master.m3u8?_HLS_msn=3").unwrap(),
            "/live/x/master.m3u8"
        );
        assert_eq!(
            k("/live/x/360p/index.m3u8?_HLS_msn=007&_HLS_part=00").unwrap(),
            "/live/x/360p/index.m3u8?_HLS_msn=7&_HLS_part=0"
        );
        assert_eq!(
            k("/live/x/360p/index.m3u8?_HLS_skip=YES").unwrap(),
            "/live/x/360p/index.m3u8?_HLS_skip=YES"
        );
        for t in [
            "/live/x/360p/index.m3u8?_HLS_msn=-1",
            "/live/x/360p/index.m3u8?_HLS_msn=1.5",
            "/live/x/360p/index.m3u8?_HLS_msn=",
            "/live/x/360p/index.m3u8?_HLS_msn=99999999999999999999",
            "/live/x/360p/index.m3u8?_HLS_skip=yes",
            "/live/x/360p/index.m3u8?_HLS_part=1",
            "/live/x/360p/index.m3u8?_HLS_msn=1&_HLS_msn=01",
        ] {
            assert!(k(t).is_err(), "{t}");
        }
    }

    /// Found by the edge_key fuzz target: 1,071 bytes with spaces encode to a key over
    /// the 2,048-byte limit, which was accepted (and sent upstream) but is itself refused.
    #[test]
    fn a_key_is_never_longer_than_a_target_may_be() {
        let t = format!("/{}.ts", " ".repeat(1000));
        assert_eq!(normalize(&t, &allow()), Err(KeyError::TooLong));
        let t = format!("/{}.ts", " ".repeat(600));
        let k = normalize(&t, &allow()).unwrap();
        assert_eq!(normalize(k.as_str(), &allow()).unwrap(), k);
    }

    proptest! {
        #[test]
        fn never_panics_and_is_idempotent(t in "/[a-zA-Z0-9%./?&=_ -]{0,60}") {
            if let Ok(k) = normalize(&t, &allow()) {
                let again = normalize(k.as_str(), &allow()).unwrap();
                prop_assert_eq!(again, k);
            }
        }
    }
}
