//! Fuzz target: the media playlist an upstream sends, through pre-warming's reading of it
//! (`edge::prefetch::newly_listed`). Byte 0 picks the last media sequence number seen (255 =
//! none); the rest is the playlist. Never panics; at most `max` segments, each a path on this
//! host that the cache key accepts or refuses without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&first, body)) = data.split_first() else {
        return;
    };
    let seen = (first != 255).then_some(u64::from(first));
    if let Ok(l) = edge::prefetch::newly_listed("/live/s/v/index.m3u8", body, seen, 3) {
        assert!(l.new.len() <= 3);
        if l.new.is_empty() {
            return;
        }
        assert!(l.last.is_some_and(|last| seen.is_some_and(|s| last > s)));
        for t in &l.new {
            assert!(t.starts_with('/') && !t.contains("://"), "{t}");
            let _ = edge::key::normalize(t, &["_HLS_msn".to_string()]);
        }
    }
});
