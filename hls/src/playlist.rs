//! Media playlist model and writer (RFC 8216 §4.3.3, §4.3.2).
//!
//! Written by hand rather than with m3u8-rs because LL-HLS tags (parts, preload hints,
//! rendition reports) must be emitted where m3u8-rs cannot put them; tests cross-check the
//! non-LL output by parsing it back with m3u8-rs.

use std::fmt::Write as _;

use crate::date::format_unix_ms;

/// One media segment as listed in a playlist.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaSegment {
    /// URI relative to the playlist.
    pub uri: String,
    /// Duration in seconds (EXTINF).
    pub duration: f64,
    /// EXT-X-PROGRAM-DATE-TIME of the first sample, Unix milliseconds.
    pub program_date_time_ms: Option<i64>,
    /// An EXT-X-DISCONTINUITY precedes this segment.
    pub discontinuity: bool,
}

/// A media playlist.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MediaPlaylist {
    /// EXT-X-VERSION.
    pub version: u8,
    /// EXT-X-TARGETDURATION in whole seconds.
    pub target_duration: u64,
    /// EXT-X-MEDIA-SEQUENCE: the number of the first listed segment.
    pub media_sequence: u64,
    /// EXT-X-DISCONTINUITY-SEQUENCE.
    pub discontinuity_sequence: u64,
    /// EXT-X-INDEPENDENT-SEGMENTS: every segment starts with a keyframe.
    pub independent_segments: bool,
    /// The segments, oldest first.
    pub segments: Vec<MediaSegment>,
    /// EXT-X-ENDLIST: no more segments will be added.
    pub endlist: bool,
}

impl MediaPlaylist {
    /// Renders the playlist text.
    pub fn write(&self) -> String {
        let mut s = String::with_capacity(128 + self.segments.len() * 96);
        // Writing to a String cannot fail.
        let _ = self.write_into(&mut s);
        s
    }

    fn write_into(&self, s: &mut String) -> std::fmt::Result {
        writeln!(s, "#EXTM3U")?;
        writeln!(s, "#EXT-X-VERSION:{}", self.version.max(3))?;
        writeln!(s, "#EXT-X-TARGETDURATION:{}", self.target_duration)?;
        writeln!(s, "#EXT-X-MEDIA-SEQUENCE:{}", self.media_sequence)?;
        writeln!(
            s,
            "#EXT-X-DISCONTINUITY-SEQUENCE:{}",
            self.discontinuity_sequence
        )?;
        if self.independent_segments {
            writeln!(s, "#EXT-X-INDEPENDENT-SEGMENTS")?;
        }
        for seg in &self.segments {
            if seg.discontinuity {
                writeln!(s, "#EXT-X-DISCONTINUITY")?;
            }
            // PDT on the first segment and after every discontinuity is what RFC 8216 needs;
            // we write it on every segment so clients joining anywhere can map time exactly.
            if let Some(pdt) = seg.program_date_time_ms {
                writeln!(s, "#EXT-X-PROGRAM-DATE-TIME:{}", format_unix_ms(pdt))?;
            }
            writeln!(s, "#EXTINF:{:.3},", seg.duration)?;
            writeln!(s, "{}", seg.uri)?;
        }
        if self.endlist {
            writeln!(s, "#EXT-X-ENDLIST")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_playlist() -> impl Strategy<Value = MediaPlaylist> {
        (
            1u64..30,
            0u64..1_000_000_000,
            0u64..1000,
            any::<bool>(),
            proptest::collection::vec((100u32..30_000, any::<bool>()), 0..12),
            0i64..4_000_000_000_000,
        )
            .prop_map(|(td, msn, dseq, endlist, segs, pdt0)| {
                let mut pdt = pdt0;
                MediaPlaylist {
                    version: 3,
                    target_duration: td,
                    media_sequence: msn,
                    discontinuity_sequence: dseq,
                    independent_segments: true,
                    segments: segs
                        .into_iter()
                        .enumerate()
                        .map(|(i, (ms, disc))| {
                            let s = MediaSegment {
                                uri: format!("{}.ts", msn + i as u64),
                                duration: f64::from(ms) / 1000.0,
                                program_date_time_ms: Some(pdt),
                                discontinuity: disc,
                            };
                            pdt += i64::from(ms);
                            s
                        })
                        .collect(),
                    endlist,
                }
            })
    }

    proptest! {
        // Cross-check with an independent parser: m3u8-rs reads back what we wrote.
        #[test]
        fn m3u8_rs_reads_our_output(pl in arb_playlist()) {
            let text = pl.write();
            let parsed = m3u8_rs::parse_media_playlist_res(text.as_bytes());
            let parsed = parsed.map_err(|e| TestCaseError::fail(format!("{e:?}\n{text}")))?;
            prop_assert_eq!(parsed.target_duration, pl.target_duration);
            prop_assert_eq!(parsed.media_sequence, pl.media_sequence);
            prop_assert_eq!(parsed.discontinuity_sequence, pl.discontinuity_sequence);
            prop_assert_eq!(parsed.end_list, pl.endlist);
            prop_assert_eq!(parsed.segments.len(), pl.segments.len());
            for (a, b) in parsed.segments.iter().zip(&pl.segments) {
                prop_assert_eq!(&a.uri, &b.uri);
                prop_assert!((f64::from(a.duration) - b.duration).abs() < 0.001);
                prop_assert_eq!(a.discontinuity, b.discontinuity);
                prop_assert!(a.program_date_time.is_some());
            }
        }
    }
}
