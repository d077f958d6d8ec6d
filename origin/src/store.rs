//! Published state of every stream: per-rendition windows, the rendered playlists (kept as
//! `Bytes` so serving one is a reference-count bump), and PROGRAM-DATE-TIME anchoring.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::watch;

use crate::demux::AudioCodec;
use crate::h264::Sps;
use crate::metrics::Metrics;
use crate::segmenter::{ClosedSegment, target_duration_secs};
use crate::timeline::TICKS_PER_SECOND;
use crate::window::{Segment, Window, WindowError};

/// A body with its strong ETag.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// The text.
    pub body: Bytes,
    /// Strong ETag of the body.
    pub etag: String,
}

impl Rendered {
    fn new(text: String) -> Self {
        let etag = etag_of(text.as_bytes());
        Self {
            body: Bytes::from(text),
            etag,
        }
    }
}

/// A strong ETag from content, so origins publishing the same bytes agree.
pub fn etag_of(data: &[u8]) -> String {
    format!("\"{:016x}\"", xxhash_rust::xxh3::xxh3_64(data))
}

/// What is known of a rendition's media.
#[derive(Debug, Clone, Default)]
pub struct MediaInfo {
    /// The video SPS.
    pub sps: Option<Sps>,
    /// The audio codec, if any.
    pub audio: Option<AudioCodec>,
}

/// Mutable state of one rendition.
#[derive(Debug)]
pub struct RenditionState {
    /// The sliding window.
    pub window: Window,
    /// Codec facts for the master playlist.
    pub info: MediaInfo,
    /// The rendered media playlist (none before the first segment).
    pub playlist: Option<Rendered>,
    /// EXT-X-ENDLIST has been written.
    pub endlist: bool,
}

/// One rendition of a stream.
#[derive(Debug)]
pub struct Rendition {
    /// Name in URLs.
    pub name: String,
    /// Its state.
    pub state: RwLock<RenditionState>,
    /// The newest published segment number (waiters use it).
    pub newest: watch::Sender<Option<u64>>,
}

/// One stream: a ladder of renditions sharing segment timing.
#[derive(Debug)]
pub struct Stream {
    /// Name in URLs.
    pub name: String,
    /// Target segment duration, ticks.
    pub target: i64,
    /// EXT-X-TARGETDURATION.
    pub target_duration: u64,
    /// Renditions in config order.
    pub renditions: Vec<Rendition>,
    /// The rendered master playlist (none before any segment).
    pub master: RwLock<Option<Rendered>>,
    metrics: Arc<Metrics>,
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

impl Stream {
    /// A stream called `name` with the renditions `names`, cut at `segment_duration`, listing
    /// `window` segments per playlist.
    pub fn new(
        name: &str,
        segment_duration: Duration,
        window: usize,
        names: &[String],
        metrics: Arc<Metrics>,
    ) -> Self {
        let target = (segment_duration.as_secs_f64() * TICKS_PER_SECOND as f64).round() as i64;
        Self {
            name: name.to_string(),
            target,
            target_duration: target_duration_secs(target),
            renditions: names
                .iter()
                .map(|n| Rendition {
                    name: n.clone(),
                    state: RwLock::new(RenditionState {
                        window: Window::new(window),
                        info: MediaInfo::default(),
                        playlist: None,
                        endlist: false,
                    }),
                    newest: watch::channel(None).0,
                })
                .collect(),
            master: RwLock::new(None),
            metrics,
        }
    }

    /// The name of rendition `idx` ("" for an index out of range).
    pub fn rendition_name(&self, idx: usize) -> &str {
        self.renditions
            .get(idx)
            .map(|r| r.name.as_str())
            .unwrap_or("")
    }

    /// The rendition named `name`.
    pub fn rendition(&self, name: &str) -> Option<&Rendition> {
        self.renditions.iter().find(|r| r.name == name)
    }

    /// Every rendition lists a full window.
    pub fn is_ready(&self) -> bool {
        self.renditions
            .iter()
            .all(|r| read(&r.state).window.is_full())
    }

    /// The media playlist of a rendition.
    pub fn playlist(&self, r: &Rendition) -> Option<Rendered> {
        read(&r.state).playlist.clone()
    }

    /// The master playlist.
    pub fn master(&self) -> Option<Rendered> {
        read(&self.master).clone()
    }

    /// A segment of a rendition, listed or recently retired.
    pub fn segment(&self, r: &Rendition, msn: u64) -> Option<Arc<Segment>> {
        read(&r.state).window.get(msn).cloned()
    }

    /// Whether `msn` is beyond the newest segment of `r` (not produced yet, rather than gone).
    pub fn is_future(&self, r: &Rendition, msn: u64) -> bool {
        read(&r.state).window.newest_msn().is_none_or(|n| msn > n)
    }

    /// Records codec facts of rendition `idx`.
    pub fn set_info(&self, idx: usize, sps: Option<Sps>, audio: Option<Option<AudioCodec>>) {
        let Some(r) = self.renditions.get(idx) else {
            return;
        };
        {
            let mut st = write(&r.state);
            if let Some(s) = sps {
                st.info.sps = Some(s);
            }
            if let Some(a) = audio {
                st.info.audio = a;
            }
        }
        self.render_master();
    }

    /// Publishes a closed segment of rendition `idx`; returns it as stored.
    pub fn publish(&self, idx: usize, seg: ClosedSegment) -> Result<Arc<Segment>, WindowError> {
        let Some(r) = self.renditions.get(idx) else {
            return Err(WindowError::NotIncreasing {
                msn: seg.msn,
                newest: u64::MAX,
            });
        };
        // Media time is on the Unix epoch timeline for every source (the loop's by
        // construction, live input's anchored to its arrival), so it is the date.
        let pdt_ms = seg.start.div_euclid(90);
        let stored = Arc::new(Segment {
            msn: seg.msn,
            duration: seg.duration,
            pdt_ms,
            discontinuity: seg.discontinuity,
            etag: etag_of(&seg.data),
            data: seg.data,
            frames: seg.frames,
            published_unix: (hls::date::now_unix_ms() / 1000) as u64,
        });
        let labels = [self.name.as_str(), r.name.as_str()];
        {
            let mut st = write(&r.state);
            st.window.push(stored.clone(), Instant::now())?;
            st.endlist = false;
            st.playlist = Some(self.render_media(&st));
            self.metrics
                .window_segments
                .with_label_values(&labels)
                .set(st.window.listed().len() as i64);
            self.metrics
                .store_bytes
                .with_label_values(&labels)
                .set(st.window.bytes() as i64);
        }
        self.render_master();
        r.newest.send_replace(Some(stored.msn));
        self.metrics
            .publish_delay
            .with_label_values(&[&self.name])
            .observe(seg.completed_at.elapsed().as_secs_f64());
        self.metrics
            .segments_published
            .with_label_values(&labels)
            .inc();
        if stored.discontinuity {
            self.metrics
                .discontinuities
                .with_label_values(&labels)
                .inc();
        }
        Ok(stored)
    }

    /// Appends EXT-X-ENDLIST to rendition `idx` (its input ended for good).
    pub fn end(&self, idx: usize) {
        let Some(r) = self.renditions.get(idx) else {
            return;
        };
        let mut st = write(&r.state);
        if st.window.newest_msn().is_some() && !st.endlist {
            st.endlist = true;
            st.playlist = Some(self.render_media(&st));
            tracing::info!(stream = %self.name, rendition = %r.name, "input ended; EXT-X-ENDLIST written");
        }
    }

    /// Whether rendition `idx` has ended.
    pub fn has_ended(&self, idx: usize) -> bool {
        self.renditions
            .get(idx)
            .is_some_and(|r| read(&r.state).endlist)
    }

    fn render_media(&self, st: &RenditionState) -> Rendered {
        let pl = hls::MediaPlaylist {
            version: 3,
            target_duration: self.target_duration,
            media_sequence: st.window.media_sequence(),
            discontinuity_sequence: st.window.discontinuity_sequence(),
            independent_segments: true,
            segments: st
                .window
                .listed()
                .map(|s| hls::MediaSegment {
                    uri: format!("{}.ts", s.msn),
                    duration: s.duration_secs(),
                    program_date_time_ms: Some(s.pdt_ms),
                    discontinuity: s.discontinuity,
                })
                .collect(),
            endlist: st.endlist,
        };
        Rendered::new(pl.write())
    }

    fn render_master(&self) {
        let mut variants = Vec::new();
        for r in &self.renditions {
            let st = read(&r.state);
            let segs: Vec<_> = st.window.listed().collect();
            if segs.is_empty() {
                continue;
            }
            let secs: f64 = segs.iter().map(|s| s.duration_secs()).sum();
            let bytes: usize = segs.iter().map(|s| s.data.len()).sum();
            let frames: u32 = segs.iter().map(|s| s.frames).sum();
            let peak = segs
                .iter()
                .map(|s| s.data.len() as f64 * 8.0 / s.duration_secs().max(0.001))
                .fold(0.0, f64::max);
            let mut codecs = Vec::new();
            if let Some(s) = st.info.sps {
                codecs.push(s.codec_string());
            }
            if let Some(a) = st.info.audio {
                codecs.push(a.codec_string().to_string());
            }
            variants.push(m3u8_rs::VariantStream {
                uri: format!("{}/index.m3u8", r.name),
                bandwidth: peak.ceil() as u64,
                average_bandwidth: Some((bytes as f64 * 8.0 / secs.max(0.001)).ceil() as u64),
                codecs: (!codecs.is_empty()).then(|| codecs.join(",")),
                resolution: st.info.sps.map(|s| m3u8_rs::Resolution {
                    width: u64::from(s.width),
                    height: u64::from(s.height),
                }),
                frame_rate: (secs > 0.0)
                    .then(|| (f64::from(frames) / secs * 1000.0).round() / 1000.0),
                ..Default::default()
            });
        }
        if variants.is_empty() {
            return;
        }
        let master = m3u8_rs::MasterPlaylist {
            version: Some(3),
            variants,
            independent_segments: true,
            ..Default::default()
        };
        let mut buf = Vec::new();
        if master.write_to(&mut buf).is_ok() {
            let text = String::from_utf8_lossy(&buf).into_owned();
            *write(&self.master) = Some(Rendered::new(text));
        }
    }
}
