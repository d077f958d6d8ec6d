//! Pre-warming: which segments a refreshed media playlist lists that its previous version
//! did not, so they are fetched before the viewers who will read that playlist ask.
//!
//! A live audience reloads a media playlist every target duration and asks for the newest
//! segment right after; without pre-warming the first of them pays the upstream round trip
//! while the rest wait on its fetch. A media playlist is only refreshed because viewers read
//! it, so prefetching what its refresh lists touches only renditions watched right now.
//! Decisions are pure ([`newly_listed`]); the fetches are driven by the proxy.

use crate::key::CacheKey;

/// Most bytes of playlist text looked at (a live media playlist is a few KiB).
pub const MAX_PLAYLIST_BYTES: usize = 1 << 20;

/// Most playlists whose last media sequence number is remembered.
const REMEMBERED_PLAYLISTS: u64 = 16_384;

/// Why a playlist's body gave no segments to prefetch.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ListingError {
    /// Larger than [`MAX_PLAYLIST_BYTES`].
    #[error("playlist larger than {MAX_PLAYLIST_BYTES} bytes")]
    TooLarge,
    /// Not a media playlist (a multivariant one, or not a playlist at all).
    #[error("not a media playlist")]
    NotMedia,
}

/// What a refreshed media playlist says that its previous version did not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// Media sequence number of its last segment (`None` when it lists none).
    pub last: Option<u64>,
    /// Request targets (`/path?query`) of newly listed segments, oldest first, at most
    /// the newest `max` of them.
    pub new: Vec<String>,
}

/// The segments `body` (the media playlist at `target`) lists after media sequence number
/// `seen`, the last one its previous version listed. On a first sighting (`seen` is `None`)
/// or when the numbering went backwards (a restarted or different origin) nothing is new:
/// what is already listed was there before this edge looked. Segments named by absolute
/// URL (another host) are not ours to fetch and are left out.
pub fn newly_listed(
    target: &str,
    body: &[u8],
    seen: Option<u64>,
    max: usize,
) -> Result<Listing, ListingError> {
    if body.len() > MAX_PLAYLIST_BYTES {
        return Err(ListingError::TooLarge);
    }
    let pl = match m3u8_rs::parse_playlist_res(body) {
        Ok(m3u8_rs::Playlist::MediaPlaylist(pl)) => pl,
        _ => return Err(ListingError::NotMedia),
    };
    let n = pl.segments.len() as u64;
    let last = (n > 0).then(|| pl.media_sequence.saturating_add(n - 1));
    let first_new = match (seen, last) {
        (Some(s), Some(l)) if s < l => s.saturating_add(1),
        _ => return Ok(Listing { last, new: vec![] }),
    };
    let dir = dir_of(target);
    let new = pl
        .segments
        .iter()
        .enumerate()
        .filter(|(i, _)| pl.media_sequence.saturating_add(*i as u64) >= first_new)
        .filter_map(|(_, s)| resolve(dir, &s.uri))
        .collect::<Vec<_>>();
    let skip = new.len().saturating_sub(max);
    Ok(Listing {
        last,
        new: new.into_iter().skip(skip).collect(),
    })
}

fn path_of(k: &CacheKey) -> &str {
    k.as_str().split('?').next().unwrap_or("")
}

/// The playlist's folder with its trailing `/` (the query is not part of it).
fn dir_of(target: &str) -> &str {
    let path = target.split(['?', '#']).next().unwrap_or(target);
    path.rfind('/').map_or("/", |i| &path[..=i])
}

/// A segment URI as a request target on this host, or `None` for one on another host.
fn resolve(dir: &str, uri: &str) -> Option<String> {
    let uri = uri.trim();
    if uri.is_empty() || uri.contains("://") || uri.starts_with("//") {
        return None;
    }
    if uri.starts_with('/') {
        Some(uri.to_string())
    } else {
        Some(format!("{dir}{uri}"))
    }
}

/// The last media sequence number seen per media playlist path (its query left out: LL-HLS
/// `_HLS_msn` requests are one playlist), bounded in count and forgotten when a playlist
/// goes unread for a minute.
#[derive(Clone)]
pub struct Seen(moka::sync::Cache<String, u64>);

impl Default for Seen {
    fn default() -> Self {
        Self(
            moka::sync::Cache::builder()
                .max_capacity(REMEMBERED_PLAYLISTS)
                .time_to_idle(std::time::Duration::from_secs(60))
                .build(),
        )
    }
}

impl Seen {
    /// The last number remembered for `playlist`.
    pub fn get(&self, playlist: &CacheKey) -> Option<u64> {
        self.0.get(path_of(playlist))
    }

    /// Remembers `last` for `playlist`.
    pub fn set(&self, playlist: &CacheKey, last: u64) {
        self.0.insert(path_of(playlist).to_string(), last);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn playlist(first: u64, uris: &[&str]) -> String {
        let mut s = format!(
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:{first}\n"
        );
        for u in uris {
            s.push_str(&format!("#EXTINF:2.000,\n{u}\n"));
        }
        s
    }

    #[test]
    fn a_first_sighting_lists_nothing_new() {
        let pl = playlist(10, &["a.ts", "b.ts", "c.ts"]);
        let l = newly_listed("/live/v/media.m3u8", pl.as_bytes(), None, 3).unwrap();
        assert_eq!(
            l,
            Listing {
                last: Some(12),
                new: vec![]
            }
        );
    }

    #[test]
    fn segments_after_the_last_seen_are_new_resolved_against_the_playlist() {
        let pl = playlist(10, &["a.ts", "/abs/b.ts", "c.ts?x=1", "http://other/d.ts"]);
        let l = newly_listed("/live/v/media.m3u8?_HLS_msn=1", pl.as_bytes(), Some(10), 8).unwrap();
        assert_eq!(l.last, Some(13));
        assert_eq!(l.new, vec!["/abs/b.ts", "/live/v/c.ts?x=1"]);
    }

    #[test]
    fn only_the_newest_max_are_kept() {
        let pl = playlist(0, &["0.ts", "1.ts", "2.ts", "3.ts", "4.ts"]);
        let l = newly_listed("/m.m3u8", pl.as_bytes(), Some(0), 2).unwrap();
        assert_eq!(l.new, vec!["/3.ts", "/4.ts"]);
    }

    #[test]
    fn numbering_that_went_backwards_or_stood_still_lists_nothing() {
        let pl = playlist(5, &["5.ts", "6.ts"]);
        for seen in [6, 7, 1000] {
            let l = newly_listed("/m.m3u8", pl.as_bytes(), Some(seen), 3).unwrap();
            assert_eq!(
                l,
                Listing {
                    last: Some(6),
                    new: vec![]
                }
            );
        }
    }

    #[test]
    fn a_multivariant_playlist_or_garbage_is_not_media() {
        let master = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1000\nv.m3u8\n";
        assert_eq!(
            newly_listed("/m.m3u8", master.as_bytes(), Some(1), 3),
            Err(ListingError::NotMedia)
        );
        assert_eq!(
            newly_listed("/m.m3u8", b"\x00\xff not a playlist", Some(1), 3),
            Err(ListingError::NotMedia)
        );
        let big = vec![b'#'; MAX_PLAYLIST_BYTES + 1];
        assert_eq!(
            newly_listed("/m.m3u8", &big, Some(1), 3),
            Err(ListingError::TooLarge)
        );
    }

    #[test]
    fn a_huge_media_sequence_saturates_instead_of_overflowing() {
        let pl = playlist(u64::MAX - 1, &["a.ts", "b.ts", "c.ts"]);
        let l = newly_listed("/m.m3u8", pl.as_bytes(), Some(u64::MAX - 1), 3).unwrap();
        assert_eq!(l.last, Some(u64::MAX));
    }

    proptest! {
        /// Whatever was seen, the new segments are exactly those numbered after it, at
        /// most `max`, and never on another host.
        #[test]
        fn new_is_the_tail_after_seen(first in 0u64..1000, n in 0usize..20, seen in 0u64..1100, max in 1usize..8) {
            let names: Vec<String> = (0..n).map(|i| format!("s{}.ts", first + i as u64)).collect();
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            let pl = playlist(first, &refs);
            let l = newly_listed("/live/m.m3u8", pl.as_bytes(), Some(seen), max).unwrap();
            let want: Vec<String> = (0..n as u64)
                .map(|i| first + i)
                .filter(|m| *m > seen)
                .map(|m| format!("/live/s{m}.ts"))
                .collect();
            let skip = want.len().saturating_sub(max);
            prop_assert_eq!(l.new, want[skip..].to_vec());
        }

        /// Arbitrary bytes never panic.
        #[test]
        fn any_bytes_are_answered(body in proptest::collection::vec(any::<u8>(), 0..512), seen in proptest::option::of(any::<u64>())) {
            let _ = newly_listed("/x/m.m3u8", &body, seen, 3);
        }
    }
}
