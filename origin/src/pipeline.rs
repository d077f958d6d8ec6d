//! One rendition's input path: bytes → demuxer → segmenter → store, with the accounting
//! (counters, rate-limited logs, pacing checks) every source shares.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::demux::{Demuxer, Event};
use crate::metrics::Metrics;
use crate::segmenter::{Output, SegmentError, Segmenter, SegmenterConfig};
use crate::store::Stream;
use crate::timeline::TICKS_PER_SECOND;

/// Why a push was cut off.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum FeedError {
    /// Media time runs ahead of the wall clock by more than allowed (send at real time).
    #[error("input runs {0:.1} s ahead of real time; send it at real-time pace (ffmpeg -re)")]
    TooFast(f64),
    /// A segment outgrew the byte limit.
    #[error("a segment exceeded {0} bytes; the input has no usable keyframes")]
    TooLarge(usize),
}

/// The input path of one rendition.
pub struct Pipeline {
    stream: Arc<Stream>,
    idx: usize,
    demux: Demuxer,
    seg: Segmenter,
    events: Vec<Event>,
    outs: Vec<Output>,
    metrics: Arc<Metrics>,
    max_lead: Option<Duration>,
    /// Media time and wall time at the first access unit of the current connection.
    pace_origin: Option<(i64, Instant)>,
    last_logged: HashMap<&'static str, Instant>,
}

const LOG_EVERY: Duration = Duration::from_secs(5);

impl Pipeline {
    /// The pipeline of rendition `idx` of `stream`. `max_lead` bounds how far ahead of real
    /// time the input may run (none for the loop source, which paces itself).
    pub fn new(
        stream: Arc<Stream>,
        idx: usize,
        cfg: SegmenterConfig,
        metrics: Arc<Metrics>,
        max_lead: Option<Duration>,
    ) -> Self {
        Self {
            stream,
            idx,
            demux: Demuxer::new(),
            seg: Segmenter::new(cfg),
            events: Vec::with_capacity(1024),
            outs: Vec::with_capacity(64),
            metrics,
            max_lead,
            pace_origin: None,
            last_logged: HashMap::new(),
        }
    }

    /// The stream this pipeline feeds.
    pub fn stream(&self) -> &Arc<Stream> {
        &self.stream
    }

    /// The rendition name.
    pub fn rendition(&self) -> &str {
        self.stream
            .renditions
            .get(self.idx)
            .map(|r| r.name.as_str())
            .unwrap_or("")
    }

    /// Starts a new input connection: the byte stream restarts, the timeline carries on.
    pub fn begin(&mut self) {
        self.demux = Demuxer::new();
        self.pace_origin = None;
    }

    /// Feeds input bytes.
    pub fn feed(&mut self, data: &[u8]) -> Result<(), FeedError> {
        self.metrics
            .input_bytes
            .with_label_values(&[&self.stream.name, self.rendition()])
            .inc_by(data.len() as u64);
        self.demux.push(data, &mut self.events);
        self.drain()
    }

    /// Ends the current connection; `clean` when the input ended on a boundary.
    pub fn end(&mut self, clean: bool) {
        self.demux.finish(&mut self.events);
        let _ = self.drain();
        self.seg.finish(clean, &mut self.outs);
        let _ = self.publish_outputs();
        self.pace_origin = None;
    }

    fn drain(&mut self) -> Result<(), FeedError> {
        let now = Instant::now();
        let mut result = Ok(());
        let events = std::mem::take(&mut self.events);
        for ev in events {
            self.seg.handle(ev, now, &mut self.outs);
            // Publish the moment a segment closes, not after the rest of the chunk.
            if !self.outs.is_empty() {
                let r = self.publish_outputs();
                if result.is_ok() {
                    result = r;
                }
            }
        }
        if let (Some(max), Some(t)) = (self.max_lead, self.seg.media_time()) {
            let (t0, w0) = *self.pace_origin.get_or_insert((t, now));
            let lead =
                (t - t0) as f64 / TICKS_PER_SECOND as f64 - now.duration_since(w0).as_secs_f64();
            if lead > max.as_secs_f64() {
                return Err(FeedError::TooFast(lead));
            }
        }
        result
    }

    fn publish_outputs(&mut self) -> Result<(), FeedError> {
        let mut result = Ok(());
        let mut outs = std::mem::take(&mut self.outs);
        for o in outs.drain(..) {
            match o {
                Output::Segment(s) => {
                    if let Err(e) = self.stream.publish(self.idx, s) {
                        tracing::error!(stream = %self.stream.name, rendition = %self.rendition(), error = %e, "segment not published");
                    }
                }
                Output::Sps(s) => self.stream.set_info(self.idx, Some(s), None),
                Output::Audio(a) => self.stream.set_info(self.idx, None, Some(a)),
                Output::Error(e) => {
                    if let SegmentError::TooLarge(n) = e {
                        result = Err(FeedError::TooLarge(n));
                    }
                    self.report(e);
                }
            }
        }
        self.outs = outs; // keep the allocation
        result
    }

    fn report(&mut self, e: SegmentError) {
        let kind = e.kind();
        self.metrics
            .input_errors
            .with_label_values(&[&self.stream.name, self.rendition(), kind])
            .inc();
        let now = Instant::now();
        let due = self
            .last_logged
            .get(kind)
            .is_none_or(|t| now.duration_since(*t) >= LOG_EVERY);
        if due {
            self.last_logged.insert(kind, now);
            tracing::warn!(stream = %self.stream.name, rendition = %self.rendition(), kind, error = %e, "bad input survived (logged at most every 5 s per kind; see origin_input_errors_total)");
        }
    }
}
