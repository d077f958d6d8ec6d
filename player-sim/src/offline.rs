//! Offline, trace-driven sessions on a virtual clock: the same controllers and buffer rules as
//! live mode, with Sabre's network model. Deterministic.
//!
//! A session downloads segment 0 (startup), then for each next segment waits while the buffer
//! is too full to hold it, asks the controller, downloads while playing, and stalls when the
//! buffer runs dry; finally it plays out the buffer.

use crate::abr::{Abr, Context, Report};
use crate::movie::Movie;
use crate::network::Network;
use crate::playback::{Media, Playback};
use crate::qoe::{REBUF_PENALTY, SabreMetrics, Session};
use crate::trace::Trace;

/// Player settings for offline sessions.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Largest buffer, ms (Sabre's default: 25 s).
    pub buffer_max_ms: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            buffer_max_ms: 25_000.0,
        }
    }
}

/// One downloaded segment, for timelines and plots.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    /// Segment index.
    pub segment: usize,
    /// Quality chosen.
    pub quality: usize,
    /// Clock when the request was sent, ms.
    pub at_ms: f64,
    /// Request to last byte, ms.
    pub download_ms: f64,
    /// Buffer after the segment arrived, ms.
    pub buffer_ms: f64,
    /// Stall time during this download, ms.
    pub stall_ms: f64,
}

/// A session's stalls as (start, end) ms, from its steps: offline, a player that runs dry is
/// always downloading (it never idles with an empty buffer), so each stall ends with the
/// download it happened in.
pub fn stall_spans(steps: &[Step]) -> Vec<(f64, f64)> {
    steps
        .iter()
        .filter(|s| s.stall_ms > 0.0)
        .map(|s| {
            let end = s.at_ms + s.download_ms;
            (end - s.stall_ms, end)
        })
        .collect()
}

/// Runs one session of `movie` over `trace` with `abr`.
pub fn run(
    id: usize,
    movie: &Movie,
    trace: &Trace,
    abr: &mut dyn Abr,
    settings: Settings,
) -> (Session, Vec<Step>) {
    let mut net = Network::new(trace);
    let b = &movie.bitrates_kbps;
    let seg = movie.segment_ms;
    // Sabre's player: plays once the first segment is in, resumes as soon as any is.
    let mut pb = Playback::new(0.0, 0.0);
    let mut steps = Vec::with_capacity(movie.len());
    let mut now = 0.0;
    let mut startup_ms = 0.0;
    let mut last: Option<usize> = None;
    let mut switches = 0;
    let mut change_kbps = 0.0;
    let mut qoe = 0.0;
    for i in 0..movie.len() {
        if i > 0 {
            // Wait until the segment fits in the buffer.
            let full = pb.level_ms() + seg - settings.buffer_max_ms;
            if full > 0.0 {
                pb.play_for(full);
                net.delay(full);
                now += full;
            }
        }
        let ctx = Context {
            segment: i,
            buffer_ms: pb.level_ms(),
            buffer_max_ms: settings.buffer_max_ms,
            last_quality: last,
            bitrates_kbps: b,
            segment_ms: seg,
            upcoming_bits: &movie.sizes_bits[i..],
            peak_kbps: b,
            first_listed: 0,
            live: false,
        };
        let q = abr.choose(&ctx).min(b.len() - 1);
        let bits = movie.sizes_bits[i][q];
        let d = net.download(bits);
        let at = now;
        now += d.total_ms();
        let before = pb.stalled_ms;
        pb.play_for(d.total_ms());
        let stall = pb.stalled_ms - before;
        if i == 0 {
            startup_ms = d.total_ms();
        }
        pb.append(
            now,
            Media {
                quality: q,
                kbps: b[q],
                duration_ms: seg,
                pdt_ms: None,
            },
        );
        abr.report(&Report {
            quality: q,
            bits,
            latency_ms: d.latency_ms,
            transfer_ms: d.transfer_ms,
        });
        if let Some(p) = last {
            if p != q {
                switches += 1;
            }
            change_kbps += (b[q] - b[p]).abs();
            qoe -= (b[q] - b[p]).abs() / 1000.0;
        }
        qoe += b[q] / 1000.0 - REBUF_PENALTY * stall / 1000.0;
        last = Some(q);
        steps.push(Step {
            segment: i,
            quality: q,
            at_ms: at,
            download_ms: d.total_ms(),
            buffer_ms: pb.level_ms(),
            stall_ms: stall,
        });
    }
    pb.play_for(pb.level_ms());
    let n = movie.len();
    let sabre_total_ms = startup_ms + pb.played_ms + pb.stalled_ms;
    let per_segment = seg / sabre_total_ms.max(1e-9);
    let played_bitrate_sum: f64 = steps.iter().map(|s| b[s.quality]).sum();
    let sabre = SabreMetrics {
        time_average_played_bitrate: played_bitrate_sum * per_segment,
        rebuffer_ratio: pb.stalled_ms / sabre_total_ms.max(1e-9),
        time_average_bitrate_change: change_kbps * per_segment,
        total_play_time: sabre_total_ms / 1000.0,
    };
    let session = Session {
        id,
        trace: Some(trace.name.clone()),
        startup_s: startup_ms / 1000.0,
        never_started: false,
        rebuffer_count: pb.stalls,
        rebuffer_s: pb.stalled_ms / 1000.0,
        rebuffer_ratio: pb.rebuffer_ratio(),
        avg_bitrate_kbps: pb.avg_bitrate_kbps(),
        switches,
        bitrate_change_kbps: if n > 1 {
            change_kbps / (n - 1) as f64
        } else {
            0.0
        },
        latency_s: None,
        qoe_lin: qoe,
        sabre: Some(sabre),
        error: None,
    };
    (session, steps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abr::{Bba, Fixed};

    fn movie() -> Movie {
        // Two rungs (1000 and 2000 kbit/s), 4 segments of 2 s at exactly their nominal size.
        Movie {
            segment_ms: 2000.0,
            bitrates_kbps: vec![1000.0, 2000.0],
            sizes_bits: vec![vec![2_000_000.0, 4_000_000.0]; 4],
        }
    }

    /// A hand-computed session: 1000 kbit/s, 100 ms latency, fixed top rung (2000 kbit/s).
    /// Each 4 Mbit segment takes 100 + 4000 = 4100 ms.
    /// - seg 0: startup 4.1 s, buffer 2 s.
    /// - seg 1: 4.1 s download: plays 2 s, stalls 2.1 s (stall #1); buffer 2 s.
    /// - seg 2, seg 3: the same. Then 2 s played out.
    ///
    /// Played 8 s, stalled 6.3 s in 3 stalls; ratio 6.3/14.3; bitrate 2000; no switches;
    /// QoE_lin = 4·2 − 4.3·6.3 = −19.09.
    #[test]
    fn reproduces_a_hand_computed_session() {
        let t = Trace::parse(
            "t",
            r#"[{"duration_ms": 60000, "bandwidth_kbps": 1000, "latency_ms": 100}]"#,
        )
        .unwrap();
        let (s, steps) = run(0, &movie(), &t, &mut Fixed(1), Settings::default());
        assert_eq!(s.startup_s, 4.1);
        assert_eq!(s.rebuffer_count, 3);
        assert!((s.rebuffer_s - 6.3).abs() < 1e-9, "{}", s.rebuffer_s);
        assert!((s.rebuffer_ratio - 6.3 / 14.3).abs() < 1e-12);
        assert_eq!(s.avg_bitrate_kbps, 2000.0);
        assert_eq!(s.switches, 0);
        assert!(
            (s.qoe_lin - (8.0 - 4.3 * 6.3)).abs() < 1e-9,
            "{}",
            s.qoe_lin
        );
        assert_eq!(
            steps.iter().map(|x| x.at_ms).collect::<Vec<_>>(),
            vec![0.0, 4100.0, 8200.0, 12300.0]
        );
        // Stall #1: seg 1 arrives at 8.2 s after the 2 s buffer ran out at 6.1 s.
        let spans = stall_spans(&steps);
        assert_eq!(spans.len(), 3);
        assert!(
            (spans[0].0 - 6100.0).abs() < 1e-9 && (spans[0].1 - 8200.0).abs() < 1e-9,
            "{spans:?}"
        );
    }

    /// Every controller ends at the top rung on a constant 100 Mbit/s trace (BOLA used to
    /// stay below it: its buffer thresholds were out of the player's reach).
    #[test]
    fn every_controller_reaches_the_top_with_plenty_of_bandwidth() {
        let t = Trace::parse(
            "t",
            r#"[{"duration_ms": 600000, "bandwidth_kbps": 100000, "latency_ms": 20}]"#,
        )
        .unwrap();
        let m = Movie {
            segment_ms: 4000.0,
            bitrates_kbps: vec![300.0, 750.0, 1200.0, 1850.0, 2850.0, 4300.0],
            sizes_bits: vec![vec![1.2e6, 3.0e6, 4.8e6, 7.4e6, 11.4e6, 17.2e6]; 48],
        };
        for name in ["throughput", "bba", "bola", "mpc"] {
            let mut abr = crate::abr::by_name(name).unwrap();
            let (s, steps) = run(0, &m, &t, abr.as_mut(), Settings::default());
            assert_eq!(steps.last().unwrap().quality, 5, "{name}: {steps:?}");
            assert!(
                s.avg_bitrate_kbps > 3500.0,
                "{name}: {}",
                s.avg_bitrate_kbps
            );
        }
    }

    /// With plenty of bandwidth the buffer fills to its cap and the player waits; nothing stalls.
    #[test]
    fn full_buffer_waits_and_never_stalls() {
        let t = Trace::parse(
            "t",
            r#"[{"duration_ms": 1000, "bandwidth_kbps": 100000, "latency_ms": 0}]"#,
        )
        .unwrap();
        let m = Movie {
            segment_ms: 2000.0,
            bitrates_kbps: vec![1000.0, 2000.0],
            sizes_bits: vec![vec![2e6, 4e6]; 30],
        };
        let (s, steps) = run(0, &m, &t, &mut Bba::default(), Settings::default());
        assert_eq!(s.rebuffer_count, 0);
        assert!(steps.iter().all(|x| x.buffer_ms <= 25_000.0 + 1e-9));
        // BBA reaches the top once the buffer passes reservoir + cushion (15 s) and stays.
        assert_eq!(steps.last().unwrap().quality, 1);
        assert!(s.switches >= 1);
    }
}
