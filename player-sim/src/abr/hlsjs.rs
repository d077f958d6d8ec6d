//! hls.js 1.x's adaptive bitrate controller with its default configuration, as its source
//! (`abr-controller`, `ewma-bandwidth-estimator`, `level-controller`) behaves:
//!
//! - **Estimate**: the lower of two EWMAs of download bandwidth (half-lives 3 s and 9 s, each
//!   sample weighted by its duration in seconds, at least min(50 ms, bytes/100 000) ms), where
//!   a sample's duration leaves out the time to first byte up to the TTFB estimate (an EWMA of
//!   its own, 100 ms until sampled). Before any sample: 500 kbit/s, raised to the BANDWIDTH
//!   of the variant listed first in the master playlist (at most 5 Mbit/s).
//! - **Start level**: the highest rung whose BANDWIDTH fits that estimate, so usually the
//!   variant listed first.
//! - **Next level**: from the top, the first rung whose bitrate fits 0.95 of the estimate
//!   (0.7 when it means switching up) — the bitrate being AVERAGE-BANDWIDTH when at least two
//!   segments are buffered, else BANDWIDTH; then the same with BANDWIDTH; else the lowest.
//!   VOD also asks that the fetch fit in the buffer plus 4 s.
//! - **Emergency abandon** (checked every 100 ms once playback has data): after half a
//!   segment's time, when the rest of the fragment would arrive after the buffer runs dry,
//!   find a lower rung (not the lowest) whose fragment and playlist would arrive in time, else
//!   take the lowest; if that beats finishing, switch. Live, the switch loads that rung's
//!   playlist and the fragment in flight is aborted when it arrives (the estimator reset to
//!   the rung's BANDWIDTH when it was far above, then fed the partial download). VOD, it is
//!   aborted now (or after that rung's load time when finishing would take less than twice
//!   as long) and restarted at the lowest rung with the estimator reset to its BANDWIDTH —
//!   unless only the lowest would do: then the fragment finishes and the next is the lowest.
//! - **Start fragment reloaded**: when the level chosen after the start fragment differs
//!   from the start level, hls.js's stream controller loads that same fragment again at the
//!   new level before moving on (its media adds nothing). Seen in 7 of 8 runs of hls.js 1.7.4
//!   in Chromium that switched right after the start.
//! - **Switch at the live edge**: the stream controller asks for the next level on every tick,
//!   so a player waiting at the live edge switches as soon as an estimate allows, loads the new
//!   level's playlist and, when that too ends with the fragment just loaded (its buffer end is
//!   past the playlist's end: `getFragmentAtPosition` takes the last fragment, not loaded at
//!   this level), loads that fragment again at the new level; its media replaces the buffered
//!   copy. In 20 runs of hls.js 1.7.4 under DevTools schedules, 16 of 23 up-switches and all 6
//!   down-switches that were not aborts asked for the same fragment again.

use super::ewma::Ewma;
use super::{Abandon, Abr, Context, Progress, Report};

/// abrEwmaFastLive / abrEwmaFastVoD, seconds.
const FAST_HALF_LIFE: f64 = 3.0;
/// abrEwmaSlowLive / abrEwmaSlowVoD, seconds.
const SLOW_HALF_LIFE: f64 = 9.0;
/// abrEwmaDefaultEstimate, bit/s.
const DEFAULT_ESTIMATE: f64 = 500_000.0;
/// abrEwmaDefaultEstimateMax, bit/s.
const DEFAULT_ESTIMATE_MAX: f64 = 5_000_000.0;
/// abrBandWidthFactor.
const BW_FACTOR: f64 = 0.95;
/// abrBandWidthUpFactor.
const BW_UP_FACTOR: f64 = 0.7;
/// maxStarvationDelay, s.
const MAX_STARVATION_DELAY: f64 = 4.0;
/// The estimator's minimum weight before it estimates.
const MIN_WEIGHT: f64 = 0.001;
/// The estimator's minimum sample duration, ms.
const MIN_DELAY_MS: f64 = 50.0;
/// TTFB estimate before any sample, ms.
const DEFAULT_TTFB_MS: f64 = 100.0;

/// hls.js's bandwidth and TTFB estimator.
#[derive(Debug, Clone, Copy)]
struct Estimator {
    fast: Ewma,
    slow: Ewma,
    ttfb: Ewma,
    /// bit/s until the first sample.
    default_bps: f64,
}

impl Estimator {
    fn new(default_bps: f64) -> Self {
        Self {
            fast: Ewma::new(FAST_HALF_LIFE),
            slow: Ewma::new(SLOW_HALF_LIFE),
            ttfb: Ewma::new(SLOW_HALF_LIFE),
            default_bps,
        }
    }
    fn sample(&mut self, duration_ms: f64, bytes: f64) {
        if bytes <= 0.0 {
            return;
        }
        let min_delay = MIN_DELAY_MS.min(bytes / 100_000.0);
        let s = duration_ms.max(min_delay) / 1000.0;
        let bps = 8.0 * bytes / s;
        self.fast.sample(s, bps);
        self.slow.sample(s, bps);
    }
    /// Longer TTFBs weigh less (a bell curve over seconds).
    fn sample_ttfb(&mut self, ttfb_ms: f64) {
        let s = ttfb_ms / 1000.0;
        let weight = 2f64.sqrt() * (-(s * s) / 2.0).exp();
        self.ttfb.sample(weight, ttfb_ms.max(5.0));
    }
    fn can_estimate(&self) -> bool {
        self.fast.total_weight() >= MIN_WEIGHT
    }
    fn bps(&self) -> f64 {
        if self.can_estimate() {
            self.fast.get().min(self.slow.get())
        } else {
            self.default_bps
        }
    }
    fn ttfb_ms(&self) -> f64 {
        if self.ttfb.total_weight() >= MIN_WEIGHT {
            self.ttfb.get()
        } else {
            DEFAULT_TTFB_MS
        }
    }
    /// resetEstimator: a fresh estimator that assumes `default_bps` (TTFB history goes too).
    fn reset(&mut self, default_bps: f64) {
        *self = Self::new(default_bps);
    }
}

/// The hls.js controller.
#[derive(Debug, Clone, Copy)]
pub struct HlsJs {
    est: Estimator,
    /// Whether the default estimate has been raised to the first variant's BANDWIDTH.
    seeded: bool,
    /// lastLoadedFragLevel.
    last_loaded: Option<usize>,
    /// The level forced by an emergency switch, until a fragment of it loads.
    forced: Option<usize>,
}

impl Default for HlsJs {
    fn default() -> Self {
        Self {
            est: Estimator::new(DEFAULT_ESTIMATE),
            seeded: false,
            last_loaded: None,
            forced: None,
        }
    }
}

/// The ladder in bit/s: (average, peak) per level.
fn level_bps(avg_kbps: &[f64], peak_kbps: &[f64], i: usize) -> (f64, f64) {
    let avg = avg_kbps[i] * 1000.0;
    let peak = peak_kbps.get(i).map_or(avg, |p| p * 1000.0).max(avg);
    (avg, peak)
}

/// What findBestLevel needs.
struct Find<'a> {
    avg_kbps: &'a [f64],
    peak_kbps: &'a [f64],
    /// Selection base (lastLoadedFragLevel, or the first level).
    base: usize,
    /// Fragment duration, s (0 before any fragment).
    frag_s: f64,
    live: bool,
    ttfb_s: f64,
}

impl Find<'_> {
    /// findBestLevel: the highest level up to `max` that fits, or `None`.
    fn best(
        &self,
        bw: f64,
        max: usize,
        starvation_s: f64,
        max_starvation_s: f64,
        factor: f64,
        up_factor: f64,
    ) -> Option<usize> {
        let max_fetch = starvation_s + max_starvation_s;
        (0..=max.min(self.avg_kbps.len() - 1)).rev().find(|&i| {
            let (avg, peak) = level_bps(self.avg_kbps, self.peak_kbps, i);
            let adjusted = if i > self.base { up_factor } else { factor } * bw;
            let bitrate = if self.frag_s > 0.0
                && starvation_s >= 2.0 * self.frag_s
                && max_starvation_s == 0.0
            {
                avg
            } else {
                peak
            };
            let duration = if self.frag_s > 0.0 { self.frag_s } else { 1.0 };
            let fetch = self.ttfb_s
                + bitrate * duration / adjusted
                + if self.live { self.ttfb_s } else { 0.0 };
            // Live streams skip the fetch-time budget (hls.js avoids down-switching near the
            // live edge for it).
            adjusted >= bitrate
                && (fetch <= self.ttfb_s || !fetch.is_finite() || self.live || fetch < max_fetch)
        })
    }
}

impl HlsJs {
    /// The current bandwidth estimate, kbit/s.
    pub fn estimate_kbps(&self) -> f64 {
        self.est.bps() / 1000.0
    }

    fn find<'a>(&self, avg: &'a [f64], peak: &'a [f64], frag_ms: f64, live: bool) -> Find<'a> {
        Find {
            avg_kbps: avg,
            peak_kbps: peak,
            base: self.last_loaded.unwrap_or(0),
            frag_s: frag_ms / 1000.0,
            live,
            ttfb_s: self.est.ttfb_ms() / 1000.0,
        }
    }
}

impl Abr for HlsJs {
    fn name(&self) -> &'static str {
        "hlsjs"
    }

    fn choose(&mut self, ctx: &Context<'_>) -> usize {
        let n = ctx.bitrates_kbps.len();
        if n <= 1 {
            return 0;
        }
        let first = ctx.first_listed.min(n - 1);
        if !self.seeded {
            // level-controller: the first variant's BANDWIDTH replaces the default estimate.
            self.seeded = true;
            let (_, peak) = level_bps(ctx.bitrates_kbps, ctx.peak_kbps, first);
            let start = peak.min(DEFAULT_ESTIMATE_MAX);
            if start > self.est.default_bps && !self.est.can_estimate() {
                self.est.default_bps = start;
            }
        }
        if let Some(f) = self.forced {
            return f.min(n - 1);
        }
        let buffer_s = ctx.buffer_ms / 1000.0;
        let bw = self.est.bps();
        if self.last_loaded.is_none() || !self.est.can_estimate() {
            // firstAutoLevel: no safety factors, half the buffer as starvation delay; the
            // first selection's base is the first level.
            let mut f = self.find(ctx.bitrates_kbps, ctx.peak_kbps, 0.0, ctx.live);
            f.base = first;
            return f
                .best(bw, n - 1, buffer_s / 2.0, MAX_STARVATION_DELAY, 1.0, 1.0)
                .unwrap_or(first);
        }
        let f = self.find(ctx.bitrates_kbps, ctx.peak_kbps, ctx.segment_ms, ctx.live);
        if buffer_s > 0.0
            && let Some(i) = f.best(bw, n - 1, buffer_s, 0.0, BW_FACTOR, BW_UP_FACTOR)
        {
            return i;
        }
        let max_starvation = if f.frag_s > 0.0 {
            f.frag_s.min(MAX_STARVATION_DELAY)
        } else {
            MAX_STARVATION_DELAY
        };
        f.best(bw, n - 1, buffer_s, max_starvation, BW_FACTOR, BW_UP_FACTOR)
            .unwrap_or(0)
    }

    fn estimate_kbps(&self) -> Option<f64> {
        Some(self.est.bps() / 1000.0)
    }

    fn reloads_start_segment(&self) -> bool {
        true
    }

    fn switches_at_live_edge(&self) -> bool {
        true
    }

    fn report(&mut self, r: &Report) {
        // onFragLoaded samples the TTFB; onFragBuffered the bandwidth, over request to last
        // byte less the TTFB (at most the estimate).
        self.est.sample_ttfb(r.latency_ms);
        let processing = r.latency_ms + r.transfer_ms - r.latency_ms.min(self.est.ttfb_ms());
        self.est.sample(processing, r.bits / 8.0);
        self.last_loaded = Some(r.quality);
        if self.forced == Some(r.quality) {
            self.forced = None;
        }
    }

    fn abandon(&mut self, p: &Progress<'_>) -> Abandon {
        let level = p.quality;
        if level == 0 || p.bitrates_kbps.len() <= 1 {
            return Abandon::Stop;
        }
        if !p.playing {
            return Abandon::Keep;
        }
        let ttfb_est = self.est.ttfb_ms();
        let duration_s = p.segment_ms / 1000.0;
        if p.elapsed_ms <= ttfb_est.max(p.segment_ms / 2.0) {
            return Abandon::Keep;
        }
        let starvation = p.buffer_ms / 1000.0;
        let loaded = p.loaded_bits / 8.0;
        let first_byte = p.first_byte_ms.filter(|_| loaded > 0.0);
        let bw_estimate = self.est.bps();
        let (avg, _) = level_bps(p.bitrates_kbps, p.peak_kbps, level);
        let expected = loaded.max((duration_s * avg / 8.0).round());
        let mut streaming = first_byte.map_or(p.elapsed_ms, |t| p.elapsed_ms - t);
        if streaming < 1.0 && first_byte.is_some() {
            streaming = p.elapsed_ms.min(loaded * 8.0 / bw_estimate);
        }
        let load_rate = if first_byte.is_some() {
            loaded * 1000.0 / streaming
        } else {
            0.0
        };
        let ttfb_s = ttfb_est / 1000.0;
        let frag_delay = if load_rate > 0.0 {
            (expected - loaded) / load_rate
        } else {
            expected * 8.0 / bw_estimate + ttfb_s
        };
        if frag_delay <= starvation {
            return Abandon::Keep;
        }
        let bwe = if load_rate > 0.0 {
            load_rate * 8.0
        } else {
            bw_estimate
        };
        // From the level below down to (not including) the lowest: the first whose fragment
        // and playlist would arrive before the buffer runs dry (and within a segment's time).
        let mut next = level - 1;
        let mut next_delay = f64::INFINITY;
        while next > 0 {
            let (_, peak) = level_bps(p.bitrates_kbps, p.peak_kbps, next);
            let playlist = if p.live { ttfb_s } else { 0.0 };
            next_delay = ttfb_s + duration_s * peak / bwe + playlist;
            if next_delay < starvation.min(duration_s + ttfb_s) {
                break;
            }
            next -= 1;
        }
        if next_delay >= frag_delay || next_delay > duration_s * 10.0 {
            return Abandon::Keep;
        }
        match first_byte {
            Some(t) => self.est.sample(p.elapsed_ms - ttfb_est.min(t), loaded),
            None => self.est.sample_ttfb(p.elapsed_ms),
        }
        let (_, next_peak) = level_bps(p.bitrates_kbps, p.peak_kbps, next);
        if self.est.bps() * BW_UP_FACTOR > next_peak {
            self.est.reset(next_peak);
        }
        self.forced = Some(next);
        if p.live {
            // Switching loads the new level's live playlist, and the stream controller aborts
            // a fragment of another level in flight when that playlist arrives (whichever
            // level was picked): about one TTFB from now.
            return Abandon::AbortOnPlaylist {
                rung: next,
                eta_ms: p.elapsed_ms + ttfb_est,
            };
        }
        if next == 0 {
            // abortAndSwitch aborts only for a level above the lowest: this fragment
            // finishes and the next one comes from the lowest level.
            return Abandon::Stop;
        }
        if frag_delay > next_delay * 2.0 {
            Abandon::AbortAt(p.elapsed_ms)
        } else {
            Abandon::AbortAt(p.elapsed_ms + next_delay * 1000.0)
        }
    }

    fn abort(&mut self, p: &Progress<'_>) -> usize {
        // Live: the abandon check runs once more when the new playlist arrives, sampling the
        // partial download (into the estimator just reset, if it was).
        if p.live
            && let Some(t) = p.first_byte_ms.filter(|_| p.loaded_bits > 0.0)
        {
            let ttfb = self.est.ttfb_ms();
            self.est
                .sample(p.elapsed_ms - ttfb.min(t), p.loaded_bits / 8.0);
        }
        if self.forced == Some(0) {
            return 0;
        }
        // abortAndSwitch: the highest level whose BANDWIDTH fits the lowest's (so the lowest,
        // on an ascending ladder), and an estimator that assumes it.
        let (_, lowest_peak) = level_bps(p.bitrates_kbps, p.peak_kbps, 0);
        let to = (0..p.quality)
            .rev()
            .find(|&i| level_bps(p.bitrates_kbps, p.peak_kbps, i).1 <= lowest_peak)
            .unwrap_or(0);
        self.forced = Some(to);
        let (_, peak) = level_bps(p.bitrates_kbps, p.peak_kbps, to);
        self.est.reset(peak);
        to
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The demo origin's ladder (kbit/s): AVERAGE-BANDWIDTH and BANDWIDTH, ascending; the
    /// master lists 360p (index 2) first.
    const AVG: [f64; 3] = [376.627, 584.43, 988.88];
    const PEAK: [f64; 3] = [411.344, 627.92, 1052.8];

    fn ctx(buffer_s: f64, last: Option<usize>) -> Context<'static> {
        Context {
            segment: 0,
            buffer_ms: buffer_s * 1000.0,
            buffer_max_ms: 30_000.0,
            last_quality: last,
            bitrates_kbps: &AVG,
            segment_ms: 2000.0,
            upcoming_bits: &[],
            peak_kbps: &PEAK,
            first_listed: 2,
            live: true,
        }
    }

    fn report(q: usize, kbps: f64, ms: f64, ttfb: f64) -> Report {
        Report {
            quality: q,
            bits: kbps * ms,
            latency_ms: ttfb,
            transfer_ms: ms - ttfb,
        }
    }

    fn progress(q: usize, elapsed: f64, loaded_kbit: f64, buffer_s: f64) -> Progress<'static> {
        Progress {
            quality: q,
            segment_ms: 2000.0,
            elapsed_ms: elapsed,
            first_byte_ms: Some(20.0),
            loaded_bits: loaded_kbit * 1000.0,
            total_bits: None,
            buffer_ms: buffer_s * 1000.0,
            playing: true,
            live: true,
            bitrates_kbps: &AVG,
            peak_kbps: &PEAK,
        }
    }

    #[test]
    fn starts_at_the_variant_listed_first() {
        let mut a = HlsJs::default();
        // The default estimate becomes 360p's BANDWIDTH, 1052.8 kbit/s: 360p fits.
        assert_eq!(a.choose(&ctx(0.0, None)), 2);
        assert!((a.estimate_kbps() - 1052.8).abs() < 1e-9);
        // Listed first at 144p: 500 kbit/s stays the estimate, and 144p is what fits.
        let mut b = HlsJs::default();
        let c = Context {
            first_listed: 0,
            ..ctx(0.0, None)
        };
        assert_eq!(b.choose(&c), 0);
        assert_eq!(b.estimate_kbps(), 500.0);
    }

    #[test]
    fn samples_leave_out_the_time_to_first_byte() {
        let mut a = HlsJs::default();
        a.choose(&ctx(0.0, None));
        // 2000 kbit, 2000 ms request to last byte with a 100 ms TTFB: the TTFB EWMA's first
        // sample is 100 ms, so the bandwidth sample is 2000 kbit over 1.9 s.
        a.report(&report(2, 1000.0, 2000.0, 100.0));
        assert!(
            (a.estimate_kbps() - 2000.0 / 1.9).abs() < 1e-6,
            "{}",
            a.estimate_kbps()
        );
        assert!((a.est.ttfb_ms() - 100.0).abs() < 1e-9);
    }

    #[test]
    fn next_level_uses_average_bitrate_only_with_two_segments_buffered() {
        let mut a = HlsJs::default();
        a.choose(&ctx(0.0, None));
        // One 2 s sample at 1000 kbit/s (no TTFB): estimate 1000.
        a.report(&report(1, 1000.0, 2000.0, 0.0));
        assert!((a.estimate_kbps() - 1000.0).abs() < 1e-6);
        // Up from 240p needs 0.7·1000 = 700 ≥ bitrate: 988.88 (avg) and 1052.8 (peak) don't;
        // 240p stays (0.95·1000 ≥ 627.92).
        assert_eq!(a.choose(&ctx(5.0, Some(1))), 1);
        // Now at 1400 kbit/s: 0.7·1400 = 980 < 988.88 avg: still 240p. At 1420: 994 ≥ 988.88
        // with ≥ 4 s buffered (average used), but < 1052.8 peak with 3 s buffered.
        let mut b = a;
        b.report(&report(1, 1400.0, 1e6, 0.0)); // a huge sample: estimate → 1400
        assert!(
            (b.estimate_kbps() - 1400.0).abs() < 1e-3,
            "{}",
            b.estimate_kbps()
        );
        assert_eq!(b.choose(&ctx(5.0, Some(1))), 1);
        let mut c = a;
        c.report(&report(1, 1420.0, 1e6, 0.0));
        assert_eq!(
            c.choose(&ctx(4.0, Some(1))),
            2,
            "average bitrate with 2 segments"
        );
        assert_eq!(c.choose(&ctx(3.0, Some(1))), 1, "peak bitrate below that");
        // Empty buffer: the second pass with BANDWIDTH; 0.95·1420 = 1349 ≥ 1052.8 for a stay.
        c.last_loaded = Some(2);
        assert_eq!(c.choose(&ctx(0.0, Some(2))), 2);
        // Nothing fits 0.95·300 kbit/s: the lowest.
        let mut d = HlsJs::default();
        d.choose(&ctx(0.0, None));
        d.report(&report(2, 300.0, 2000.0, 0.0));
        assert_eq!(d.choose(&ctx(3.0, Some(2))), 0);
    }

    #[test]
    fn emergency_abandon_from_the_top_jumps_to_the_lowest() {
        let mut a = HlsJs::default();
        a.choose(&ctx(0.0, None));
        a.report(&report(2, 1500.0, 2000.0, 20.0));
        // Not before half a segment (1 s) has passed.
        assert_eq!(a.abandon(&progress(2, 900.0, 300.0, 3.0)), Abandon::Keep);
        // Not when the rest arrives before the buffer runs dry: 1 s in, 980 ms streaming,
        // 700 kbit loaded (714 kbit/s); expected 1977.8 kbit, 1.79 s to go < 3 s buffered.
        assert_eq!(a.abandon(&progress(2, 1000.0, 700.0, 3.0)), Abandon::Keep);
        // 1.1 s in, 330 kbit loaded in 1.08 s: 305.6 kbit/s. The rest (1647.8 kbit) takes
        // 5.39 s > 1.5 s buffered. 240p from here: 0.1 + 2·627.92/305.6 + 0.1 = 4.31 s, not
        // under min(1.5, 2.1): so only the lowest would do, from 240p's 4.31 s < 5.39 s.
        // Live, the fragment is aborted when 144p's playlist arrives: one TTFB (the estimate,
        // 20 ms from the one sample) on.
        let p = progress(2, 1100.0, 330.0, 1.5);
        assert_eq!(
            a.abandon(&p),
            Abandon::AbortOnPlaylist {
                rung: 0,
                eta_ms: 1120.0
            }
        );
        assert_eq!(a.forced, Some(0));
        // Its estimate was 1500·0.7 > 411.344: reset to 144p's BANDWIDTH, then the partial
        // download (330 kbit over 1120 − 20 ms) sampled at the playlist's arrival.
        let at = Progress {
            elapsed_ms: 1120.0,
            ..p
        };
        assert_eq!(a.abort(&at), 0);
        assert!(
            (a.estimate_kbps() - 300.0).abs() < 1e-6,
            "{}",
            a.estimate_kbps()
        );
        assert_eq!(a.choose(&ctx(1.0, Some(2))), 0);
        // VOD: no playlist to wait for; abortAndSwitch never aborts for the lowest level, so
        // the fragment finishes and the next is 144p.
        let mut v = HlsJs::default();
        v.choose(&ctx(0.0, None));
        v.report(&report(2, 1500.0, 2000.0, 20.0));
        let vod = Progress { live: false, ..p };
        assert_eq!(v.abandon(&vod), Abandon::Stop);
        assert_eq!(
            v.choose(&Context {
                live: false,
                ..ctx(1.0, Some(2))
            }),
            0
        );
        // A fragment of 144p loaded: the forced level is over.
        a.report(&report(0, 300.0, 1200.0, 20.0));
        assert_eq!(a.forced, None);
    }

    #[test]
    fn emergency_abort_when_a_middle_rung_fits() {
        let mut a = HlsJs::default();
        a.choose(&ctx(0.0, None));
        a.report(&report(2, 1500.0, 2000.0, 20.0));
        // On the demo ladder with 2 s segments 240p's fragment plus playlist never fits the
        // buffer a slow link leaves, so the rule seldom aborts there; a ladder with a cheap
        // middle rung (peaks 400 / 500 / 3000 kbit/s) shows the abort.
        let avg = [400.0, 500.0, 3000.0];
        let p = Progress {
            bitrates_kbps: &avg,
            peak_kbps: &avg,
            live: false,
            ..progress(2, 1100.0, 1080.0, 2.0)
        };
        // 1000 kbit/s measured; expected 6000 kbit, 4.92 s to go > 2 s. 500k: 0.1 + 1.0 + 0.1
        // = 1.2 s < min(2, 2.1): break at level 1; 1.2 < 4.92; 4.92 > 2·1.2: abort now.
        assert_eq!(a.abandon(&p), Abandon::AbortAt(1100.0));
        assert_eq!(a.abort(&p), 0);
        // The estimator now assumes 144p's BANDWIDTH until a sample; 144p is forced.
        assert_eq!(a.estimate_kbps(), 400.0);
        assert_eq!(
            a.choose(&Context {
                bitrates_kbps: &avg,
                peak_kbps: &avg,
                ..ctx(1.0, Some(2))
            }),
            0
        );
    }

    #[test]
    fn never_abandons_before_playback_or_at_the_lowest() {
        let mut a = HlsJs::default();
        a.choose(&ctx(0.0, None));
        let mut p = progress(2, 1900.0, 10.0, 0.0);
        p.playing = false;
        assert_eq!(a.abandon(&p), Abandon::Keep);
        assert_eq!(a.abandon(&progress(0, 1900.0, 10.0, 0.0)), Abandon::Stop);
    }
}
