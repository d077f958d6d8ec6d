//! The run's figures, from the nodes' counters and the players' merged report, and the
//! verdict against the scenario's `[expect]` ranges.

use std::collections::BTreeMap;

use player_sim::qoe::Report;
use serde::Serialize;

use crate::prom::{Growth, Sample};
use crate::scenario::Role;

/// Every figure of a run, by name (see `scenario::FIGURES`).
pub fn compute(
    g: &Growth,
    role_of: impl Fn(&str) -> Option<Role>,
    players: Option<&Report>,
) -> BTreeMap<String, f64> {
    let role_of = &role_of;
    let is = |r: Role| move |n: &str| role_of(n) == Some(r);
    let mut f = BTreeMap::new();
    let seg = |s: &Sample| s.label("kind") == "segment";
    let origin_segs = g.sum("origin_http_requests_total", is(Role::Origin), seg);
    // Every origin publishes the same numbering; the distinct segments are one origin's
    // (the one that published most: one may have been down part of the run).
    let mut published = 0.0f64;
    for o in g.nodes() {
        if role_of(&o) == Some(Role::Origin) {
            published =
                published.max(g.sum("origin_segments_published_total", |n| n == o, |_| true));
        }
    }
    f.insert("origin_segment_requests".into(), origin_segs);
    f.insert("segments_published".into(), published);
    f.insert(
        "origin_fetches_per_segment".into(),
        if published > 0.0 {
            origin_segs / published
        } else {
            0.0
        },
    );
    for (name, role) in [
        ("edge_hit_ratio", Role::Edge),
        ("shield_hit_ratio", Role::Shield),
    ] {
        let served =
            |s: &Sample| matches!(s.label("cache"), "hit" | "stale" | "miss" | "coalesced");
        let hits = |s: &Sample| matches!(s.label("cache"), "hit" | "stale");
        let all = g.sum("edge_requests_total", is(role), served);
        if all > 0.0 {
            f.insert(
                name.into(),
                g.sum("edge_requests_total", is(role), hits) / all,
            );
        }
    }
    f.insert(
        "edge_errors".into(),
        g.sum("edge_requests_total", is(Role::Edge), |s| {
            s.label("status").starts_with('5')
        }),
    );
    f.insert(
        "edge_segment_upstream_waits".into(),
        g.sum("edge_requests_total", is(Role::Edge), |s| {
            seg(s) && matches!(s.label("cache"), "miss" | "coalesced")
        }),
    );
    if let Some(p99) = g.quantile("edge_request_duration_seconds", 0.99, is(Role::Edge), seg) {
        f.insert("edge_segment_ttfb_p99_ms".into(), p99 * 1000.0);
    }
    let prefetched = g.sum("edge_prefetched_total", is(Role::Edge), |_| true);
    let used = g.sum("edge_prefetched_used_total", is(Role::Edge), |_| true);
    f.insert("prefetched".into(), prefetched);
    if prefetched > 0.0 {
        f.insert("prefetch_used_ratio".into(), used / prefetched);
    }
    if let Some(r) = players {
        let a = &r.aggregate;
        f.insert("players".into(), r.players as f64);
        f.insert("players_failed".into(), r.failed as f64);
        f.insert("rebuffer_ratio_mean".into(), a.rebuffer_ratio.mean);
        f.insert("rebuffer_count_mean".into(), a.rebuffer_count.mean);
        f.insert("startup_p95_s".into(), a.startup_s.p95);
        f.insert("bitrate_mean_kbps".into(), a.avg_bitrate_kbps.mean);
    }
    f
}

/// Rates over the steady window (`window` grew over `secs` seconds, every player active)
/// and the capacity model's predictions for them (`model`), with measured ÷ predicted.
pub fn steady_rates(
    window: &Growth,
    secs: f64,
    role_of: impl Fn(&str) -> Option<Role>,
    players: Option<&Report>,
    segment_s: f64,
    shields: usize,
    origins: usize,
) -> BTreeMap<String, f64> {
    let mut f = BTreeMap::new();
    if secs <= 0.0 {
        return f;
    }
    let role_of = &role_of;
    let is = |r: Role| move |n: &str| role_of(n) == Some(r);
    let egress = window.sum("edge_sent_bytes_total", is(Role::Edge), |_| true) * 8.0 / secs / 1e6;
    let origin_rps = window.sum("origin_http_requests_total", is(Role::Origin), |_| true) / secs;
    let shield_rps = window.sum("edge_requests_total", is(Role::Shield), |_| true) / secs;
    let edge_cpu = window.sum("process_cpu_seconds_total", is(Role::Edge), |_| true) / secs;
    let edges = window
        .nodes()
        .iter()
        .filter(|n| role_of(n) == Some(Role::Edge))
        .count();
    f.insert("edge_egress_mbps".into(), egress);
    f.insert("origin_rps".into(), origin_rps);
    f.insert("shield_rps".into(), shield_rps);
    if edges > 0 {
        f.insert("edge_cpu_cores_mean".into(), edge_cpu / edges as f64);
    }
    let renditions = window
        .labels_of("origin_segments_published_total", "rendition")
        .len() as f64;
    if let Some(r) = players
        && renditions > 0.0
    {
        if edge_cpu > 0.0 {
            f.insert("players_per_edge_core".into(), r.players as f64 / edge_cpu);
        }
        let p = crate::model::predict(&crate::model::Inputs {
            viewers: r.players as f64,
            bitrate_kbps: r.aggregate.avg_bitrate_kbps.mean,
            segment_s,
            playlist_bytes: 800.0,
            renditions,
            shields: shields as f64,
            origins: origins as f64,
            health_per_s: 2.0,
        });
        f.insert("model_edge_egress_mbps".into(), p.edge_egress_mbps);
        f.insert("model_origin_rps".into(), p.origin_rps);
        f.insert("model_egress_ratio".into(), egress / p.edge_egress_mbps);
        f.insert("model_origin_ratio".into(), origin_rps / p.origin_rps);
    }
    f
}

/// One `[expect]` range and whether it held.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Held {
    /// Lowest value allowed.
    pub min: f64,
    /// Highest value allowed.
    pub max: f64,
    /// Whether the figure was measured and fell inside.
    pub held: bool,
}

/// The run's `summary.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Scenario name.
    pub scenario: String,
    /// Whether every range held.
    pub held: bool,
    /// Every figure measured.
    pub figures: BTreeMap<String, f64>,
    /// Each expected range and its verdict (a figure not measured does not hold).
    pub expect: BTreeMap<String, Held>,
}

/// Judges `figures` against `expect`.
pub fn judge(
    scenario: &str,
    figures: BTreeMap<String, f64>,
    expect: &BTreeMap<String, [f64; 2]>,
) -> Summary {
    let expect: BTreeMap<String, Held> = expect
        .iter()
        .map(|(k, [lo, hi])| {
            let held = figures.get(k).is_some_and(|v| (*lo..=*hi).contains(v));
            (
                k.clone(),
                Held {
                    min: *lo,
                    max: *hi,
                    held,
                },
            )
        })
        .collect();
    Summary {
        scenario: scenario.to_string(),
        held: expect.values().all(|h| h.held),
        figures,
        expect,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prom::parse;

    fn growth() -> Growth {
        let mut g = Growth::default();
        let origin = |req: u32, publ: u32| {
            parse(&format!(
                "origin_http_requests_total{{kind=\"segment\",status=\"200\"}} {req}\norigin_http_requests_total{{kind=\"media\",status=\"200\"}} {}\norigin_segments_published_total{{stream=\"demo\",rendition=\"360p\"}} {publ}\n",
                req * 10
            ))
        };
        let edge = |hit: u32, miss: u32| {
            parse(&format!(
                "edge_requests_total{{kind=\"segment\",cache=\"hit\",status=\"200\"}} {hit}\nedge_requests_total{{kind=\"segment\",cache=\"miss\",status=\"200\"}} {miss}\nedge_requests_total{{kind=\"other\",cache=\"bypass\",status=\"200\"}} {}\nedge_requests_total{{kind=\"segment\",cache=\"miss\",status=\"502\"}} 0\n",
                hit + miss
            ))
        };
        g.observe("origin-a", &origin(0, 100));
        g.observe("origin-b", &origin(0, 100));
        g.observe("edge-1", &edge(0, 0));
        g.observe("origin-a", &origin(30, 120));
        g.observe("origin-b", &origin(6, 110));
        g.observe("edge-1", &edge(90, 10));
        g
    }

    fn role(n: &str) -> Option<Role> {
        match n {
            "origin-a" | "origin-b" => Some(Role::Origin),
            "edge-1" => Some(Role::Edge),
            _ => None,
        }
    }

    #[test]
    fn hand_computed_figures() {
        let f = compute(&growth(), role, None);
        assert_eq!(f["origin_segment_requests"], 36.0);
        assert_eq!(f["segments_published"], 20.0);
        assert_eq!(f["origin_fetches_per_segment"], 1.8);
        assert_eq!(f["edge_hit_ratio"], 0.9);
        assert_eq!(f["edge_errors"], 0.0);
        assert!(!f.contains_key("shield_hit_ratio"));
    }

    #[test]
    fn a_range_holds_only_when_measured_and_inside() {
        let f = compute(&growth(), role, None);
        let mut e = BTreeMap::new();
        e.insert("edge_hit_ratio".to_string(), [0.85, 1.0]);
        assert!(judge("s", f.clone(), &e).held);
        e.insert("origin_fetches_per_segment".to_string(), [0.9, 1.5]);
        let s = judge("s", f.clone(), &e);
        assert!(!s.held && !s.expect["origin_fetches_per_segment"].held);
        let mut only = BTreeMap::new();
        only.insert("startup_p95_s".to_string(), [0.0, 9.0]);
        assert!(
            !judge("s", f, &only).held,
            "a figure not measured does not hold"
        );
    }
}
