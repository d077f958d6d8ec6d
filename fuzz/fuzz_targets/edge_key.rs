//! The edge's cache key (`edge::key::normalize`) on arbitrary request targets: never panics,
//! whatever it accepts is canonical (normalising it again gives the same key), and LL-HLS
//! directives survive only on media playlists.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(target) = std::str::from_utf8(data) else {
        return;
    };
    let allow: Vec<String> = ["_HLS_msn", "_HLS_part", "_HLS_skip", "t"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if let Ok(k) = edge::key::normalize(target, &allow) {
        let again = edge::key::normalize(k.as_str(), &allow).expect("a key normalises");
        assert_eq!(again, k, "not canonical: {target:?}");
        if edge::classify::Kind::of_path(k.path()) != edge::classify::Kind::Playlist {
            let query = k.as_str().split_once('?').map_or("", |(_, q)| q);
            assert!(
                !query.split('&').any(|kv| kv.starts_with("_HLS_")),
                "directive kept on {k}"
            );
        }
    }
});
