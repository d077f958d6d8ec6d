//! A player's playback clock and buffer, the one state machine both modes use: starting,
//! playing, stalled, with stall accounting, the played-bitrate integral and live latency.
//!
//! Time is passed in explicitly (milliseconds since the session began: wall time in live mode,
//! the virtual clock offline), so the machine is pure and tested without a runtime.

use std::collections::VecDeque;

/// Where playback stands.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum State {
    /// Not started: waiting for the start threshold.
    Starting,
    /// Playing.
    Playing,
    /// Stalled since this moment (ms), waiting for the resume threshold.
    Stalled(f64),
}

#[derive(Debug, Clone, Copy)]
struct Buffered {
    quality: usize,
    kbps: f64,
    left_ms: f64,
    duration_ms: f64,
    /// Unix ms of the segment's first sample (EXT-X-PROGRAM-DATE-TIME).
    pdt_ms: Option<f64>,
}

/// A segment's worth of media appended to the buffer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Media {
    /// Rendition index.
    pub quality: usize,
    /// Its bitrate, kbit/s.
    pub kbps: f64,
    /// Duration, ms.
    pub duration_ms: f64,
    /// EXT-X-PROGRAM-DATE-TIME, Unix ms.
    pub pdt_ms: Option<f64>,
}

/// Most stall intervals a playback keeps (for plots; the totals count every stall).
pub const MAX_SPANS: usize = 10_000;

/// Playback clock, buffer and QoE integrals of one player.
#[derive(Debug, Clone)]
pub struct Playback {
    state: State,
    buffer: VecDeque<Buffered>,
    last_ms: f64,
    start_threshold_ms: f64,
    resume_threshold_ms: f64,
    /// The resume threshold doubles after each stall up to this (0: it stays).
    resume_growth_max_ms: f64,
    /// When playback first started, ms since join.
    pub started_at_ms: Option<f64>,
    /// Media played, ms.
    pub played_ms: f64,
    /// Σ kbps·ms of what was played.
    pub bitrate_time: f64,
    /// Stall time after startup, ms, up to the last time played to.
    pub stalled_ms: f64,
    /// Stalls after startup.
    pub stalls: u32,
    /// Finished stalls as (start, end) ms, the first [`MAX_SPANS`].
    spans: Vec<(f64, f64)>,
    /// Live-latency samples, ms.
    latency_sum_ms: f64,
    latency_samples: u32,
}

impl Playback {
    /// A player that starts once `start_threshold_ms` is buffered and resumes after a stall
    /// once `resume_threshold_ms` is (each at least one segment's worth in practice).
    pub fn new(start_threshold_ms: f64, resume_threshold_ms: f64) -> Self {
        Self {
            state: State::Starting,
            buffer: VecDeque::new(),
            last_ms: 0.0,
            start_threshold_ms,
            resume_threshold_ms,
            resume_growth_max_ms: 0.0,
            started_at_ms: None,
            played_ms: 0.0,
            bitrate_time: 0.0,
            stalled_ms: 0.0,
            stalls: 0,
            spans: Vec::new(),
            latency_sum_ms: 0.0,
            latency_samples: 0,
        }
    }

    /// After each stall the resume threshold doubles, up to `max_ms`: Chromium's audio
    /// renderer does this (its playback threshold starts at 200 ms and doubles per underflow
    /// up to 3 s, so a slow link stops oscillating between stalling and playing).
    pub fn with_resume_growth(mut self, max_ms: f64) -> Self {
        self.resume_growth_max_ms = max_ms;
        self
    }

    /// Buffer needed to resume now, ms.
    pub fn resume_threshold_ms(&self) -> f64 {
        self.resume_threshold_ms
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Buffered media, ms.
    pub fn level_ms(&self) -> f64 {
        self.buffer.iter().map(|b| b.left_ms).sum()
    }

    /// Plays until `now_ms`; a buffer that runs dry turns into a stall at that moment.
    pub fn advance(&mut self, now_ms: f64) {
        let dt = now_ms - self.last_ms;
        if dt > 0.0 {
            self.run(dt);
        }
        self.last_ms = self.last_ms.max(now_ms);
    }

    /// Plays `dt_ms` more. The offline mode steps its virtual clock by durations, and stepping
    /// by the same durations here keeps its arithmetic (and so its results) exact.
    pub fn play_for(&mut self, dt_ms: f64) {
        if dt_ms > 0.0 {
            self.run(dt_ms);
            self.last_ms += dt_ms;
        }
    }

    /// Lets `dt` pass from `last_ms`: plays from the buffer, and counts stall time.
    fn run(&mut self, mut dt: f64) {
        let end = self.last_ms + dt;
        if self.state == State::Playing {
            while dt > 0.0 {
                let Some(b) = self.buffer.front_mut() else {
                    self.state = State::Stalled(end - dt);
                    self.stalls += 1;
                    if self.resume_growth_max_ms > self.resume_threshold_ms {
                        self.resume_threshold_ms =
                            (2.0 * self.resume_threshold_ms).min(self.resume_growth_max_ms);
                    }
                    break;
                };
                let t = dt.min(b.left_ms);
                b.left_ms -= t;
                dt -= t;
                self.played_ms += t;
                self.bitrate_time += b.kbps * t;
                if b.left_ms <= 1e-9 {
                    self.buffer.pop_front();
                }
            }
        }
        if matches!(self.state, State::Stalled(_)) {
            self.stalled_ms += dt;
        }
    }

    /// Appends a downloaded segment at `now_ms`; starts or resumes when the threshold is met.
    /// Returns true when this started or resumed playback.
    pub fn append(&mut self, now_ms: f64, media: Media) -> bool {
        self.advance(now_ms);
        self.buffer.push_back(Buffered {
            quality: media.quality,
            kbps: media.kbps,
            left_ms: media.duration_ms,
            duration_ms: media.duration_ms,
            pdt_ms: media.pdt_ms,
        });
        let level = self.level_ms();
        let changed = match self.state {
            State::Starting if level >= self.start_threshold_ms => {
                self.started_at_ms = Some(now_ms);
                true
            }
            State::Stalled(since) if level >= self.resume_threshold_ms => {
                if self.spans.len() < MAX_SPANS {
                    self.spans.push((since, now_ms));
                }
                true
            }
            _ => false,
        };
        if changed {
            self.state = State::Playing;
        }
        changed
    }

    /// The newest buffered segment is now at `quality` (`kbps`): a copy at another rung
    /// replaced it (what is left of it to play, when it has begun).
    pub fn replace_last(&mut self, quality: usize, kbps: f64) {
        if let Some(b) = self.buffer.back_mut() {
            b.quality = quality;
            b.kbps = kbps;
        }
    }

    /// A seek away from what is buffered (a live player's jump to the live sync point): the
    /// buffer is dropped; the state (a stall goes on until the new position has data) stays.
    pub fn flush(&mut self) {
        self.buffer.clear();
    }

    /// Stalls after startup as (start, end) ms, oldest first; one still going ends at the
    /// last time played to.
    pub fn stall_spans(&self) -> Vec<(f64, f64)> {
        let mut v = self.spans.clone();
        if let State::Stalled(since) = self.state
            && v.len() < MAX_SPANS
        {
            v.push((since, self.last_ms));
        }
        v
    }

    /// Quality of the segment playing now.
    pub fn playing_quality(&self) -> Option<usize> {
        self.buffer.front().map(|b| b.quality)
    }

    /// Records the live latency at `now_ms` (wall clock `unix_now_ms`): how far the playhead
    /// is behind real time, from the playing segment's PROGRAM-DATE-TIME.
    pub fn sample_latency(&mut self, unix_now_ms: f64) {
        if self.state != State::Playing {
            return;
        }
        if let Some(b) = self.buffer.front()
            && let Some(pdt) = b.pdt_ms
        {
            let playhead = pdt + (b.duration_ms - b.left_ms);
            self.latency_sum_ms += unix_now_ms - playhead;
            self.latency_samples += 1;
        }
    }

    /// Mean live latency, ms.
    pub fn mean_latency_ms(&self) -> Option<f64> {
        (self.latency_samples > 0).then(|| self.latency_sum_ms / f64::from(self.latency_samples))
    }

    /// Time-weighted bitrate of what was played, kbit/s.
    pub fn avg_bitrate_kbps(&self) -> f64 {
        if self.played_ms > 0.0 {
            self.bitrate_time / self.played_ms
        } else {
            0.0
        }
    }

    /// Stall time over stall plus play time (0 before anything played or stalled).
    pub fn rebuffer_ratio(&self) -> f64 {
        let total = self.played_ms + self.stalled_ms;
        if total > 0.0 {
            self.stalled_ms / total
        } else {
            0.0
        }
    }

    /// Stall time including an ongoing stall up to `now_ms`.
    pub fn stalled_ms_at(&self, now_ms: f64) -> f64 {
        match self.state {
            State::Stalled(_) => self.stalled_ms + (now_ms - self.last_ms).max(0.0),
            _ => self.stalled_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn seg(q: usize, kbps: f64) -> Media {
        Media {
            quality: q,
            kbps,
            duration_ms: 2000.0,
            pdt_ms: None,
        }
    }

    /// Start threshold 4 s, resume 2 s, 2 s segments:
    /// - t=1000, 2500: two segments arrive; playback starts at 2500 (4 s buffered).
    /// - plays 4 s → dry at 6500: stall #1.
    /// - t=9000: one segment, 2 s ≥ resume: stall lasted 2500 ms; plays to 11000.
    /// - advance to 12000: a second stall, 1000 ms.
    #[test]
    fn hand_computed_start_stall_resume() {
        let mut p = Playback::new(4000.0, 2000.0);
        assert!(!p.append(1000.0, seg(0, 500.0)));
        assert_eq!(p.state(), State::Starting);
        assert!(p.append(2500.0, seg(1, 1000.0)));
        assert_eq!(p.started_at_ms, Some(2500.0));
        p.advance(6000.0);
        assert_eq!(p.level_ms(), 500.0);
        assert_eq!(p.playing_quality(), Some(1));
        p.advance(7000.0);
        assert_eq!(p.state(), State::Stalled(6500.0));
        assert_eq!(p.stalls, 1);
        assert!(p.append(9000.0, seg(0, 500.0)));
        assert_eq!(p.stalled_ms, 2500.0);
        p.advance(12_000.0);
        assert_eq!(p.stalls, 2);
        assert_eq!(p.stalled_ms, 3500.0);
        assert_eq!(p.played_ms, 6000.0);
        assert_eq!(p.avg_bitrate_kbps(), (500.0 + 1000.0 + 500.0) / 3.0);
        // The first stall ran 6.5–9 s; the second began at 11 s and is still going.
        assert_eq!(
            p.stall_spans(),
            vec![(6500.0, 9000.0), (11_000.0, 12_000.0)]
        );
    }

    /// Chromium's renderer: 200 ms to start and resume, doubling per stall up to 3 s. With 2 s
    /// segments, stalls 1–3 (thresholds 0.4, 0.8, 1.6 s) resume on one segment; after the
    /// fourth (3 s) it takes two.
    #[test]
    fn resume_threshold_doubles_per_stall_up_to_its_cap() {
        let mut p = Playback::new(200.0, 200.0).with_resume_growth(3000.0);
        let mut now = 0.0;
        assert!(p.append(now, seg(0, 500.0)));
        for (k, want) in [
            (1, 400.0),
            (2, 800.0),
            (3, 1600.0),
            (4, 3000.0),
            (5, 3000.0),
        ] {
            now += p.level_ms() + 500.0; // what is buffered plays out, then 0.5 s dry
            p.advance(now);
            assert_eq!(p.stalls, k);
            assert_eq!(p.resume_threshold_ms(), want);
            let resumed = p.append(now, seg(0, 500.0));
            assert_eq!(resumed, want <= 2000.0, "stall {k}");
            if !resumed {
                now += 1000.0;
                assert!(p.append(now, seg(0, 500.0)), "two segments: 4 s ≥ 3 s");
            }
        }
    }

    #[test]
    fn latency_follows_the_playhead() {
        let mut p = Playback::new(2000.0, 2000.0);
        let m = Media {
            pdt_ms: Some(1_000_000.0),
            ..seg(0, 500.0)
        };
        p.append(0.0, m);
        p.advance(500.0);
        // Playhead at pdt + 500 ms; the wall clock reads pdt + 7 s.
        p.sample_latency(1_007_000.0);
        assert_eq!(p.mean_latency_ms(), Some(6500.0));
    }

    proptest! {
        /// Whatever the arrival pattern, wall time after startup splits exactly into playing
        /// and stalling, and the buffer never goes negative.
        #[test]
        fn time_is_conserved(gaps in proptest::collection::vec(0.0f64..5000.0, 1..40)) {
            let mut p = Playback::new(2000.0, 2000.0);
            let mut now = 0.0;
            for g in &gaps {
                now += g;
                p.append(now, seg(0, 300.0));
                prop_assert!(p.level_ms() >= -1e-9);
            }
            now += 1000.0;
            p.advance(now);
            match p.started_at_ms {
                Some(start) => prop_assert!((p.played_ms + p.stalled_ms - (now - start)).abs() < 1e-6),
                None => prop_assert!(p.played_ms == 0.0 && p.stalled_ms == 0.0),
            }
            prop_assert!(p.played_ms <= 2000.0 * gaps.len() as f64 + 1e-6);
        }
    }
}
