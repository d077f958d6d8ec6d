//! Offline, trace-driven sessions on a virtual clock: the session core that live mode uses
//! (same controllers, buffer and QoE rules), driven through Sabre's network model.
//! Deterministic.
//!
//! A session downloads segment 0 (startup), then for each next segment waits while the buffer
//! is too full to hold it, asks the controller, downloads while playing, and stalls when the
//! buffer runs dry; finally it plays out the buffer. With `abandon`, downloads advance in
//! steps of the abandon timer so the controller's rule can abort them.

use crate::abr::Abr;
use crate::movie::Movie;
use crate::network::Network;
use crate::qoe::Session;
use crate::session::{Core, Downloading, Ladder, Next, Rules, Segment};
use crate::trace::Trace;

/// Player settings for offline sessions.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Largest buffer, ms (Sabre's default: 25 s).
    pub buffer_max_ms: f64,
    /// Run the controller's abandon rule during downloads (Sabre does not by default).
    pub abandon: bool,
    /// The rung a master playlist would list first (hls.js starts there); 0: ascending.
    pub first_listed: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            buffer_max_ms: 25_000.0,
            abandon: false,
            first_listed: 0,
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

/// A finished offline session.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Its QoE.
    pub session: Session,
    /// Every segment downloaded.
    pub steps: Vec<Step>,
    /// Its stalls as (start, end) ms.
    pub stalls: Vec<(f64, f64)>,
}

/// Runs one session of `movie` over `trace` with `abr`.
pub fn run(
    id: usize,
    movie: &Movie,
    trace: &Trace,
    abr: Box<dyn Abr>,
    settings: Settings,
) -> Outcome {
    let rules = Rules {
        buffer_max_ms: settings.buffer_max_ms,
        // Sabre's player: plays once the first segment is in, resumes as soon as any is.
        start_threshold_ms: 0.0,
        resume_threshold_ms: 0.0,
        resume_growth_max_ms: 0.0,
        abandon: settings.abandon,
        max_retries: 0,
    };
    let ladder = Ladder {
        first_listed: settings
            .first_listed
            .min(movie.bitrates_kbps.len().saturating_sub(1)),
        ..Ladder::flat(movie.bitrates_kbps.clone())
    };
    let mut core = match Core::new(abr, rules, ladder) {
        Ok(c) => c.recording(true),
        // Movie::parse refuses an empty ladder; an empty session if one comes anyway.
        Err(e) => {
            return Outcome {
                session: Session {
                    id,
                    trace: Some(trace.name.clone()),
                    error: Some(e.to_string()),
                    ..Session::default()
                },
                steps: Vec::new(),
                stalls: Vec::new(),
            };
        }
    };
    let mut net = Network::new(trace);
    for i in 0..movie.len() {
        let seg = Segment {
            duration_ms: movie.segment_ms,
            pdt_ms: None,
            upcoming_bits: &movie.sizes_bits[i..],
            live: false,
        };
        loop {
            let q = match core.offer(&seg) {
                Next::Wait(ms) => {
                    core.elapse(ms);
                    net.delay(ms);
                    continue;
                }
                Next::Refetch(q) => {
                    let _ = core.start();
                    let bits = movie.sizes_bits[i.saturating_sub(1)][q];
                    download(&mut core, &mut net, bits);
                    continue;
                }
                Next::Fetch(q) => q,
            };
            let bits = movie.sizes_bits[i][q];
            // `start` cannot fail right after `Fetch`.
            let _ = core.start();
            if download(&mut core, &mut net, bits) {
                break;
            }
        }
    }
    core.play_out();
    let (session, steps, stalls) = core.finish(id, Some(trace.name.clone()), true, None);
    Outcome {
        session,
        steps,
        stalls,
    }
}

/// Downloads `bits` through `net` for the core's download in progress; false when the core
/// aborted it (the segment is offered again).
fn download(core: &mut Core, net: &mut Network<'_>, bits: f64) -> bool {
    let Some(mut check) = core.next_check_ms() else {
        // No abandon rule: the whole download in one step (Sabre's arithmetic, exactly).
        let d = net.download(bits);
        core.elapse(d.total_ms());
        let _ = core.done(bits, d.latency_ms, d.transfer_ms, None);
        return true;
    };
    let latency_ms = net.latency();
    core.elapse(latency_ms);
    let mut elapsed = latency_ms;
    let (mut loaded, mut transfer_ms) = (0.0, 0.0);
    while loaded < bits {
        // Up to the timer's next wish (at least a microsecond of progress per step).
        let window = (check - elapsed).max(1e-3);
        let take = net.capacity_bits(window).min(bits - loaded);
        let t = net.transfer(take);
        core.elapse(t);
        elapsed += t;
        transfer_ms += t;
        loaded += take;
        if loaded >= bits {
            break;
        }
        if let Ok(Downloading::Abort(_)) = core.progress(loaded, Some(latency_ms), Some(bits)) {
            return false;
        }
        match core.next_check_ms() {
            Some(c) => check = c,
            None => {
                let t = net.transfer(bits - loaded);
                core.elapse(t);
                transfer_ms += t;
                loaded = bits;
            }
        }
    }
    let _ = core.done(bits, latency_ms, transfer_ms, None);
    true
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
        let o = run(0, &movie(), &t, Box::new(Fixed(1)), Settings::default());
        let (s, steps) = (o.session, o.steps);
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
        let spans = o.stalls;
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
            let abr = crate::abr::by_name(name).unwrap();
            let o = run(0, &m, &t, abr, Settings::default());
            let (s, steps) = (o.session, o.steps);
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
        let o = run(0, &m, &t, Box::new(Bba::default()), Settings::default());
        let (s, steps) = (o.session, o.steps);
        assert_eq!(s.rebuffer_count, 0);
        assert!(steps.iter().all(|x| x.buffer_ms <= 25_000.0 + 1e-9));
        // BBA reaches the top once the buffer passes reservoir + cushion (15 s) and stays.
        assert_eq!(steps.last().unwrap().quality, 1);
        assert!(s.switches >= 1);
    }
}
