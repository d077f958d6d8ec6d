//! `HlsPath::parse` on arbitrary UTF-8: never panics, and whatever it accepts round-trips
//! through `to_path`.

#![no_main]

use hls::HlsPath;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(p) = HlsPath::parse(s) {
        let rendered = p.to_path();
        assert_eq!(HlsPath::parse(&rendered), Ok(p.clone()), "round trip of {s:?} via {rendered:?}");
        // Extra invariant: the parser is strict (no leading zeros, no dot segments, no
        // percent-encoding), so an accepted path is already the canonical spelling.
        assert_eq!(rendered, s, "accepted non-canonical path");
        let _ = p.stream();
    }
});
