//! SVG charts of a run: per-player timelines (bandwidth vs chosen bitrate vs buffer), the CDF
//! of rebuffer ratio, and the startup-time distribution. Plain SVG text: no fonts, no native
//! libraries, opens in any browser.

use std::fmt::Write as _;

use crate::offline::Step;
use crate::trace::Trace;

const W: f64 = 900.0;
const PANEL_H: f64 = 220.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 70.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 45.0;
const COLORS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
];

/// One player's timeline for [`timelines`].
pub struct Timeline<'a> {
    /// Title of the panel.
    pub title: String,
    /// Its bandwidth schedule.
    pub trace: &'a Trace,
    /// Its downloads.
    pub steps: &'a [Step],
    /// The ladder, kbit/s, by quality index.
    pub ladder_kbps: &'a [f64],
    /// Stalls as (start, end) ms, shaded.
    pub stalls: &'a [(f64, f64)],
}

impl Timeline<'_> {
    /// The plotted span: up to the end of the last download or stall, ms.
    fn duration_ms(&self) -> f64 {
        let downloads = self.steps.last().map_or(1.0, |s| s.at_ms + s.download_ms);
        let stalls = self.stalls.iter().map(|s| s.1).fold(0.0, f64::max);
        downloads.max(stalls)
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A "nice" axis maximum and tick step for values up to `max`.
fn nice(max: f64) -> (f64, f64) {
    let max = if max.is_finite() && max > 0.0 {
        max
    } else {
        1.0
    };
    let raw = max / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    ((max / step).ceil() * step, step)
}

fn header(out: &mut String, h: f64) {
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" viewBox="0 0 {W} {h}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/>"#
    );
}

/// Axes, grid and tick labels for a panel at `y0` with plot height `ph`; returns nothing, the
/// caller maps data with the same ranges.
#[allow(clippy::too_many_arguments)]
fn axes(
    out: &mut String,
    y0: f64,
    ph: f64,
    (xmax, xstep): (f64, f64),
    (ymax, ystep): (f64, f64),
    xlabel: &str,
    ylabel: &str,
    title: &str,
) {
    let pw = W - LEFT - RIGHT;
    let _ = write!(
        out,
        r#"<text x="{}" y="{}" font-size="14" font-weight="bold">{}</text>"#,
        LEFT,
        y0 - 12.0,
        esc(title)
    );
    let mut y = 0.0;
    while y <= ymax + 1e-9 {
        let py = y0 + ph - y / ymax * ph;
        let _ = write!(
            out,
            r##"<line x1="{LEFT}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#e5e5e5"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + pw,
            LEFT - 6.0,
            py + 4.0,
            fmt_num(y)
        );
        y += ystep;
    }
    let mut x = 0.0;
    while x <= xmax + 1e-9 {
        let px = LEFT + x / xmax * pw;
        let _ = write!(
            out,
            r##"<line x1="{px:.1}" y1="{y0}" x2="{px:.1}" y2="{:.1}" stroke="#f0f0f0"/><text x="{px:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            y0 + ph,
            y0 + ph + 16.0,
            fmt_num(x)
        );
        x += xstep;
    }
    let _ = write!(
        out,
        r##"<rect x="{LEFT}" y="{y0}" width="{pw}" height="{ph}" fill="none" stroke="#555"/><text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text><text transform="translate({:.1},{:.1}) rotate(-90)" text-anchor="middle">{}</text>"##,
        LEFT + pw / 2.0,
        y0 + ph + 34.0,
        esc(xlabel),
        LEFT - 50.0,
        y0 + ph / 2.0,
        esc(ylabel)
    );
}

fn fmt_num(v: f64) -> String {
    if v.fract().abs() < 1e-9 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}

fn polyline(out: &mut String, pts: &[(f64, f64)], color: &str, width: f64, dash: &str) {
    if pts.is_empty() {
        return;
    }
    let _ = write!(
        out,
        r#"<polyline fill="none" stroke="{color}" stroke-width="{width}""#
    );
    if !dash.is_empty() {
        let _ = write!(out, r#" stroke-dasharray="{dash}""#);
    }
    out.push_str(" points=\"");
    for (x, y) in pts {
        let _ = write!(out, "{x:.1},{y:.1} ");
    }
    out.push_str("\"/>");
}

fn legend(out: &mut String, x: f64, y: f64, items: &[(&str, &str)]) {
    let mut x = x;
    for (label, color) in items {
        let _ = write!(
            out,
            r#"<rect x="{x:.1}" y="{:.1}" width="14" height="4" fill="{color}"/><text x="{:.1}" y="{y:.1}">{}</text>"#,
            y - 5.0,
            x + 18.0,
            esc(label)
        );
        x += 30.0 + 7.0 * label.len() as f64;
    }
}

/// Bandwidth (schedule) vs chosen bitrate vs buffer over time, one panel per player.
pub fn timelines(players: &[Timeline<'_>]) -> String {
    let panel = PANEL_H + TOP + BOTTOM;
    let mut out = String::new();
    header(&mut out, panel * players.len().max(1) as f64);
    let pw = W - LEFT - RIGHT;
    for (n, p) in players.iter().enumerate() {
        let y0 = n as f64 * panel + TOP;
        let duration_ms = p.duration_ms();
        let xmax_s = duration_ms / 1000.0;
        let (xmax, xstep) = nice(xmax_s);
        // Bandwidth over the session (the trace loops).
        let mut bw = Vec::new();
        let mut t = 0.0;
        let mut i = 0;
        let mut peak: f64 = p.ladder_kbps.iter().copied().fold(0.0, f64::max);
        while t < duration_ms && !p.trace.periods.is_empty() {
            let per = p.trace.periods[i % p.trace.periods.len()];
            bw.push((t, per.bandwidth_kbps));
            t += per.duration_ms.max(1.0);
            bw.push((t.min(duration_ms), per.bandwidth_kbps));
            peak = peak.max(per.bandwidth_kbps);
            i += 1;
        }
        let (ymax, ystep) = nice(peak * 1.05);
        let buf_max = p
            .steps
            .iter()
            .map(|s| s.buffer_ms / 1000.0)
            .fold(1.0, f64::max);
        let (bmax, _) = nice(buf_max);
        axes(
            &mut out,
            y0,
            PANEL_H,
            (xmax, xstep),
            (ymax, ystep),
            "time (s)",
            "kbit/s",
            &p.title,
        );
        let map = |t_ms: f64, v: f64, vmax: f64| {
            (
                LEFT + t_ms / 1000.0 / xmax * pw,
                y0 + PANEL_H - v.min(vmax) / vmax * PANEL_H,
            )
        };
        // Stalls first, under the lines.
        for &(from, to) in p.stalls {
            let (x0, _) = map(from.clamp(0.0, duration_ms), 0.0, ymax);
            let (x1, _) = map(to.clamp(0.0, duration_ms), 0.0, ymax);
            if x1 > x0 {
                let _ = write!(
                    out,
                    r##"<rect class="stall" x="{x0:.1}" y="{y0:.1}" width="{:.1}" height="{PANEL_H:.1}" fill="#d62728" fill-opacity="0.15"/>"##,
                    x1 - x0
                );
            }
        }
        let pts: Vec<_> = bw.iter().map(|&(t, v)| map(t, v, ymax)).collect();
        polyline(&mut out, &pts, "#999", 1.5, "4 3");
        // Chosen bitrate: a step per downloaded segment, from its request to the next.
        let mut q = Vec::new();
        for (k, s) in p.steps.iter().enumerate() {
            let kbps = p.ladder_kbps.get(s.quality).copied().unwrap_or(0.0);
            let end = p.steps.get(k + 1).map_or(duration_ms, |n| n.at_ms);
            q.push(map(s.at_ms, kbps, ymax));
            q.push(map(end, kbps, ymax));
        }
        polyline(&mut out, &q, COLORS[0], 2.0, "");
        let b: Vec<_> = p
            .steps
            .iter()
            .map(|s| map(s.at_ms + s.download_ms, s.buffer_ms / 1000.0, bmax))
            .collect();
        polyline(&mut out, &b, COLORS[4], 1.5, "");
        // Right axis: buffer seconds.
        for k in 0..=4 {
            let v = bmax * f64::from(k) / 4.0;
            let _ = write!(
                out,
                r##"<text x="{:.1}" y="{:.1}" fill="{}">{}</text>"##,
                LEFT + pw + 6.0,
                y0 + PANEL_H - v / bmax * PANEL_H + 4.0,
                COLORS[4],
                fmt_num(v)
            );
        }
        let _ = write!(
            out,
            r##"<text transform="translate({:.1},{:.1}) rotate(90)" text-anchor="middle" fill="{}">buffer (s)</text>"##,
            LEFT + pw + 50.0,
            y0 + PANEL_H / 2.0,
            COLORS[4]
        );
        legend(
            &mut out,
            LEFT + pw - 420.0,
            y0 - 12.0,
            &[
                ("bandwidth", "#999"),
                ("chosen bitrate", COLORS[0]),
                ("buffer", COLORS[4]),
                ("stall", "#f2b8b8"),
            ],
        );
    }
    out.push_str("</svg>\n");
    out
}

/// Empirical CDFs of one metric, one line per series.
pub fn cdf(title: &str, xlabel: &str, series: &[(String, Vec<f64>)]) -> String {
    let h = PANEL_H * 1.6 + TOP + BOTTOM;
    let mut out = String::new();
    header(&mut out, h);
    let ph = PANEL_H * 1.6;
    let pw = W - LEFT - RIGHT;
    let xmax_v = series
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .fold(0.0, f64::max);
    let (xmax, xstep) = nice(xmax_v);
    axes(
        &mut out,
        TOP,
        ph,
        (xmax, xstep),
        (1.0, 0.2),
        xlabel,
        "fraction of sessions",
        title,
    );
    let mut items = Vec::new();
    for (k, (label, v)) in series.iter().enumerate() {
        let mut v = v.clone();
        v.sort_by(f64::total_cmp);
        let n = v.len().max(1) as f64;
        let mut pts = vec![(LEFT, TOP + ph)];
        for (i, x) in v.iter().enumerate() {
            let px = LEFT + x / xmax * pw;
            pts.push((px, TOP + ph - i as f64 / n * ph));
            pts.push((px, TOP + ph - (i + 1) as f64 / n * ph));
        }
        pts.push((LEFT + pw, TOP));
        let color = COLORS[k % COLORS.len()];
        polyline(&mut out, &pts, color, 2.0, "");
        items.push((label.as_str(), color));
    }
    legend(&mut out, LEFT + 10.0, TOP + 20.0, &items);
    out.push_str("</svg>\n");
    out
}

/// A histogram of `values` in `bins` equal bins.
pub fn histogram(title: &str, xlabel: &str, values: &[f64], bins: usize) -> String {
    let h = PANEL_H * 1.6 + TOP + BOTTOM;
    let ph = PANEL_H * 1.6;
    let pw = W - LEFT - RIGHT;
    let mut out = String::new();
    header(&mut out, h);
    let bins = bins.max(1);
    let vmax = values.iter().copied().fold(0.0, f64::max);
    let (xmax, xstep) = nice(vmax);
    let width = xmax / bins as f64;
    let mut counts = vec![0usize; bins];
    for v in values {
        let b = ((v / width) as usize).min(bins - 1);
        counts[b] += 1;
    }
    let cmax = counts.iter().copied().max().unwrap_or(0) as f64;
    let (ymax, ystep) = nice(cmax.max(1.0));
    axes(
        &mut out,
        TOP,
        ph,
        (xmax, xstep),
        (ymax, ystep),
        xlabel,
        "sessions",
        title,
    );
    for (b, c) in counts.iter().enumerate() {
        let x = LEFT + b as f64 * width / xmax * pw;
        let bh = *c as f64 / ymax * ph;
        let _ = write!(
            out,
            r#"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{bh:.1}" fill="{}" stroke="white"/>"#,
            TOP + ph - bh,
            width / xmax * pw,
            COLORS[0]
        );
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_axes() {
        assert_eq!(nice(4300.0), (5000.0, 1000.0));
        assert_eq!(nice(0.37), (0.4, 0.1));
        assert_eq!(nice(0.0), (1.0, 0.2));
    }

    #[test]
    fn charts_are_well_formed_svg() {
        let t = Trace::parse(
            "t",
            r#"[{"duration_ms": 20000, "bandwidth_kbps": 3000, "latency_ms": 50}, {"duration_ms": 20000, "bandwidth_kbps": 600, "latency_ms": 50}]"#,
        )
        .unwrap();
        let steps = [Step {
            segment: 0,
            quality: 1,
            at_ms: 0.0,
            download_ms: 500.0,
            buffer_ms: 2000.0,
            stall_ms: 0.0,
        }];
        for svg in [
            timelines(&[Timeline {
                title: "player 0 <bola>".into(),
                trace: &t,
                steps: &steps,
                ladder_kbps: &[200.0, 800.0],
                stalls: &[(1000.0, 2500.0)],
            }]),
            cdf("cdf", "rebuffer %", &[("a".into(), vec![0.0, 1.0, 5.0])]),
            histogram("startup", "s", &[0.5, 1.0, 1.2, 3.0], 10),
        ] {
            assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
            assert!(!svg.contains("NaN") && !svg.contains("inf"));
            assert!(!svg.contains("<bola>"), "text is escaped");
        }
        let tl = timelines(&[Timeline {
            title: "t".into(),
            trace: &t,
            steps: &steps,
            ladder_kbps: &[200.0, 800.0],
            stalls: &[(1000.0, 2500.0)],
        }]);
        assert_eq!(
            tl.matches(r#"class="stall""#).count(),
            1,
            "the stall is shaded"
        );
    }
}
