//! Cuts one rendition's demuxed packets into HLS segments.
//!
//! A segment starts at an IDR access unit and ends before the first IDR at least one target
//! duration later; durations come from PTS. The first segment's number is
//! `floor(media_time / target)` and later ones count up by one, so encoders with GOPs aligned
//! to the target produce the same numbers on every origin, and renditions of one ladder stay
//! aligned. Each segment opens with copies of the latest PAT and PMT so it decodes on its own.

use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use crate::anchor::Anchors;
use crate::demux::{AudioCodec, Event, InputError, PacketKind};
use crate::h264::Sps;
use crate::timeline::{Mapped, TICKS_PER_SECOND, Timeline, epoch_ticks};
use crate::ts::PACKET_SIZE;

/// How a rendition is cut.
#[derive(Debug, Clone)]
pub struct SegmenterConfig {
    /// Target segment duration in ticks.
    pub target: i64,
    /// Longest segment allowed, in ticks (exclusive): EXTINF must round to at most
    /// TARGETDURATION, so this is `TARGETDURATION + 0.5 s`.
    pub max_duration: i64,
    /// Largest segment allowed, in bytes.
    pub max_bytes: usize,
    /// How media time is placed on the 64-bit timeline.
    pub timing: Timing,
}

/// How a rendition's PTS become media time.
#[derive(Debug, Clone, Default)]
pub enum Timing {
    /// The first PTS as is (tests, fuzzing, benchmarks).
    #[default]
    Pts,
    /// The PTS count ticks since the Unix epoch modulo 2^33 (the loop source); the first one
    /// lands on the wrap nearest this media time (now, at start-up).
    Epoch(i64),
    /// Live input: media time is the wall clock at the first access unit's arrival, and is
    /// re-anchored to the arrival (forward only) at every discontinuity, through the stream's
    /// shared anchors so all renditions agree.
    Arrival(Arc<Anchors>),
}

/// When input arrived: a monotonic instant and the wall clock, in 90 kHz ticks since the Unix
/// epoch (injected, so the timing rules are testable without a clock).
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    /// The monotonic instant.
    pub at: Instant,
    /// The wall clock at that instant, ticks since the Unix epoch.
    pub wall: i64,
}

impl Arrival {
    /// Now.
    pub fn now() -> Self {
        Instant::now().into()
    }
}

impl From<Instant> for Arrival {
    /// The arrival at `at`, with the wall clock of that instant.
    fn from(at: Instant) -> Self {
        let ago = Instant::now().saturating_duration_since(at);
        let ago = (ago.as_secs_f64() * TICKS_PER_SECOND as f64) as i64;
        Self {
            at,
            wall: epoch_ticks().saturating_sub(ago),
        }
    }
}

impl SegmenterConfig {
    /// A config for `target` ticks with TARGETDURATION = ceil(target).
    pub fn for_target(target: i64, max_bytes: usize) -> Self {
        let td = target_duration_secs(target);
        Self {
            target,
            max_duration: td as i64 * TICKS_PER_SECOND + TICKS_PER_SECOND / 2,
            max_bytes,
            timing: Timing::Pts,
        }
    }
}

/// EXT-X-TARGETDURATION for a target of `target` ticks: whole seconds, rounded up.
pub fn target_duration_secs(target: i64) -> u64 {
    (target.max(1) as u64).div_ceil(TICKS_PER_SECOND as u64)
}

/// A finished segment, ready to publish.
#[derive(Debug, Clone)]
pub struct ClosedSegment {
    /// Media sequence number.
    pub msn: u64,
    /// Media time of its first frame, in ticks.
    pub start: i64,
    /// Duration in ticks.
    pub duration: i64,
    /// A discontinuity precedes it.
    pub discontinuity: bool,
    /// The MPEG-TS bytes.
    pub data: Bytes,
    /// Video frames in it.
    pub frames: u32,
    /// Arrival of the input that completed it: its last packet, or the next keyframe that
    /// showed it had ended.
    pub completed_at: Instant,
}

/// Problems the segmenter works around (each a counter and a log line upstream).
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum SegmentError {
    /// The demuxer reported bad input.
    #[error(transparent)]
    Input(#[from] InputError),
    /// No IDR arrived within the longest allowed segment; the segment was closed and the
    /// input is skipped until the next IDR.
    #[error("no IDR within {0:.1} s; skipping to the next keyframe")]
    MissingIdr(f64),
    /// A segment grew past the byte limit; closed, skipping to the next IDR.
    #[error("segment exceeded {0} bytes; skipping to the next keyframe")]
    TooLarge(usize),
    /// Timestamps jumped by this many seconds; a discontinuity follows.
    #[error("timestamps jumped by {0:.3} s; discontinuity")]
    TimestampJump(f64),
}

impl SegmentError {
    /// Stable label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            SegmentError::Input(e) => e.kind(),
            SegmentError::MissingIdr(_) => "missing_idr",
            SegmentError::TooLarge(_) => "segment_too_large",
            SegmentError::TimestampJump(_) => "timestamp_jump",
        }
    }
}

/// What the segmenter produced.
#[derive(Debug, Clone)]
pub enum Output {
    /// A segment is complete.
    Segment(ClosedSegment),
    /// The input had a problem.
    Error(SegmentError),
    /// The video's SPS (for CODECS and RESOLUTION).
    Sps(Sps),
    /// The program's audio codec.
    Audio(Option<AudioCodec>),
}

struct Open {
    msn: u64,
    start: i64,
    discontinuity: bool,
    data: BytesMut,
    frames: u32,
    /// Latest presentation end of any access unit so far.
    max_end: i64,
    /// Byte offset where the newest access unit began, and `max_end` before it.
    last_au_at: usize,
    max_end_before_last: i64,
}

/// Segmenter for one rendition.
pub struct Segmenter {
    cfg: SegmenterConfig,
    timeline: Timeline,
    open: Option<Open>,
    next_msn: Option<u64>,
    discontinuity_pending: bool,
    /// End of the last media we accepted, where a rebased timeline continues.
    last_end: Option<i64>,
    last_dts: Option<i64>,
    frame_dur: i64,
    psi: [Option<Box<[u8; PACKET_SIZE]>>; 2],
    /// Arrival of the input being handled.
    now: Instant,
    /// Its wall clock, ticks since the Unix epoch.
    wall: i64,
    media_time: Option<i64>,
}

const DEFAULT_FRAME: i64 = TICKS_PER_SECOND / 30;

impl Segmenter {
    /// A segmenter that has seen nothing yet.
    pub fn new(cfg: SegmenterConfig) -> Self {
        let forward = (cfg.max_duration * 2).max(5 * TICKS_PER_SECOND);
        let hint = match cfg.timing {
            Timing::Epoch(t) => Some(t),
            Timing::Pts | Timing::Arrival(_) => None,
        };
        let timeline = Timeline::new(hint, forward, TICKS_PER_SECOND);
        Self {
            cfg,
            timeline,
            open: None,
            next_msn: None,
            discontinuity_pending: false,
            last_end: None,
            last_dts: None,
            frame_dur: DEFAULT_FRAME,
            psi: [None, None],
            now: Instant::now(),
            wall: 0,
            media_time: None,
        }
    }

    /// Media time (ticks) of the newest access unit, for pacing checks.
    pub fn media_time(&self) -> Option<i64> {
        self.media_time
    }

    /// Handles one demuxer event that arrived at `at` (an [`Arrival`] or an `Instant`).
    pub fn handle(&mut self, ev: Event, at: impl Into<Arrival>, out: &mut Vec<Output>) {
        let at = at.into();
        self.now = at.at;
        self.wall = at.wall;
        match ev {
            Event::Packet(pkt, kind) => self.packet(pkt, kind, out),
            Event::AccessUnit(au) => self.access_unit(au.pts, au.dts, au.keyframe, out),
            Event::Sps(s) => out.push(Output::Sps(s)),
            Event::Program { audio } => out.push(Output::Audio(audio)),
            Event::Error(e) => {
                if e == InputError::PidChange {
                    self.close_clean(out);
                    self.discontinuity_pending = true;
                }
                out.push(Output::Error(e.into()));
            }
        }
    }

    /// The input ended; `clean` when it ended on a boundary (end of file / body), not when the
    /// connection broke, in which case the last, possibly incomplete, access unit is dropped.
    pub fn finish(&mut self, clean: bool, out: &mut Vec<Output>) {
        self.now = Instant::now();
        if clean {
            self.close_clean(out);
        } else if let Some(mut open) = self.open.take() {
            if open.frames > 1 {
                open.data.truncate(open.last_au_at);
                open.frames -= 1;
                open.max_end = open.max_end_before_last;
                self.emit(open, out);
            }
            // A segment that was only its (broken) first frame is dropped.
            self.discontinuity_pending = true;
        }
    }

    fn packet(&mut self, pkt: Box<[u8; PACKET_SIZE]>, kind: PacketKind, out: &mut Vec<Output>) {
        let psi_slot = match kind {
            PacketKind::Pat => Some(0),
            PacketKind::Pmt => Some(1),
            _ => None,
        };
        if let Some(i) = psi_slot {
            // Kept verbatim: each segment opens with an exact copy (same continuity counter,
            // which MPEG-TS allows as a duplicate packet), so segment bytes depend only on the
            // input, never on when this origin started.
            self.psi[i] = Some(pkt.clone());
        }
        let Some(open) = &mut self.open else { return };
        if open.data.len() + PACKET_SIZE > self.cfg.max_bytes {
            out.push(Output::Error(SegmentError::TooLarge(self.cfg.max_bytes)));
            self.close_clean(out);
            self.discontinuity_pending = true;
            return;
        }
        open.data.extend_from_slice(&pkt[..]);
    }

    /// Where live input's `pts` lands, arriving now, never before `floor` (none for other
    /// timings: they keep their own timeline).
    fn place(&self, pts: u64, floor: Option<i64>) -> Option<i64> {
        match &self.cfg.timing {
            Timing::Arrival(anchors) => Some(anchors.place(pts, self.wall, floor)),
            Timing::Pts | Timing::Epoch(_) => None,
        }
    }

    fn access_unit(&mut self, pts: u64, dts: u64, keyframe: bool, out: &mut Vec<Output>) {
        if !self.timeline.is_placed()
            && let Some(t) = self.place(pts, None)
        {
            self.timeline.rebase(pts, t);
        }
        let mut t = match self.timeline.map(pts) {
            Mapped::Continuous(t) => t,
            Mapped::Jump { delta } => {
                out.push(Output::Error(SegmentError::TimestampJump(
                    delta as f64 / TICKS_PER_SECOND as f64,
                )));
                self.close_clean(out);
                let floor = self.last_end.unwrap_or(0);
                let t = self.place(pts, Some(floor)).unwrap_or(floor);
                self.timeline.rebase(pts, t);
                self.last_dts = None;
                self.discontinuity_pending = true;
                t
            }
        };
        // A discontinuity re-anchors live input to its arrival: after an outage, the first new
        // segment is stamped with the time it arrived, not where the old media ended.
        if keyframe
            && self.open.is_none()
            && self.discontinuity_pending
            && let Some(placed) = self.place(pts, Some(t))
            && placed > t
        {
            self.timeline.rebase(pts, placed);
            self.last_dts = None;
            t = placed;
        }
        if let Some(d) = self.timeline.peek(dts) {
            if let Some(prev) = self.last_dts {
                let step = d - prev;
                if step > 0 && step < TICKS_PER_SECOND {
                    self.frame_dur = step;
                }
            }
            self.last_dts = Some(d);
        }
        self.media_time = Some(t);
        let tol = self.frame_dur / 2;
        if keyframe {
            let cut = match &self.open {
                None => true,
                Some(o) => t - o.start >= self.cfg.target - tol,
            };
            if cut {
                let first_msn = || (t.max(0) / self.cfg.target.max(1)) as u64;
                let msn = match self.open.take() {
                    Some(mut o) => {
                        let msn = o.msn + 1;
                        o.max_end = t;
                        self.emit(o, out);
                        msn
                    }
                    None => self.next_msn.unwrap_or_else(first_msn),
                };
                self.start(msn, t);
                return;
            }
        }
        let frame_dur = self.frame_dur;
        let max_duration = self.cfg.max_duration;
        let Some(open) = &mut self.open else { return };
        if t + frame_dur - open.start >= max_duration {
            let waited = (t - open.start) as f64 / TICKS_PER_SECOND as f64;
            out.push(Output::Error(SegmentError::MissingIdr(waited)));
            self.close_clean(out);
            self.discontinuity_pending = true;
            return;
        }
        open.last_au_at = open.data.len();
        open.max_end_before_last = open.max_end;
        open.max_end = open.max_end.max(t + frame_dur);
        open.frames += 1;
    }

    fn start(&mut self, msn: u64, t: i64) {
        let mut data = BytesMut::with_capacity(256 * 1024);
        for p in self.psi.iter().flatten() {
            data.extend_from_slice(&p[..]);
        }
        let header = data.len();
        self.open = Some(Open {
            msn,
            start: t,
            discontinuity: std::mem::take(&mut self.discontinuity_pending),
            data,
            frames: 1,
            max_end: t + self.frame_dur,
            last_au_at: header,
            max_end_before_last: t,
        });
    }

    fn close_clean(&mut self, out: &mut Vec<Output>) {
        if let Some(o) = self.open.take() {
            self.emit(o, out);
        }
    }

    fn emit(&mut self, o: Open, out: &mut Vec<Output>) {
        let duration = (o.max_end - o.start).max(1);
        self.last_end = Some(o.start + duration);
        self.next_msn = Some(o.msn + 1);
        out.push(Output::Segment(ClosedSegment {
            msn: o.msn,
            start: o.start,
            duration,
            discontinuity: o.discontinuity,
            data: o.data.freeze(),
            frames: o.frames,
            completed_at: self.now,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anchor::Anchors;
    use crate::demux::Demuxer;
    use crate::ts;
    use crate::tsmux::{TsWriter, synthetic};
    use proptest::prelude::*;

    const FRAME: u64 = 3600; // 25 fps
    const T2: i64 = 2 * TICKS_PER_SECOND;

    fn run(data: &[u8], chunks: &[usize], clean: bool) -> (Vec<ClosedSegment>, Vec<SegmentError>) {
        let mut d = Demuxer::new();
        let mut s = Segmenter::new(SegmenterConfig::for_target(T2, 8 << 20));
        let (mut ev, mut out) = (Vec::new(), Vec::new());
        let mut rest = data;
        let mut i = 0;
        while !rest.is_empty() {
            let n = chunks
                .get(i % chunks.len().max(1))
                .copied()
                .unwrap_or(rest.len())
                .clamp(1, rest.len());
            d.push(&rest[..n], &mut ev);
            rest = &rest[n..];
            i += 1;
        }
        d.finish(&mut ev);
        for e in ev.drain(..) {
            s.handle(e, Instant::now(), &mut out);
        }
        s.finish(clean, &mut out);
        let mut segs = Vec::new();
        let mut errs = Vec::new();
        for o in out {
            match o {
                Output::Segment(seg) => segs.push(seg),
                Output::Error(e) => errs.push(e),
                _ => {}
            }
        }
        (segs, errs)
    }

    fn summary(segs: &[ClosedSegment]) -> Vec<(u64, i64, i64, bool)> {
        segs.iter()
            .map(|s| (s.msn, s.start, s.duration, s.discontinuity))
            .collect()
    }

    #[test]
    fn cuts_aligned_gops_with_time_derived_numbers() {
        let data = synthetic(10 * T2 as u64, 5, 50, FRAME, 500);
        let (segs, errs) = run(&data, &[], true);
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(
            summary(&segs),
            (0..5)
                .map(|i| (10 + i as u64, (10 + i) * T2, T2, false))
                .collect::<Vec<_>>()
        );
        for s in &segs {
            assert_eq!(s.data[0], 0x47);
            assert_eq!(s.data.len() % PACKET_SIZE, 0);
            // Every segment starts with PAT then PMT.
            assert_eq!(ts::Packet(s.data[..188].try_into().unwrap()).pid(), 0);
            assert_eq!(s.frames, 50);
        }
    }

    #[test]
    fn survives_the_33_bit_wrap_without_discontinuity() {
        let start = ts::PTS_MOD - 3 * T2 as u64;
        let data = synthetic(start, 6, 50, FRAME, 300);
        let (segs, errs) = run(&data, &[1000], true);
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(segs.len(), 6);
        assert!(segs.iter().all(|s| s.duration == T2 && !s.discontinuity));
        assert!(segs.windows(2).all(|w| w[1].msn == w[0].msn + 1));
    }

    #[test]
    fn timestamp_jump_makes_a_discontinuity_and_numbers_continue() {
        let mut data = synthetic(100 * T2 as u64, 3, 50, FRAME, 300);
        data.extend(synthetic(7 * T2 as u64, 3, 50, FRAME, 300)); // encoder restart
        let (segs, errs) = run(&data, &[4096], true);
        assert!(
            errs.iter()
                .any(|e| matches!(e, SegmentError::TimestampJump(_))),
            "{errs:?}"
        );
        assert_eq!(
            segs.iter().map(|s| s.msn).collect::<Vec<_>>(),
            (100..106).collect::<Vec<_>>()
        );
        assert_eq!(segs.iter().filter(|s| s.discontinuity).count(), 1);
        assert!(segs[3].discontinuity);
        assert!(
            segs.windows(2)
                .all(|w| w[1].start >= w[0].start + w[0].duration)
        );
    }

    #[test]
    fn missing_idr_is_bounded_by_target_duration() {
        // A 10 s GOP against a 2 s target: segments stay under TARGETDURATION + 0.5 s.
        let data = synthetic(0, 2, 250, FRAME, 200);
        let (segs, errs) = run(&data, &[], true);
        assert!(
            errs.iter()
                .any(|e| matches!(e, SegmentError::MissingIdr(_)))
        );
        assert!(
            segs.iter()
                .all(|s| s.duration < SegmenterConfig::for_target(T2, 1).max_duration)
        );
        assert!(segs[1].discontinuity);
    }

    #[test]
    fn garbage_and_truncation_are_survived() {
        let good = synthetic(0, 4, 50, FRAME, 500);
        let mut data = good[..188 * 300].to_vec();
        data.extend_from_slice(b"garbage bytes that are not transport packets at all");
        data.extend_from_slice(&good[188 * 300 + 100..188 * 600]); // a truncated packet
        data.extend_from_slice(&good[188 * 600..]);
        let (segs, errs) = run(&data, &[777], true);
        assert!(
            errs.iter()
                .any(|e| matches!(e, SegmentError::Input(InputError::SyncLost(_))))
        );
        assert!(segs.len() >= 3, "{}", segs.len());
    }

    #[test]
    fn no_psi_means_nothing_but_an_error() {
        let data = synthetic(0, 2, 50, FRAME, 500);
        // Strip every PAT/PMT packet.
        let stripped: Vec<u8> = data
            .chunks(188)
            .filter(|p| {
                !matches!(
                    ts::Packet((*p).try_into().unwrap()).pid(),
                    0 | crate::tsmux::PMT_PID
                )
            })
            .flatten()
            .copied()
            .collect();
        let (segs, errs) = run(&stripped, &[], true);
        assert!(segs.is_empty());
        assert_eq!(errs, vec![SegmentError::Input(InputError::NoProgram)]);
    }

    #[test]
    fn pid_change_is_a_discontinuity() {
        let mut w = TsWriter::new();
        let mut data = Vec::new();
        for (i, pid) in [(0u64, 0x100u16), (1, 0x100), (2, 0x200), (3, 0x200)] {
            w.video_pid = pid;
            w.psi(&mut data);
            for f in 0..50 {
                let pts = (i * 50 + f) * FRAME;
                w.video_au(&mut data, pts, pts, f == 0, 400);
            }
        }
        let (segs, errs) = run(&data, &[], true);
        assert!(errs.contains(&SegmentError::Input(InputError::PidChange)));
        assert_eq!(segs.len(), 4);
        assert!(segs[2].discontinuity);
    }

    #[test]
    fn abrupt_end_drops_the_partial_access_unit() {
        let data = synthetic(0, 2, 50, FRAME, 2000);
        let cut = data.len() - 188 * 3; // mid-way through the last frame
        let (segs, _) = run(&data[..cut], &[], false);
        let last = segs.last().unwrap();
        assert_eq!(last.frames, 49);
        assert_eq!(last.duration, 49 * FRAME as i64);
    }

    /// Feeds `data` to a live (arrival-timed) segmenter as if it all arrived at wall-clock
    /// tick `wall`.
    fn feed_at(s: &mut Segmenter, data: &[u8], wall: i64, out: &mut Vec<Output>) {
        let mut d = Demuxer::new();
        let mut ev = Vec::new();
        d.push(data, &mut ev);
        d.finish(&mut ev);
        let at = Arrival {
            at: Instant::now(),
            wall,
        };
        for e in ev.drain(..) {
            s.handle(e, at, out);
        }
    }

    fn segments(out: &[Output]) -> Vec<(u64, i64, bool)> {
        out.iter()
            .filter_map(|o| match o {
                Output::Segment(s) => Some((s.msn, s.start, s.discontinuity)),
                _ => None,
            })
            .collect()
    }

    /// Item 8: live media time is the wall clock of the input's arrival, and after an outage
    /// (the encoder restarting from PTS 0, or a dropped connection resuming its timestamps)
    /// the first new segment is re-anchored to its arrival, with a discontinuity, while the
    /// numbers carry on forward.
    #[test]
    fn live_timeline_is_re_anchored_to_the_arrival_after_a_gap() {
        const W: i64 = 1_795_000_000 * TICKS_PER_SECOND;
        for restart_pts in [0u64, 4 * T2 as u64] {
            let anchors = Arc::new(Anchors::default());
            let mut cfg = SegmenterConfig::for_target(T2, 8 << 20);
            cfg.timing = Timing::Arrival(anchors);
            let mut s = Segmenter::new(cfg);
            let mut out = Vec::new();
            feed_at(
                &mut s,
                &synthetic(2 * T2 as u64, 2, 50, FRAME, 300),
                W,
                &mut out,
            );
            s.finish(false, &mut out);
            // 10 s later, the input is back: from PTS 0 (encoder restart) or continuing
            // its timestamps where they were (connection dropped and resumed).
            let back = W + 10 * TICKS_PER_SECOND;
            feed_at(
                &mut s,
                &synthetic(restart_pts, 2, 50, FRAME, 300),
                back,
                &mut out,
            );
            s.finish(true, &mut out);
            let segs = segments(&out);
            let w_msn = (W / T2) as u64;
            assert_eq!(segs[0], (w_msn, W, false), "anchored at the arrival");
            let gap = segs.iter().position(|s| s.2).expect("a discontinuity");
            assert_eq!(
                segs[gap].1, back,
                "re-anchored, restart pts {restart_pts}: {segs:?}"
            );
            assert!(
                segs.windows(2)
                    .all(|w| w[1].0 == w[0].0 + 1 && w[1].1 > w[0].1),
                "{segs:?}"
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Renditions with the same GOP structure but different sizes, fed in arbitrary
        /// chunks, get identical segment numbers, starts and durations; numbers are
        /// consecutive and every EXTINF rounds to at most TARGETDURATION.
        #[test]
        fn renditions_stay_aligned(
            gops in proptest::collection::vec(prop_oneof![Just(25usize), Just(50), Just(75), Just(100)], 1..12),
            start in 0u64..(1u64 << 33),
            chunks_a in proptest::collection::vec(1usize..5000, 1..5),
            chunks_b in proptest::collection::vec(1usize..5000, 1..5),
        ) {
            let build = |size: usize| {
                let mut w = TsWriter::new();
                let mut out = Vec::new();
                let mut n = 0u64;
                for &g in &gops {
                    w.psi(&mut out);
                    for f in 0..g {
                        let pts = (start + n * FRAME) % ts::PTS_MOD;
                        w.video_au(&mut out, pts, pts, f == 0, size);
                        n += 1;
                    }
                }
                out
            };
            let (a, _) = run(&build(900), &chunks_a, true);
            let (b, _) = run(&build(200), &chunks_b, true);
            prop_assert_eq!(summary(&a), summary(&b));
            let max = SegmenterConfig::for_target(T2, 1).max_duration;
            for w in a.windows(2) {
                prop_assert_eq!(w[1].msn, w[0].msn + 1);
                prop_assert!(w[1].start > w[0].start);
            }
            prop_assert!(a.iter().all(|s| s.duration < max && s.duration > 0));
        }
    }
}
