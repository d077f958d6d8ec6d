//! Adaptive-bitrate controllers behind one trait, shared by the offline and live modes.

mod bba;
mod bola;
mod ewma;
mod fixed;
mod hlsjs;
mod mpc;
mod throughput;

pub use bba::Bba;
pub use bola::Bola;
pub use fixed::Fixed;
pub use hlsjs::HlsJs;
pub use mpc::RobustMpc;
pub use throughput::Throughput;

/// What a controller sees when it picks the next segment's quality.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// Index of the segment about to be fetched.
    pub segment: usize,
    /// Buffered media, ms.
    pub buffer_ms: f64,
    /// Largest buffer the player keeps, ms.
    pub buffer_max_ms: f64,
    /// Quality of the previous segment.
    pub last_quality: Option<usize>,
    /// The ladder, kbit/s, ascending.
    pub bitrates_kbps: &'a [f64],
    /// Segment duration, ms.
    pub segment_ms: f64,
    /// Sizes of the upcoming segments (from `segment` on), bits per quality, when known
    /// (offline); live mode passes estimates from the bitrates.
    pub upcoming_bits: &'a [Vec<f64>],
    /// Peak bitrates (the master playlist's BANDWIDTH), kbit/s, by quality; offline the
    /// ladder's own. `bitrates_kbps` are the averages (AVERAGE-BANDWIDTH when given).
    pub peak_kbps: &'a [f64],
    /// The quality of the variant listed first in the master playlist.
    pub first_listed: usize,
    /// A live stream (its playlist has no ENDLIST).
    pub live: bool,
}

/// A segment download in progress, as an abandon rule sees it.
#[derive(Debug, Clone, Copy)]
pub struct Progress<'a> {
    /// Quality being fetched.
    pub quality: usize,
    /// The segment's duration, ms.
    pub segment_ms: f64,
    /// Since the request was sent, ms.
    pub elapsed_ms: f64,
    /// When the first byte came (ms since the request), if it has.
    pub first_byte_ms: Option<f64>,
    /// Bits received so far.
    pub loaded_bits: f64,
    /// The whole segment's bits, when the response said (Content-Length).
    pub total_bits: Option<f64>,
    /// Buffered media, ms.
    pub buffer_ms: f64,
    /// Playback has started (before that, hls.js's media element has no data to judge by).
    pub playing: bool,
    /// A live stream: a switch costs a playlist load too.
    pub live: bool,
    /// Average bitrates, kbit/s, ascending.
    pub bitrates_kbps: &'a [f64],
    /// Peak bitrates, kbit/s.
    pub peak_kbps: &'a [f64],
}

/// What an abandon rule says about a download in progress.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Abandon {
    /// Go on, and ask again later.
    Keep,
    /// Go on, and stop asking about this download.
    Stop,
    /// Abort it once it has run this long (ms since the request; now if already past),
    /// then ask [`Abr::abort`] for the quality to fetch instead.
    AbortAt(f64),
    /// A switch to `rung` is decided: a live player loads that rung's playlist and aborts
    /// this download when it arrives (hls.js's stream controller does); a driver without
    /// playlists aborts once the download has run `eta_ms` (when it would arrive).
    AbortOnPlaylist {
        /// The rung whose playlist is loaded.
        rung: usize,
        /// When the playlist is expected, ms since the request.
        eta_ms: f64,
    },
}

/// A finished download, reported back to the controller.
#[derive(Debug, Clone, Copy)]
pub struct Report {
    /// Quality fetched.
    pub quality: usize,
    /// Bits fetched.
    pub bits: f64,
    /// Time to first byte, ms.
    pub latency_ms: f64,
    /// Transfer time after the first byte, ms.
    pub transfer_ms: f64,
}

/// An ABR controller.
pub trait Abr: Send {
    /// Its name in reports.
    fn name(&self) -> &'static str;
    /// The quality for the next segment.
    fn choose(&mut self, ctx: &Context<'_>) -> usize;
    /// Learns from a finished download.
    fn report(&mut self, r: &Report);
    /// Whether the player fetches its first segment again at the new rung when its first
    /// switch comes right after it (hls.js does: see [`HlsJs`]).
    fn reloads_start_segment(&self) -> bool {
        false
    }
    /// Whether a live player switches as soon as its controller would, while it waits at the
    /// live edge for the next segment, fetching the segment it just fetched again at the new
    /// rung when the new rung's playlist lists nothing newer (hls.js does: see [`HlsJs`]).
    fn switches_at_live_edge(&self) -> bool {
        false
    }
    /// The bandwidth estimate it decides on, kbit/s, if it keeps one (for logs).
    fn estimate_kbps(&self) -> Option<f64> {
        None
    }
    /// Judges a download in progress (the driver asks every [`ABANDON_CHECK_MS`]). The default
    /// is the simple rule every controller had: past half a segment's time after the first
    /// byte, when the rest would arrive after the buffer runs dry and a lower rung would not
    /// (or sooner), abort now.
    fn abandon(&mut self, p: &Progress<'_>) -> Abandon {
        match simple_abandon(p) {
            Some(_) => Abandon::AbortAt(p.elapsed_ms),
            None => Abandon::Keep,
        }
    }
    /// The download was aborted as [`Abr::abandon`] asked: the quality to fetch instead. The
    /// default learns from the partial download and takes the simple rule's rung.
    fn abort(&mut self, p: &Progress<'_>) -> usize {
        let first = p.first_byte_ms.unwrap_or(p.elapsed_ms);
        self.report(&Report {
            quality: p.quality,
            bits: p.loaded_bits,
            latency_ms: first,
            transfer_ms: (p.elapsed_ms - first).max(0.0),
        });
        simple_abandon(p).unwrap_or(p.quality.saturating_sub(1))
    }
}

/// How often a driver asks [`Abr::abandon`] during a download, ms (hls.js's timer).
pub const ABANDON_CHECK_MS: f64 = 100.0;

/// The simple abandon rule: the rung to switch to, or `None` to go on.
fn simple_abandon(p: &Progress<'_>) -> Option<usize> {
    let q = p.quality;
    let first = p.first_byte_ms?;
    let streaming = p.elapsed_ms - first;
    if q == 0 || streaming <= p.segment_ms / 2.0 || p.loaded_bits <= 0.0 {
        return None;
    }
    let rate = p.loaded_bits / streaming; // bits per ms
    let total = p.total_bits.unwrap_or(p.bitrates_kbps[q] * p.segment_ms);
    let finish_ms = (total - p.loaded_bits).max(0.0) / rate;
    if finish_ms <= p.buffer_ms {
        return None;
    }
    let to = (0..q)
        .rev()
        .find(|&l| p.bitrates_kbps[l] * p.segment_ms / rate < p.buffer_ms)
        .unwrap_or(0);
    (p.bitrates_kbps[to] * p.segment_ms / rate < finish_ms).then_some(to)
}

/// Upcoming segments a controller looks at (RobustMPC's horizon); live mode estimates this
/// many segment sizes from the ladder.
pub const LOOKAHEAD: usize = 5;

/// Names accepted by [`by_name`].
pub const NAMES: &[&str] = &["hlsjs", "throughput", "bba", "bola", "mpc", "fixed"];

/// Builds a controller by name (`fixed` and `fixed:N` pin quality N, default the lowest).
pub fn by_name(name: &str) -> Option<Box<dyn Abr>> {
    Some(match name {
        "hlsjs" => Box::new(HlsJs::default()),
        "throughput" => Box::new(Throughput::default()),
        "bba" => Box::new(Bba::default()),
        "bola" => Box::new(Bola),
        "mpc" | "robustmpc" => Box::new(RobustMpc::default()),
        "fixed" => Box::new(Fixed(0)),
        other => {
            let q = other.strip_prefix("fixed:")?.parse().ok()?;
            Box::new(Fixed(q))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENVIVIO: [f64; 6] = [300.0, 750.0, 1200.0, 1850.0, 2850.0, 4300.0];

    fn ctx<'a>(
        buffer_s: f64,
        last: Option<usize>,
        bitrates: &'a [f64],
        sizes: &'a [Vec<f64>],
    ) -> Context<'a> {
        Context {
            segment: 1,
            buffer_ms: buffer_s * 1000.0,
            buffer_max_ms: 25_000.0,
            last_quality: last,
            bitrates_kbps: bitrates,
            segment_ms: 2000.0,
            upcoming_bits: sizes,
            peak_kbps: bitrates,
            first_listed: 0,
            live: false,
        }
    }

    fn report(kbps: f64, ms: f64) -> Report {
        Report {
            quality: 0,
            bits: kbps * ms,
            latency_ms: 0.0,
            transfer_ms: ms,
        }
    }

    #[test]
    fn bba_maps_buffer_to_rate() {
        let mut a = Bba::default();
        // Below the 5 s reservoir: lowest; 5 + 10·(k/5) s: rung k; past 15 s: top.
        for (buffer, want) in [
            (4.9, 0),
            (5.0, 0),
            (7.0, 1),
            (10.0, 2),
            (14.9, 4),
            (15.0, 5),
            (24.0, 5),
        ] {
            assert_eq!(
                a.choose(&ctx(buffer, Some(0), &ENVIVIO, &[])),
                want,
                "buffer {buffer}"
            );
        }
    }

    #[test]
    fn bola_follows_sabre_sized_scores() {
        // u = ln(b/300), γp = 5, V = (25 − 2) / (ln(4300/300) + 5) = 3.0016 for the Envivio
        // ladder with 2 s segments and a 25 s buffer; the argmax of
        // (V·(u + γp) − buffer)/bitrate at each buffer level:
        let mut a = Bola;
        for (buffer, want) in [
            (0.0, 0),
            (5.0, 0),
            (10.0, 0),
            (15.0, 1),
            (17.0, 3),
            (20.0, 5),
            (25.0, 5),
        ] {
            assert_eq!(
                a.choose(&ctx(buffer, None, &ENVIVIO, &[])),
                want,
                "buffer {buffer}"
            );
        }
    }

    #[test]
    fn throughput_uses_the_lower_ewma_and_hls_js_factors() {
        let mut a = Throughput::default();
        assert_eq!(a.estimate_kbps(), 500.0);
        // One sample: both zero-corrected EWMAs equal it.
        a.report(&report(1000.0, 2000.0));
        assert!((a.estimate_kbps() - 1000.0).abs() < 1e-9);
        // Up-switch needs bitrate <= 0.7·1000 = 700: 750 is too much, stay at 300.
        assert_eq!(a.choose(&ctx(10.0, Some(0), &ENVIVIO, &[])), 0);
        // Staying at 750 needs <= 0.95·1000 = 950: fine.
        assert_eq!(a.choose(&ctx(10.0, Some(1), &ENVIVIO, &[])), 1);
        // A faster 1 s sample of 3000: fast EWMA (half-life 3 s, a = 2^(-1/3)) is
        // [3000(1−a) + a·1000(1−a²)] / (1−a³); the slow one (9 s) is lower and wins.
        a.report(&report(3000.0, 1000.0));
        let est = |h: f64| {
            let x: f64 = 0.5f64.powf(1.0 / h);
            (3000.0 * (1.0 - x) + x * 1000.0 * (1.0 - x * x)) / (1.0 - x * x * x)
        };
        assert!((a.estimate_kbps() - est(9.0).min(est(3.0))).abs() < 1e-9);
        assert!(est(9.0) < est(3.0));
    }

    #[test]
    fn mpc_weighs_rebuffering_against_bitrate() {
        let b = [1000.0, 2000.0];
        let sizes = vec![vec![2e6, 4e6]; 10];
        let mut a = RobustMpc::default();
        assert_eq!(
            a.choose(&ctx(0.0, None, &b, &sizes)),
            0,
            "no throughput yet: lowest"
        );
        for _ in 0..5 {
            a.report(&report(1200.0, 1000.0));
        }
        // Predicted 1200 kbit/s. Empty buffer: the top rung would stall 3.3 s (−14.3), so
        // every plan starting high loses to all-low (5 − 4.3·1.67 = −2.17).
        assert_eq!(a.choose(&ctx(0.0, Some(0), &b, &sizes)), 0);
        // 20 s buffered: five top segments (3.33 s each) never stall: 10 − 1 switch = 9.
        assert_eq!(a.choose(&ctx(20.0, Some(0), &b, &sizes)), 1);
    }

    #[test]
    fn mpc_discounts_by_past_error() {
        let mut a = RobustMpc::default();
        a.report(&report(1000.0, 1000.0));
        a.report(&report(2000.0, 1000.0));
        // Harmonic mean of 1000 and 2000, no prediction made yet so no error.
        assert!((a.predict().unwrap() - 4000.0 / 3.0).abs() < 1e-9);
        let sizes = vec![vec![1.0]; 1];
        let _ = a.choose(&ctx(0.0, Some(0), &[100.0], &sizes)); // predicts 1333.3
        a.report(&report(1000.0, 1000.0)); // error |1333.3 − 1000| / 1000 = 1/3
        let harmonic = 3.0 / (1.0 / 1000.0 + 1.0 / 2000.0 + 1.0 / 1000.0);
        assert!((a.predict().unwrap() - harmonic / (1.0 + 1.0 / 3.0)).abs() < 1e-9);
    }

    #[test]
    fn names_build_controllers() {
        for n in NAMES {
            assert_eq!(by_name(n).unwrap().name(), *n);
        }
        let mut f = by_name("fixed:3").unwrap();
        assert_eq!(f.choose(&ctx(0.0, None, &ENVIVIO, &[])), 3);
        assert!(by_name("nope").is_none());
    }
}
