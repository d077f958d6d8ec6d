//! Fuzz target: the media playlist parser a player runs on whatever a server sends.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(pl) = hls::MediaPlaylist::parse(text)
    {
        // Whatever parses must survive a write/parse round trip unchanged in structure.
        let again = hls::MediaPlaylist::parse(&pl.write()).expect("re-parse of our own output");
        assert_eq!(again.segments.len(), pl.segments.len());
        assert_eq!(again.media_sequence, pl.media_sequence);
    }
});
