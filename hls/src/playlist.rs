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
    /// The media sequence number after the last segment listed (the next one to come).
    pub fn end_msn(&self) -> u64 {
        let n = u64::try_from(self.segments.len()).unwrap_or(u64::MAX);
        self.media_sequence.saturating_add(n)
    }

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

    #[test]
    fn end_msn_is_the_next_number_and_saturates() {
        let mut pl = MediaPlaylist::parse(
            "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:7\n#EXTINF:2.0,\n7.ts\n#EXTINF:2.0,\n8.ts\n",
        )
        .unwrap();
        assert_eq!(pl.end_msn(), 9);
        pl.media_sequence = u64::MAX;
        assert_eq!(pl.end_msn(), u64::MAX);
    }

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

/// Why a playlist could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The first line is not `#EXTM3U`.
    #[error("not a playlist: the first line must be #EXTM3U")]
    NotM3u,
    /// A multivariant playlist was given where a media playlist was expected.
    #[error("a multivariant playlist, not a media playlist")]
    Multivariant,
    /// A tag's value could not be read.
    #[error("line {line}: bad {tag}: {value:?}")]
    BadTag {
        /// 1-based line.
        line: usize,
        /// The tag.
        tag: &'static str,
        /// Its value, truncated.
        value: String,
    },
    /// A URI line without a preceding EXTINF.
    #[error("line {0}: segment URI without #EXTINF")]
    UriWithoutExtinf(usize),
    /// No EXT-X-TARGETDURATION.
    #[error("missing #EXT-X-TARGETDURATION")]
    NoTargetDuration,
}

fn bad(line: usize, tag: &'static str, value: &str) -> ParseError {
    ParseError::BadTag {
        line,
        tag,
        value: value.chars().take(60).collect(),
    }
}

impl MediaPlaylist {
    /// Parses a media playlist (what a player reads while it plays). Unknown tags are
    /// skipped, as RFC 8216 §4.1 asks of clients.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l.trim()));
        if lines.next().map(|(_, l)| l.trim_start_matches('\u{feff}')) != Some("#EXTM3U") {
            return Err(ParseError::NotM3u);
        }
        let mut pl = MediaPlaylist {
            version: 1,
            ..Default::default()
        };
        let mut target = None;
        let mut pending_duration: Option<f64> = None;
        let mut pending_pdt: Option<i64> = None;
        let mut pending_disc = false;
        for (n, line) in lines {
            if line.is_empty() {
                continue;
            }
            if let Some(tag) = line.strip_prefix('#') {
                let (name, value) = tag.split_once(':').unwrap_or((tag, ""));
                match name {
                    "EXT-X-STREAM-INF" | "EXT-X-I-FRAME-STREAM-INF" => {
                        return Err(ParseError::Multivariant);
                    }
                    "EXT-X-VERSION" => {
                        pl.version = value.parse().map_err(|_| bad(n, "EXT-X-VERSION", value))?
                    }
                    "EXT-X-TARGETDURATION" => {
                        target = Some(
                            value
                                .parse()
                                .map_err(|_| bad(n, "EXT-X-TARGETDURATION", value))?,
                        )
                    }
                    "EXT-X-MEDIA-SEQUENCE" => {
                        pl.media_sequence = value
                            .parse()
                            .map_err(|_| bad(n, "EXT-X-MEDIA-SEQUENCE", value))?
                    }
                    "EXT-X-DISCONTINUITY-SEQUENCE" => {
                        pl.discontinuity_sequence = value
                            .parse()
                            .map_err(|_| bad(n, "EXT-X-DISCONTINUITY-SEQUENCE", value))?
                    }
                    "EXT-X-INDEPENDENT-SEGMENTS" => pl.independent_segments = true,
                    "EXT-X-ENDLIST" => pl.endlist = true,
                    "EXT-X-DISCONTINUITY" => pending_disc = true,
                    "EXT-X-PROGRAM-DATE-TIME" => {
                        pending_pdt = Some(
                            crate::date::parse_unix_ms(value)
                                .ok_or_else(|| bad(n, "EXT-X-PROGRAM-DATE-TIME", value))?,
                        )
                    }
                    "EXTINF" => {
                        let d = value.split(',').next().unwrap_or("");
                        let d: f64 = d.trim().parse().map_err(|_| bad(n, "EXTINF", value))?;
                        if !(d.is_finite() && d >= 0.0) {
                            return Err(bad(n, "EXTINF", value));
                        }
                        pending_duration = Some(d);
                    }
                    _ => {}
                }
                continue;
            }
            let duration = pending_duration
                .take()
                .ok_or(ParseError::UriWithoutExtinf(n))?;
            pl.segments.push(MediaSegment {
                uri: line.to_string(),
                duration,
                program_date_time_ms: pending_pdt.take(),
                discontinuity: std::mem::take(&mut pending_disc),
            });
        }
        pl.target_duration = target.ok_or(ParseError::NoTargetDuration)?;
        Ok(pl)
    }
}

#[cfg(test)]
mod parse_tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_what_origins_write() {
        let text = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:7\n#EXT-X-DISCONTINUITY-SEQUENCE:1\n#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-PROGRAM-DATE-TIME:2026-11-23T16:57:30.000Z\n#EXTINF:2.000,\n7.ts\n#EXT-X-UNKNOWN-TAG:x\n#EXT-X-DISCONTINUITY\n#EXTINF:1.5,title\nhttp://cdn/8.ts\n#EXT-X-ENDLIST\n";
        let pl = MediaPlaylist::parse(text).unwrap();
        assert_eq!(
            (
                pl.target_duration,
                pl.media_sequence,
                pl.discontinuity_sequence
            ),
            (2, 7, 1)
        );
        assert!(pl.independent_segments && pl.endlist);
        assert_eq!(pl.segments.len(), 2);
        assert_eq!(pl.segments[0].program_date_time_ms, Some(1_795_453_050_000));
        assert!(pl.segments[1].discontinuity && pl.segments[1].program_date_time_ms.is_none());
        assert_eq!(pl.segments[1].uri, "http://cdn/8.ts");
    }

    #[test]
    fn refuses_what_is_not_a_media_playlist() {
        assert_eq!(MediaPlaylist::parse("hello"), Err(ParseError::NotM3u));
        assert_eq!(
            MediaPlaylist::parse("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\na.m3u8\n"),
            Err(ParseError::Multivariant)
        );
        assert_eq!(
            MediaPlaylist::parse("#EXTM3U\n#EXT-X-TARGETDURATION:2\nx.ts\n"),
            Err(ParseError::UriWithoutExtinf(3))
        );
        assert!(matches!(
            MediaPlaylist::parse("#EXTM3U\n#EXT-X-TARGETDURATION:two\n"),
            Err(ParseError::BadTag { line: 2, .. })
        ));
        assert_eq!(
            MediaPlaylist::parse("#EXTM3U\n"),
            Err(ParseError::NoTargetDuration)
        );
    }

    proptest! {
        #[test]
        fn write_then_parse_round_trips(
            td in 1u64..30, msn in 0u64..u32::MAX as u64, dseq in 0u64..1000, endlist in any::<bool>(),
            segs in proptest::collection::vec((1u32..30_000, any::<bool>(), any::<bool>()), 0..10),
        ) {
            let mut pdt = 1_700_000_000_000i64;
            let pl = MediaPlaylist {
                version: 3, target_duration: td, media_sequence: msn, discontinuity_sequence: dseq,
                independent_segments: true, endlist,
                segments: segs.iter().enumerate().map(|(i, (ms, disc, has_pdt))| {
                    pdt += i64::from(*ms);
                    MediaSegment { uri: format!("{}.ts", msn + i as u64), duration: f64::from(*ms) / 1000.0, program_date_time_ms: has_pdt.then_some(pdt), discontinuity: *disc }
                }).collect(),
            };
            prop_assert_eq!(MediaPlaylist::parse(&pl.write()).unwrap(), pl);
        }

        #[test]
        fn never_panics(text in "#EXTM3U\n(#EXT[A-Z-]{0,20}(:[ -~]{0,20})?\n|[a-z0-9./]{0,10}\n){0,12}") {
            let _ = MediaPlaylist::parse(&text);
        }
    }
}
