//! Quality of experience per session and aggregated over sessions.

use serde::Serialize;

/// Weight of one second of rebuffering in QoE_lin (Pensieve).
pub const REBUF_PENALTY: f64 = 4.3;

/// QoE of one session.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Session {
    /// Session id.
    pub id: usize,
    /// The trace it ran on (offline mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
    /// From the first request to the start of playback, s.
    pub startup_s: f64,
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
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
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
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
            startup_s: f(|s| s.startup_s),
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

/// The JSON report (schema in docs/report-schema.md).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `live` or `trace`.
    pub mode: &'static str,
    /// Controller name.
    pub abr: String,
    /// Sessions (players).
    pub players: usize,
    /// Aggregates.
    pub aggregate: Aggregate,
    /// Every session.
    pub sessions: Vec<Session>,
    /// Origin offload seen at the edge during a live run, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edge: Option<Offload>,
}

/// Requests the edge answered vs fetches it sent upstream (the report's `edge`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Offload {
    /// Client requests the edge answered.
    pub requests: u64,
    /// Fetches the edge sent to its upstream.
    pub upstream_fetches: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let s = Stats::of((1..=20).map(f64::from).collect());
        assert_eq!((s.mean, s.p50, s.p95), (10.5, 10.0, 19.0));
        assert_eq!(Stats::of(vec![]), Stats::default());
    }
}
