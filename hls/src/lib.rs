//! The HLS protocol as this stack speaks it (RFC 8216): the URL layout shared by origin and
//! edge, the media playlist model with its writer, and PROGRAM-DATE-TIME formatting.

pub mod date;
pub mod path;
pub mod playlist;

pub use path::{HlsPath, PathError};
pub use playlist::{MediaPlaylist, MediaSegment, ParseError};

/// Content-Type of playlists.
pub const PLAYLIST_CONTENT_TYPE: &str = "application/vnd.apple.mpegurl";
/// Content-Type of MPEG-TS segments.
pub const TS_CONTENT_TYPE: &str = "video/mp2t";
/// The Cache-Control field for CDNs only (RFC 9213): the origin puts the stale-serving
/// directives for live playlists there, so that edges may use them and browsers do not.
pub const CDN_CACHE_CONTROL: &str = "cdn-cache-control";
