//! One rendition's input path: bytes → demuxer → segmenter → store, with the accounting
//! (counters, rate-limited logs, pacing checks) every source shares.

use std::sync::Arc;
use std::time::Duration;

use crate::demux::{Demuxer, Event};
use crate::metrics::Metrics;
use crate::segmenter::{Arrival, Output, SegmentError, Segmenter, SegmenterConfig};
use crate::store::Stream;

/// A segment outgrew the byte limit (this many bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLarge(pub usize);

/// The input path of one rendition.
pub struct Pipeline {
    stream: Arc<Stream>,
    idx: usize,
    demux: Demuxer,
    seg: Segmenter,
    events: Vec<Event>,
    outs: Vec<Output>,
    metrics: Arc<Metrics>,
    /// Bad input repeats per packet: one line per kind every 5 s.
    log_limit: service::telemetry::LogLimit,
}

impl Pipeline {
    /// The pipeline of rendition `idx` of `stream`.
    pub fn new(
        stream: Arc<Stream>,
        idx: usize,
        cfg: SegmenterConfig,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            stream,
            idx,
            demux: Demuxer::new(),
            seg: Segmenter::new(cfg),
            events: Vec::with_capacity(1024),
            outs: Vec::with_capacity(64),
            metrics,
            log_limit: service::telemetry::LogLimit::new(Duration::from_secs(5)),
        }
    }

    /// The rendition name.
    pub fn rendition(&self) -> &str {
        self.stream.rendition_name(self.idx)
    }

    /// Starts a new input connection: the byte stream restarts, the timeline carries on.
    pub fn begin(&mut self) {
        self.demux = Demuxer::new();
    }

    /// Media time (ticks) of the newest access unit.
    pub fn media_time(&self) -> Option<i64> {
        self.seg.media_time()
    }

    /// Feeds input bytes; a segment that outgrew the byte limit is an error (it was closed
    /// and the input skips to the next keyframe).
    pub fn feed(&mut self, data: &[u8], at: Arrival) -> Result<(), TooLarge> {
        self.metrics
            .input_bytes
            .with_label_values(&[&self.stream.name, self.rendition()])
            .inc_by(data.len() as u64);
        self.demux.push(data, &mut self.events);
        self.drain(at)
    }

    /// Ends the current connection; `clean` when the input ended on a boundary.
    pub fn end(&mut self, clean: bool) {
        self.demux.finish(&mut self.events);
        let _ = self.drain(Arrival::now());
        self.seg.finish(clean, &mut self.outs);
        let _ = self.publish_outputs();
    }

    fn drain(&mut self, at: Arrival) -> Result<(), TooLarge> {
        let mut result = Ok(());
        let events = std::mem::take(&mut self.events);
        for ev in events {
            self.seg.handle(ev, at, &mut self.outs);
            // Publish the moment a segment closes, not after the rest of the chunk.
            if !self.outs.is_empty() {
                let r = self.publish_outputs();
                if result.is_ok() {
                    result = r;
                }
            }
        }
        result
    }

    fn publish_outputs(&mut self) -> Result<(), TooLarge> {
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
                        result = Err(TooLarge(n));
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
        if let Some(suppressed) = self.log_limit.check(kind) {
            tracing::warn!(stream = %self.stream.name, rendition = %self.rendition(), kind, error = %e, suppressed, "bad input survived (logged at most every 5 s per kind; see origin_input_errors_total)");
        }
    }
}
