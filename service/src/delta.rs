//! HTTP delta-seconds (RFC 9110 §5.6.6 / RFC 9111 §1.2.2) as they come off the wire in
//! `Cache-Control`, `Age` and `Retry-After`: a value too large to represent counts as 2^31
//! seconds, so no later time arithmetic can overflow on a hostile header.

use std::time::Duration;

/// The largest delta-seconds value a cache needs to represent (RFC 9111 §1.2.2): 2^31 s,
/// about 68 years. Larger values, and values that overflow any integer, become this.
pub const MAX_DELTA: Duration = Duration::from_secs(1 << 31);

/// Parses a delta-seconds value (ASCII digits only, surrounding whitespace and one pair of
/// quotes tolerated), capped at [`MAX_DELTA`]. Anything else is `None`.
pub fn parse(s: &str) -> Option<Duration> {
    let s = s.trim();
    let s = s
        .strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .unwrap_or(s);
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Any run of digits is a valid delta-seconds; one too long for u64 is "very large".
    let secs = s.parse::<u64>().unwrap_or(u64::MAX);
    Some(Duration::from_secs(secs).min(MAX_DELTA))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn caps_and_refuses() {
        assert_eq!(parse("60"), Some(Duration::from_secs(60)));
        assert_eq!(parse(" \"5\" "), Some(Duration::from_secs(5)));
        assert_eq!(parse("18446744073709551615"), Some(MAX_DELTA));
        assert_eq!(parse("99999999999999999999999999"), Some(MAX_DELTA));
        assert_eq!(parse("2147483648"), Some(MAX_DELTA));
        for bad in ["", "-1", "+1", "1.5", "0x10", "1 2", "\"", "abc"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn never_above_the_cap(s in "\\PC{0,40}") {
            if let Some(d) = parse(&s) {
                prop_assert!(d <= MAX_DELTA);
            }
        }
    }
}
