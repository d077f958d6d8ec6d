//! Bandwidth schedules for emulated players: constant, steps, a seeded random walk, or a
//! trace file, each turned into a [`Trace`] so live and offline modes share one model.
//!
//! Syntax (the `--bandwidth` flag):
//! - `3000kbps` (also `3mbps`, `500kbit`): constant;
//! - `4000kbps@0s,800kbps@20s,3000kbps@40s`: steps, each holding until the next;
//! - `walk:2000kbps,500kbps..6000kbps,1s,seed=7`: random walk starting at 2000 kbit/s, bounded,
//!   one step per second, multiplicative steps of up to ±30 %;
//! - `trace:PATH[,scale=F][,offset=30s][,latency=80ms]`: a trace file (Sabre, Mahimahi, cooked).

use std::path::Path;

use crate::trace::{Period, Trace};

/// Why a schedule could not be read; the message names the offending part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad bandwidth schedule {spec:?}: {reason}")]
pub struct ScheduleError {
    /// The schedule as given.
    pub spec: String,
    /// What is wrong.
    pub reason: String,
}

fn err(spec: &str, reason: impl Into<String>) -> ScheduleError {
    ScheduleError {
        spec: spec.to_string(),
        reason: reason.into(),
    }
}

/// Parses `3000kbps`, `3mbps`, `3.5Mbps`, `500kbit` into kbit/s.
pub fn parse_rate(s: &str) -> Option<f64> {
    let s = s.trim().to_ascii_lowercase();
    let (num, mult) = if let Some(n) = s.strip_suffix("kbps").or_else(|| s.strip_suffix("kbit")) {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix("mbps").or_else(|| s.strip_suffix("mbit")) {
        (n, 1000.0)
    } else {
        return None;
    };
    let v: f64 = num.trim().parse().ok()?;
    (v.is_finite() && v >= 0.0).then_some(v * mult)
}

/// Parses `20s`, `500ms`, `1.5s` into milliseconds.
pub fn parse_ms(s: &str) -> Option<f64> {
    let s = s.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000.0)
    } else {
        return None;
    };
    let v: f64 = num.trim().parse().ok()?;
    (v.is_finite() && v >= 0.0).then_some(v * mult)
}

/// A deterministic generator (SplitMix64), so a schedule and its seed replay exactly.
#[derive(Debug, Clone)]
pub struct SplitMix(pub u64);

impl SplitMix {
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Builds the trace a schedule describes; `duration_ms` bounds random walks (they loop after).
pub fn parse(spec: &str, latency_ms: f64, duration_ms: f64) -> Result<Trace, ScheduleError> {
    let spec_t = spec.trim();
    if let Some(rest) = spec_t.strip_prefix("trace:") {
        let mut parts = rest.split(',');
        let path = parts.next().unwrap_or("");
        let mut t = Trace::load(Path::new(path)).map_err(|e| err(spec, e.to_string()))?;
        for p in parts {
            let (k, v) = p
                .split_once('=')
                .ok_or_else(|| err(spec, format!("expected key=value, got {p:?}")))?;
            t = match k {
                "scale" => t.scaled(
                    v.parse()
                        .ok()
                        .filter(|f: &f64| *f > 0.0)
                        .ok_or_else(|| err(spec, "scale must be > 0"))?,
                ),
                "offset" => t.offset(
                    parse_ms(v).ok_or_else(|| err(spec, "offset must be a duration like 30s"))?,
                ),
                "latency" => t.with_latency(
                    parse_ms(v).ok_or_else(|| err(spec, "latency must be a duration like 80ms"))?,
                ),
                _ => {
                    return Err(err(
                        spec,
                        format!("unknown option {k:?} (scale, offset, latency)"),
                    ));
                }
            };
        }
        return Ok(t);
    }
    if let Some(rest) = spec_t.strip_prefix("walk:") {
        let parts: Vec<&str> = rest.split(',').map(str::trim).collect();
        let [start, range, step, rest @ ..] = parts.as_slice() else {
            return Err(err(spec, "walk needs START,MIN..MAX,STEP[,seed=N]"));
        };
        let start = parse_rate(start)
            .ok_or_else(|| err(spec, "walk start must be a rate like 2000kbps"))?;
        let (lo, hi) = range
            .split_once("..")
            .ok_or_else(|| err(spec, "walk range must be MIN..MAX"))?;
        let (lo, hi) = (
            parse_rate(lo).ok_or_else(|| err(spec, "bad walk minimum"))?,
            parse_rate(hi).ok_or_else(|| err(spec, "bad walk maximum"))?,
        );
        if !(lo > 0.0 && lo <= start && start <= hi) {
            return Err(err(spec, "walk needs 0 < MIN <= START <= MAX"));
        }
        let step = parse_ms(step)
            .filter(|s| *s > 0.0)
            .ok_or_else(|| err(spec, "walk step must be a duration like 1s"))?;
        let mut seed = 1u64;
        for r in rest {
            match r.split_once('=') {
                Some(("seed", v)) => {
                    seed = v
                        .parse()
                        .map_err(|_| err(spec, "seed must be an integer"))?
                }
                _ => return Err(err(spec, format!("unknown walk option {r:?}"))),
            }
        }
        let mut rng = SplitMix(seed);
        let mut bw = start;
        let n = ((duration_ms / step).ceil() as usize).clamp(1, 1_000_000);
        let periods = (0..n)
            .map(|_| {
                let p = Period {
                    duration_ms: step,
                    bandwidth_kbps: bw,
                    latency_ms,
                };
                bw = (bw * (1.0 + 0.6 * (rng.unit() - 0.5))).clamp(lo, hi);
                p
            })
            .collect();
        return Ok(Trace {
            name: spec_t.to_string(),
            periods,
        });
    }
    if spec_t.contains('@') {
        let mut points = Vec::new();
        for part in spec_t.split(',') {
            let (rate, at) = part
                .split_once('@')
                .ok_or_else(|| err(spec, format!("step {part:?} needs RATE@TIME")))?;
            let rate =
                parse_rate(rate).ok_or_else(|| err(spec, format!("bad rate in {part:?}")))?;
            let at = parse_ms(at).ok_or_else(|| err(spec, format!("bad time in {part:?}")))?;
            points.push((at, rate));
        }
        if points.first().map(|p| p.0) != Some(0.0) || points.windows(2).any(|w| w[1].0 <= w[0].0) {
            return Err(err(spec, "steps must start at 0s and go forward in time"));
        }
        let mut periods = Vec::new();
        for (i, (at, rate)) in points.iter().enumerate() {
            // The last step holds for good (a very long period: the trace would loop otherwise).
            let end = points.get(i + 1).map_or(at + 1e12, |p| p.0);
            periods.push(Period {
                duration_ms: end - at,
                bandwidth_kbps: *rate,
                latency_ms,
            });
        }
        return Ok(Trace {
            name: spec_t.to_string(),
            periods,
        });
    }
    let rate = parse_rate(spec_t).ok_or_else(|| {
        err(
            spec,
            "expected a rate (3000kbps), steps (R@T,...), walk:... or trace:PATH",
        )
    })?;
    Ok(Trace {
        name: spec_t.to_string(),
        periods: vec![Period {
            duration_ms: 1e12,
            bandwidth_kbps: rate,
            latency_ms,
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_constant_and_walks() {
        let t = parse("4000kbps@0s,800kbps@20s,3mbps@40s", 50.0, 0.0).unwrap();
        assert_eq!(
            t.periods[0],
            Period {
                duration_ms: 20_000.0,
                bandwidth_kbps: 4000.0,
                latency_ms: 50.0
            }
        );
        assert_eq!(t.periods[1].bandwidth_kbps, 800.0);
        assert_eq!(t.periods[2].bandwidth_kbps, 3000.0);
        assert_eq!(
            parse("2.5Mbps", 0.0, 0.0).unwrap().periods[0].bandwidth_kbps,
            2500.0
        );
        let w1 = parse("walk:2000kbps,500kbps..6000kbps,1s,seed=7", 0.0, 60_000.0).unwrap();
        let w2 = parse("walk:2000kbps,500kbps..6000kbps,1s,seed=7", 0.0, 60_000.0).unwrap();
        assert_eq!(w1, w2, "seeded: replays exactly");
        assert_eq!(w1.periods.len(), 60);
        assert!(
            w1.periods
                .iter()
                .all(|p| (500.0..=6000.0).contains(&p.bandwidth_kbps))
        );
        assert_ne!(
            parse("walk:2000kbps,500kbps..6000kbps,1s,seed=8", 0.0, 60_000.0).unwrap(),
            w1
        );
    }

    #[test]
    fn errors_name_the_part() {
        for bad in [
            "fast",
            "4000kbps@5s",
            "4000kbps@0s,1000kbps@0s",
            "walk:1kbps",
            "trace:/nope",
            "4000kbps@0s,x@2s",
        ] {
            let e = parse(bad, 0.0, 1000.0).unwrap_err();
            assert_eq!(e.spec, bad);
            assert!(!e.reason.is_empty());
        }
    }
}
