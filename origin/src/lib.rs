//! Live HLS origin: MPEG-TS in (loop source, HTTP push, UDP), an aligned ABR ladder of HLS
//! segments and playlists out.

pub mod demux;
pub mod h264;
pub mod segmenter;
pub mod timeline;
pub mod ts;
pub mod tsmux;
