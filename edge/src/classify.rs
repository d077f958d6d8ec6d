//! What a request is for, from its path extension and (once known) the response Content-Type
//! — so the edge can front any HLS origin, not only ours.

use crate::key::CacheKey;

/// The kind of object a request is for; also a metrics label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A multivariant playlist: what a new viewer fetches first.
    Master,
    /// A media playlist, polled by viewers already watching.
    Playlist,
    /// An LL-HLS blocking playlist request (`_HLS_msn`): its answer never changes.
    BlockingPlaylist,
    /// A media segment or part.
    Segment,
    /// Anything else.
    Other,
}

impl Kind {
    /// The metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Master => "master",
            Kind::Playlist => "playlist",
            Kind::BlockingPlaylist => "blocking_playlist",
            Kind::Segment => "segment",
            Kind::Other => "other",
        }
    }

    /// Whether shedding this request would stall a viewer already watching.
    pub fn serves_current_viewers(self) -> bool {
        matches!(
            self,
            Kind::Playlist | Kind::BlockingPlaylist | Kind::Segment
        )
    }

    /// Classifies a request by its key. Multivariant playlists are recognised by name
    /// (`master`/`main`/`multivariant` in the file name) until the body says otherwise.
    pub fn of_request(key: &CacheKey) -> Kind {
        match Kind::of_path(key.path()) {
            Kind::Playlist if key.query_param("_HLS_msn").is_some() => Kind::BlockingPlaylist,
            k => k,
        }
    }

    /// Classifies a path by its file name alone (never [`Kind::BlockingPlaylist`], which
    /// depends on the query).
    pub fn of_path(path: &str) -> Kind {
        let file = path.rsplit('/').next().unwrap_or("");
        let ext = file.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
        match ext.as_deref() {
            Some("m3u8" | "m3u") => {
                if ["master", "main", "multivariant"]
                    .iter()
                    .any(|m| file.contains(m))
                {
                    Kind::Master
                } else {
                    Kind::Playlist
                }
            }
            Some(
                "ts" | "m4s" | "mp4" | "m4a" | "m4v" | "aac" | "ac3" | "ec3" | "mp3" | "vtt"
                | "webvtt" | "cmfv" | "cmfa" | "key",
            ) => Kind::Segment,
            _ => Kind::Other,
        }
    }

    /// Refines the request's kind with the response: a playlist by Content-Type, and a
    /// multivariant playlist by its body.
    pub fn refine(self, content_type: &str, body_start: &[u8]) -> Kind {
        let ct = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let playlist = matches!(
            ct.as_str(),
            "application/vnd.apple.mpegurl" | "application/x-mpegurl" | "audio/mpegurl"
        ) || matches!(self, Kind::Master | Kind::Playlist | Kind::BlockingPlaylist);
        if !playlist {
            if matches!(
                ct.as_str(),
                "video/mp2t" | "video/mp4" | "audio/mp4" | "video/iso.segment" | "audio/aac"
            ) {
                return Kind::Segment;
            }
            return self;
        }
        if self == Kind::BlockingPlaylist {
            return self;
        }
        if body_start.windows(18).any(|w| w == b"#EXT-X-STREAM-INF:") {
            Kind::Master
        } else {
            Kind::Playlist
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::normalize;

    fn kind(t: &str) -> Kind {
        Kind::of_request(&normalize(t, &["_HLS_msn".to_string()]).unwrap())
    }

    #[test]
    fn by_extension() {
        assert_eq!(kind("/live/demo/master.m3u8"), Kind::Master);
        assert_eq!(kind("/live/demo/360p/index.m3u8"), Kind::Playlist);
        assert_eq!(
            kind("/live/demo/360p/index.m3u8?_HLS_msn=5"),
            Kind::BlockingPlaylist
        );
        assert_eq!(kind("/live/demo/360p/12.ts"), Kind::Segment);
        assert_eq!(kind("/v/seg-1.m4s"), Kind::Segment);
        assert_eq!(kind("/favicon.ico"), Kind::Other);
    }

    #[test]
    fn by_response() {
        assert_eq!(
            Kind::Other.refine(
                "application/vnd.apple.mpegurl",
                b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n"
            ),
            Kind::Master
        );
        assert_eq!(
            Kind::Master.refine("application/vnd.apple.mpegurl", b"#EXTM3U\n#EXTINF:2,\n"),
            Kind::Playlist
        );
        assert_eq!(Kind::Other.refine("video/mp2t", b""), Kind::Segment);
    }
}
