//! Quality of experience per session and aggregated over sessions.

use serde::{Deserialize, Serialize};

use crate::histogram::LogHistogram;

/// Weight of one second of rebuffering in QoE_lin (Pensieve).
pub const REBUF_PENALTY: f64 = 4.3;

/// QoE of one session.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// Session id.
    pub id: usize,
    /// The trace it ran on (offline mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
    /// From the first request to the start of playback, s (for a session that never
    /// started, to its end: left out of the startup figures).
    pub startup_s: f64,
    /// Playback never started (the player left or failed first).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub never_started: bool,
    /// Stalls after playback started.
    pub rebuffer_count: u32,
    /// Time stalled after playback started, s.
    pub rebuffer_s: f64,
    /// rebuffer_s / (played time + rebuffer_s).
    pub rebuffer_ratio: f64,
    /// Bitrate of what was played, weighted by play time, kbit/s.
    pub avg_bitrate_kbps: f64,
    /// Quality changes between consecutive played segments.
    pub switches: u32,
    /// Mean |Δbitrate| between consecutive segments, kbit/s per segment (Sabre's "bitrate change").
    pub bitrate_change_kbps: f64,
    /// Live latency behind the live edge, s (live mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_s: Option<f64>,
    /// Pensieve's QoE_lin: Σ Mbps − 4.3·Σ rebuffer_s − Σ|ΔMbps| (startup not counted).
    pub qoe_lin: f64,
    /// The same session in Sabre's definitions (offline mode), for side-by-side comparison.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sabre: Option<SabreMetrics>,
    /// Why a live session ended early (it failed), if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Sabre's reporting definitions: its "total play time" is the first download plus all time
/// after it (playing or stalled), and its time averages divide per-segment sums by that time
/// in segments. So startup and stalls lower its average bitrate, unlike `avg_bitrate_kbps`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct SabreMetrics {
    /// "time average played bitrate", kbit/s.
    pub time_average_played_bitrate: f64,
    /// "rebuffer ratio".
    pub rebuffer_ratio: f64,
    /// "time average bitrate change", kbit/s per segment of play time.
    pub time_average_bitrate_change: f64,
    /// "total play time", s.
    pub total_play_time: f64,
}

/// Mean and percentiles of one metric.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
}

impl Stats {
    /// Stats of `v` (nearest-rank percentiles; zeros when empty).
    pub fn of(mut v: Vec<f64>) -> Self {
        if v.is_empty() {
            return Self::default();
        }
        v.sort_by(f64::total_cmp);
        let pick = |p: f64| v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1];
        Self {
            mean: v.iter().sum::<f64>() / v.len() as f64,
            p50: pick(0.5),
            p95: pick(0.95),
        }
    }
}

/// Aggregate QoE over sessions (the report's `aggregate`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Aggregate {
    /// Startup time, s.
    pub startup_s: Stats,
    /// Stall count.
    pub rebuffer_count: Stats,
    /// Stall time, s.
    pub rebuffer_s: Stats,
    /// Stall ratio.
    pub rebuffer_ratio: Stats,
    /// Played bitrate, kbit/s.
    pub avg_bitrate_kbps: Stats,
    /// Switches.
    pub switches: Stats,
    /// Live latency, s (live mode only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_s: Option<Stats>,
    /// QoE_lin.
    pub qoe_lin: Stats,
}

impl Aggregate {
    /// Aggregates `sessions`.
    pub fn of(sessions: &[Session]) -> Self {
        let f = |g: fn(&Session) -> f64| Stats::of(sessions.iter().map(g).collect());
        let lat: Vec<f64> = sessions.iter().filter_map(|s| s.latency_s).collect();
        Self {
            startup_s: Stats::of(started(sessions).collect()),
            rebuffer_count: f(|s| f64::from(s.rebuffer_count)),
            rebuffer_s: f(|s| s.rebuffer_s),
            rebuffer_ratio: f(|s| s.rebuffer_ratio),
            avg_bitrate_kbps: f(|s| s.avg_bitrate_kbps),
            switches: f(|s| f64::from(s.switches)),
            latency_s: (!lat.is_empty()).then(|| Stats::of(lat)),
            qoe_lin: f(|s| s.qoe_lin),
        }
    }
}

/// The startup times of the sessions that started playing.
fn started(sessions: &[Session]) -> impl Iterator<Item = f64> + '_ {
    sessions
        .iter()
        .filter(|s| !s.never_started)
        .map(|s| s.startup_s)
}

/// The metrics of [`Aggregate`] as mergeable histograms (the report's `histograms`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Histograms {
    /// Startup time, s.
    pub startup_s: LogHistogram,
    /// Stall count.
    pub rebuffer_count: LogHistogram,
    /// Stall time, s.
    pub rebuffer_s: LogHistogram,
    /// Stall ratio.
    pub rebuffer_ratio: LogHistogram,
    /// Played bitrate, kbit/s.
    pub avg_bitrate_kbps: LogHistogram,
    /// Switches.
    pub switches: LogHistogram,
    /// Live latency, s (sessions that measured it).
    pub latency_s: LogHistogram,
    /// QoE_lin.
    pub qoe_lin: LogHistogram,
}

impl Histograms {
    /// The histograms of `sessions`.
    pub fn of(sessions: &[Session]) -> Self {
        let h = |g: fn(&Session) -> f64| LogHistogram::of(sessions.iter().map(g));
        Self {
            startup_s: LogHistogram::of(started(sessions)),
            rebuffer_count: h(|s| f64::from(s.rebuffer_count)),
            rebuffer_s: h(|s| s.rebuffer_s),
            rebuffer_ratio: h(|s| s.rebuffer_ratio),
            avg_bitrate_kbps: h(|s| s.avg_bitrate_kbps),
            switches: h(|s| f64::from(s.switches)),
            latency_s: LogHistogram::of(sessions.iter().filter_map(|s| s.latency_s)),
            qoe_lin: h(|s| s.qoe_lin),
        }
    }

    fn merge(&mut self, o: &Self) {
        self.startup_s.merge(&o.startup_s);
        self.rebuffer_count.merge(&o.rebuffer_count);
        self.rebuffer_s.merge(&o.rebuffer_s);
        self.rebuffer_ratio.merge(&o.rebuffer_ratio);
        self.avg_bitrate_kbps.merge(&o.avg_bitrate_kbps);
        self.switches.merge(&o.switches);
        self.latency_s.merge(&o.latency_s);
        self.qoe_lin.merge(&o.qoe_lin);
    }

    /// The aggregate they describe: means exact, percentiles within
    /// [`crate::histogram::RELATIVE_ERROR`].
    pub fn aggregate(&self) -> Aggregate {
        let st = |h: &LogHistogram| Stats {
            mean: h.mean(),
            p50: h.quantile(0.5),
            p95: h.quantile(0.95),
        };
        Aggregate {
            startup_s: st(&self.startup_s),
            rebuffer_count: st(&self.rebuffer_count),
            rebuffer_s: st(&self.rebuffer_s),
            rebuffer_ratio: st(&self.rebuffer_ratio),
            avg_bitrate_kbps: st(&self.avg_bitrate_kbps),
            switches: st(&self.switches),
            latency_s: (self.latency_s.count > 0).then(|| st(&self.latency_s)),
            qoe_lin: st(&self.qoe_lin),
        }
    }
}

/// The JSON report (schema in docs/report-schema.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// `live` or `trace`.
    pub mode: String,
    /// Controller name (`mixed` in a merge of different ones).
    pub abr: String,
    /// Sessions (players).
    pub players: usize,
    /// Sessions that failed (ended with an error).
    #[serde(default)]
    pub failed: usize,
    /// Sessions whose player left before playback started (not failed).
    #[serde(default)]
    pub left_before_start: usize,
    /// Aggregates.
    pub aggregate: Aggregate,
    /// The same metrics as mergeable histograms.
    #[serde(default)]
    pub histograms: Histograms,
    /// The aggregate's percentiles come from the histograms (a merge of reports without
    /// their sessions), not from every session.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub percentiles_from_histograms: bool,
    /// Every session (left out of a merge made with `--no-sessions`).
    #[serde(default)]
    pub sessions: Vec<Session>,
    /// Origin offload seen at the edge during a live run, when known (summed in a merge).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub edge: Option<Offload>,
}

impl Report {
    /// The report of `sessions`.
    pub fn new(mode: &str, abr: &str, sessions: Vec<Session>, edge: Option<Offload>) -> Self {
        Self {
            mode: mode.into(),
            abr: abr.into(),
            players: sessions.len(),
            failed: sessions.iter().filter(|s| s.error.is_some()).count(),
            left_before_start: sessions
                .iter()
                .filter(|s| s.never_started && s.error.is_none())
                .count(),
            aggregate: Aggregate::of(&sessions),
            histograms: Histograms::of(&sessions),
            percentiles_from_histograms: false,
            sessions,
            edge,
        }
    }
}

/// Why reports cannot be merged.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MergeError {
    /// Nothing to merge.
    #[error("no reports to merge")]
    Empty,
    /// Live and trace reports mixed.
    #[error("report {0} is a {1} report, the first is {2}: only reports of one mode merge")]
    Mode(usize, String, String),
    /// A report's histograms do not account for its players (written by an older
    /// player-sim, or edited).
    #[error("report {0} has {1} players but histograms of {2}: it cannot be merged exactly")]
    NoHistograms(usize, usize, u64),
}

/// Combines the reports of many player-sim processes into one: players, failures and edge
/// counters summed, histograms merged. The aggregate is exact (from every session) when
/// every report carries its sessions, else from the merged histograms (means exact,
/// percentiles within [`crate::histogram::RELATIVE_ERROR`]). `keep_sessions: false` leaves
/// the sessions out of the result (a million-viewer run's file stays small).
pub fn merge(reports: Vec<Report>, keep_sessions: bool) -> Result<Report, MergeError> {
    let mut it = reports.into_iter().enumerate();
    let (_, mut out) = it.next().ok_or(MergeError::Empty)?;
    let complete = |i: usize, r: &Report| {
        // Every session is in the stall-count histogram (not all in startup's).
        let n = r.histograms.rebuffer_count.count;
        if n == r.players as u64 {
            Ok(r.sessions.len() == r.players)
        } else {
            Err(MergeError::NoHistograms(i, r.players, n))
        }
    };
    let mut all_sessions = complete(0, &out)?;
    for (i, r) in it {
        if r.mode != out.mode {
            return Err(MergeError::Mode(i, r.mode, out.mode));
        }
        all_sessions &= complete(i, &r)?;
        if r.abr != out.abr {
            out.abr = "mixed".into();
        }
        out.players = out.players.saturating_add(r.players);
        out.failed = out.failed.saturating_add(r.failed);
        out.left_before_start = out.left_before_start.saturating_add(r.left_before_start);
        out.histograms.merge(&r.histograms);
        out.edge = match (out.edge, r.edge) {
            (Some(a), Some(b)) => Some(Offload {
                requests: a.requests.saturating_add(b.requests),
                upstream_fetches: a.upstream_fetches.saturating_add(b.upstream_fetches),
            }),
            _ => None,
        };
        if all_sessions {
            // Ids renumbered so that they stay unique in the merged report.
            let base = out.sessions.len();
            out.sessions
                .extend(r.sessions.into_iter().enumerate().map(|(k, mut s)| {
                    s.id = base + k;
                    s
                }));
        }
    }
    out.aggregate = if all_sessions {
        Aggregate::of(&out.sessions)
    } else {
        out.histograms.aggregate()
    };
    out.percentiles_from_histograms = !all_sessions;
    if !all_sessions || !keep_sessions {
        out.sessions = Vec::new();
    }
    Ok(out)
}

/// Requests the edge answered vs fetches it sent upstream (the report's `edge`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Offload {
    /// Client requests the edge answered.
    pub requests: u64,
    /// Fetches the edge sent to its upstream.
    pub upstream_fetches: u64,
}

impl Offload {
    /// What the counters grew by since `start` (a restarted edge's counters fell: then
    /// what it counted since it started).
    pub fn since(&self, start: &Offload) -> Offload {
        let d = |now: u64, then: u64| if now >= then { now - then } else { now };
        Offload {
            requests: d(self.requests, start.requests),
            upstream_fetches: d(self.upstream_fetches, start.upstream_fetches),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(id: usize, startup: f64, rebuf: f64, kbps: f64) -> Session {
        Session {
            id,
            startup_s: startup,
            rebuffer_count: u32::from(rebuf > 0.0),
            rebuffer_s: rebuf,
            rebuffer_ratio: rebuf / 60.0,
            avg_bitrate_kbps: kbps,
            switches: (id % 4) as u32,
            latency_s: Some(6.0 + id as f64 / 100.0),
            qoe_lin: kbps / 100.0 - 4.3 * rebuf,
            ..Default::default()
        }
    }

    fn sessions(n: usize) -> Vec<Session> {
        (0..n)
            .map(|i| {
                session(
                    i,
                    0.3 + (i % 17) as f64 / 10.0,
                    if i % 5 == 0 { 1.5 } else { 0.0 },
                    400.0 + (i % 7) as f64 * 300.0,
                )
            })
            .collect()
    }

    #[test]
    fn a_merge_of_parts_with_sessions_is_the_whole_exactly() {
        let all = sessions(300);
        let whole = Report::new("live", "bola", all.clone(), None);
        let parts: Vec<Report> = all
            .chunks(70)
            .map(|c| {
                Report::new(
                    "live",
                    "bola",
                    c.to_vec(),
                    Some(Offload {
                        requests: 10,
                        upstream_fetches: 1,
                    }),
                )
            })
            .collect();
        let n = parts.len() as u64;
        let m = merge(parts, true).unwrap();
        assert_eq!(m.aggregate, whole.aggregate);
        assert_eq!((m.players, m.sessions.len(), m.failed), (300, 300, 0));
        assert!(m.sessions.iter().enumerate().all(|(i, s)| s.id == i));
        assert_eq!(
            m.edge,
            Some(Offload {
                requests: 10 * n,
                upstream_fetches: n
            })
        );
        assert_eq!(m.histograms.startup_s.count, 300);
        assert!(!m.percentiles_from_histograms);
    }

    #[test]
    fn a_merge_without_sessions_is_within_the_histogram_error() {
        let all = sessions(1000);
        let whole = Aggregate::of(&all);
        let parts: Vec<Report> = all
            .chunks(128)
            .map(|c| {
                let mut r = Report::new("live", "bola", c.to_vec(), None);
                r.sessions.clear(); // as written with --no-sessions
                r
            })
            .collect();
        let m = merge(parts, false).unwrap();
        assert!(m.sessions.is_empty() && m.percentiles_from_histograms);
        let close = |a: Stats, b: Stats| {
            let e =
                |x: f64, y: f64| (x - y).abs() <= y.abs() * crate::histogram::RELATIVE_ERROR + 1e-9;
            e(a.p50, b.p50)
                && e(a.p95, b.p95)
                && (a.mean - b.mean).abs() < 1e-9 * (1.0 + b.mean.abs())
        };
        let g = &m.aggregate;
        for (got, want) in [
            (g.startup_s, whole.startup_s),
            (g.rebuffer_s, whole.rebuffer_s),
            (g.rebuffer_ratio, whole.rebuffer_ratio),
            (g.avg_bitrate_kbps, whole.avg_bitrate_kbps),
            (g.switches, whole.switches),
            (g.qoe_lin, whole.qoe_lin),
            (g.latency_s.unwrap(), whole.latency_s.unwrap()),
        ] {
            assert!(close(got, want), "{got:?} vs {want:?}");
        }
    }

    #[test]
    fn merge_refusals_say_why() {
        assert_eq!(merge(vec![], true).unwrap_err(), MergeError::Empty);
        let live = Report::new("live", "bola", sessions(3), None);
        let trace = Report::new("trace", "bola", sessions(3), None);
        assert_eq!(
            merge(vec![live.clone(), trace], true).unwrap_err(),
            MergeError::Mode(1, "trace".into(), "live".into())
        );
        let mut old = live.clone();
        old.histograms = Histograms::default();
        assert_eq!(
            merge(vec![live, old], true).unwrap_err(),
            MergeError::NoHistograms(1, 3, 0)
        );
    }

    #[test]
    fn a_report_survives_json() {
        let r = Report::new(
            "live",
            "bola",
            sessions(20),
            Some(Offload {
                requests: 5,
                upstream_fetches: 2,
            }),
        );
        let back: Report = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(
            (back.aggregate, back.histograms, back.sessions),
            (r.aggregate, r.histograms, r.sessions)
        );
    }

    #[test]
    fn sessions_that_never_started_are_counted_apart_from_startup() {
        let mut all = sessions(10);
        all[3].never_started = true;
        all[3].startup_s = 99.0;
        all[4].never_started = true;
        all[4].startup_s = 77.0;
        all[4].error = Some("gone".into());
        let r = Report::new("live", "bola", all.clone(), None);
        assert_eq!((r.left_before_start, r.failed), (1, 1));
        assert!(
            r.aggregate.startup_s.p95 < 77.0,
            "{:?}",
            r.aggregate.startup_s
        );
        assert_eq!(r.histograms.startup_s.count, 8);
        let m = merge(vec![r.clone(), r], true).unwrap();
        assert_eq!((m.players, m.left_before_start, m.failed), (20, 2, 2));
    }

    #[test]
    fn offload_counts_only_the_run() {
        let start = Offload {
            requests: 1000,
            upstream_fetches: 40,
        };
        let end = Offload {
            requests: 1300,
            upstream_fetches: 43,
        };
        assert_eq!(
            end.since(&start),
            Offload {
                requests: 300,
                upstream_fetches: 3
            }
        );
        let restarted = Offload {
            requests: 50,
            upstream_fetches: 2,
        };
        assert_eq!(restarted.since(&start), restarted);
    }

    #[test]
    fn nearest_rank_percentiles() {
        let s = Stats::of((1..=20).map(f64::from).collect());
        assert_eq!((s.mean, s.p50, s.p95), (10.5, 10.0, 19.0));
        assert_eq!(Stats::of(vec![]), Stats::default());
    }
}
