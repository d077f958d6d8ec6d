//! What a run leaves behind: the terminal QoE table, the per-session CSV, and the plots, in
//! one shape for the trace, run and demo commands.

use std::fmt::Write as _;

use crate::plot;
use crate::qoe::{Aggregate, Report};

/// The table's header line.
pub fn table_header() -> String {
    format!(
        "{:<11} {:>8} {:>12} {:>10} {:>11} {:>9} {:>10} {:>10} {:>9}",
        "abr",
        "sessions",
        "bitrate kbps",
        "rebuffer %",
        "rebuffer s",
        "switches",
        "startup s",
        "latency s",
        "QoE_lin"
    )
}

/// One controller's row: means, with p95 of rebuffer ratio and startup in brackets.
pub fn table_row(name: &str, sessions: usize, a: &Aggregate) -> String {
    let latency = a
        .latency_s
        .map(|l| format!("{:.1}", l.mean))
        .unwrap_or_else(|| "-".into());
    format!(
        "{:<11} {:>8} {:>12.0} {:>10.2} {:>11.2} {:>9.1} {:>10.2} {:>10} {:>9.1}",
        name,
        sessions,
        a.avg_bitrate_kbps.mean,
        a.rebuffer_ratio.mean * 100.0,
        a.rebuffer_s.mean,
        a.switches.mean,
        a.startup_s.mean,
        latency,
        a.qoe_lin.mean
    )
}

/// Per-session CSV of every report.
pub fn csv(reports: &[Report]) -> String {
    let mut text = String::from(
        "abr,id,trace,startup_s,rebuffer_count,rebuffer_s,rebuffer_ratio,avg_bitrate_kbps,switches,bitrate_change_kbps,latency_s,qoe_lin\n",
    );
    for r in reports {
        for s in &r.sessions {
            let _ = writeln!(
                text,
                "{},{},{},{:.3},{},{:.3},{:.5},{:.1},{},{:.1},{},{:.3}",
                r.abr,
                s.id,
                s.trace.as_deref().unwrap_or("").replace(',', ";"),
                s.startup_s,
                s.rebuffer_count,
                s.rebuffer_s,
                s.rebuffer_ratio,
                s.avg_bitrate_kbps,
                s.switches,
                s.bitrate_change_kbps,
                s.latency_s.map(|l| format!("{l:.3}")).unwrap_or_default(),
                s.qoe_lin
            );
        }
    }
    text
}

/// The distribution charts of a set of reports: (file name, SVG).
pub fn distribution_plots(reports: &[Report]) -> Vec<(&'static str, String)> {
    let rebuf: Vec<(String, Vec<f64>)> = reports
        .iter()
        .map(|r| {
            (
                r.abr.clone(),
                r.sessions
                    .iter()
                    .map(|s| s.rebuffer_ratio * 100.0)
                    .collect(),
            )
        })
        .collect();
    let startup: Vec<(String, Vec<f64>)> = reports
        .iter()
        .map(|r| {
            (
                r.abr.clone(),
                r.sessions.iter().map(|s| s.startup_s).collect(),
            )
        })
        .collect();
    let mut out = vec![
        (
            "rebuffer_cdf.svg",
            plot::cdf(
                "Rebuffer ratio, CDF over sessions",
                "rebuffer ratio (%)",
                &rebuf,
            ),
        ),
        (
            "startup_cdf.svg",
            plot::cdf("Startup time, CDF over sessions", "startup (s)", &startup),
        ),
    ];
    if let [r] = reports {
        let v: Vec<f64> = r.sessions.iter().map(|s| s.startup_s).collect();
        out.push((
            "startup_hist.svg",
            plot::histogram("Startup time", "startup (s)", &v, 30),
        ));
    }
    out
}
