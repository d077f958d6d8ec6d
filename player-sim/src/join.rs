//! When players join (and leave): all at once, a ramp, a flash crowd at a moment, or Poisson
//! arrivals; every random choice seeded.

use crate::schedule::{SplitMix, parse_ms};

/// A join pattern.
#[derive(Debug, Clone, PartialEq)]
pub enum Join {
    /// Everyone at t = 0.
    AllAtOnce,
    /// Evenly spread over the duration, ms.
    Ramp(f64),
    /// A fraction joins at t = 0 (spread over 1 s), the rest in a spike at `at_ms` (spread over
    /// `spread_ms`).
    Flash {
        /// Moment of the spike, ms.
        at_ms: f64,
        /// Fraction of players in the spike.
        fraction: f64,
        /// Width of the spike, ms.
        spread_ms: f64,
    },
    /// Poisson arrivals at `rate_per_s`, seeded.
    Poisson {
        /// Mean arrivals per second.
        rate_per_s: f64,
        /// Seed.
        seed: u64,
    },
}

impl Join {
    /// Parses `all`, `ramp:30s`, `flash:20s` / `flash:20s,0.8,2s`, `poisson:50/s[,seed=N]`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s == "all" {
            return Ok(Join::AllAtOnce);
        }
        let bad = |why: &str| format!("--join {s}: {why}");
        if let Some(d) = s.strip_prefix("ramp:") {
            return parse_ms(d)
                .filter(|d| *d > 0.0)
                .map(Join::Ramp)
                .ok_or_else(|| bad("ramp needs a duration like 30s"));
        }
        if let Some(rest) = s.strip_prefix("flash:") {
            let p: Vec<&str> = rest.split(',').collect();
            let at_ms = parse_ms(p[0]).ok_or_else(|| bad("flash needs a time like 20s"))?;
            let fraction = p.get(1).map_or(Ok(0.8), |f| {
                f.parse::<f64>()
                    .map_err(|_| bad("fraction must be a number"))
            })?;
            if !(0.0..=1.0).contains(&fraction) {
                return Err(bad("fraction must be between 0 and 1"));
            }
            let spread_ms = p
                .get(2)
                .map_or(Some(2000.0), |d| parse_ms(d))
                .ok_or_else(|| bad("spread must be a duration"))?;
            return Ok(Join::Flash {
                at_ms,
                fraction,
                spread_ms,
            });
        }
        if let Some(rest) = s.strip_prefix("poisson:") {
            let mut parts = rest.split(',');
            let rate = parts
                .next()
                .and_then(|r| r.strip_suffix("/s"))
                .and_then(|r| r.parse::<f64>().ok())
                .filter(|r| *r > 0.0)
                .ok_or_else(|| bad("poisson needs a rate like 50/s"))?;
            let mut seed = 1;
            for p in parts {
                seed = p
                    .strip_prefix("seed=")
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| bad("poisson options: seed=N"))?;
            }
            return Ok(Join::Poisson {
                rate_per_s: rate,
                seed,
            });
        }
        Err(bad(
            "expected all, ramp:D, flash:T[,FRACTION,SPREAD] or poisson:R/s[,seed=N]",
        ))
    }

    /// Join times (ms from start) of `n` players, ascending.
    pub fn times(&self, n: usize) -> Vec<f64> {
        let mut t: Vec<f64> = match *self {
            Join::AllAtOnce => vec![0.0; n],
            Join::Ramp(d) => (0..n).map(|i| d * i as f64 / n.max(1) as f64).collect(),
            Join::Flash {
                at_ms,
                fraction,
                spread_ms,
            } => {
                let spike = (n as f64 * fraction).round() as usize;
                let early = n - spike;
                (0..early)
                    .map(|i| 1000.0 * i as f64 / early.max(1) as f64)
                    .chain((0..spike).map(|i| at_ms + spread_ms * i as f64 / spike.max(1) as f64))
                    .collect()
            }
            Join::Poisson { rate_per_s, seed } => {
                let mut rng = SplitMix(seed);
                let mut now = 0.0;
                (0..n)
                    .map(|_| {
                        now += -(1.0 - rng.unit()).ln() / rate_per_s * 1000.0;
                        now
                    })
                    .collect()
            }
        };
        t.sort_by(f64::total_cmp);
        t
    }
}

/// A mass exit: a seeded fraction of the players leave at a moment (spread over one second).
#[derive(Debug, Clone, PartialEq)]
pub struct Exit {
    /// Moment of the exit, ms from the start.
    pub at_ms: f64,
    /// Fraction of players that leave.
    pub fraction: f64,
}

impl Exit {
    /// Parses `45s` (everyone) or `45s,0.6` (60 % of the players).
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("--exit {s}: {why}");
        let mut parts = s.trim().split(',');
        let at_ms = parts
            .next()
            .and_then(parse_ms)
            .ok_or_else(|| bad("expected a moment like 45s"))?;
        let fraction = match parts.next() {
            None => 1.0,
            Some(f) => f
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|f| (0.0..=1.0).contains(f))
                .ok_or_else(|| bad("the fraction must be within 0..1"))?,
        };
        if parts.next().is_some() {
            return Err(bad("expected T[,FRACTION]"));
        }
        Ok(Self { at_ms, fraction })
    }

    /// When each of `n` players leaves (`None`: stays to the end); seeded by `seed`.
    pub fn times(&self, n: usize, seed: u64) -> Vec<Option<f64>> {
        (0..n)
            .map(|i| {
                let mut rng = SplitMix(seed ^ 0x5eed_e817 ^ (i as u64).wrapping_mul(0x9e37_79b9));
                let leaves = rng.unit() < self.fraction;
                let spread = rng.unit() * 1000.0;
                leaves.then_some(self.at_ms + spread)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert_eq!(Join::parse("all").unwrap().times(3), vec![0.0; 3]);
        assert_eq!(
            Join::parse("ramp:30s").unwrap().times(3),
            vec![0.0, 10_000.0, 20_000.0]
        );
        let f = Join::parse("flash:20s,0.5,2s").unwrap().times(4);
        assert_eq!(f, vec![0.0, 500.0, 20_000.0, 21_000.0]);
        let p = Join::parse("poisson:10/s,seed=3").unwrap();
        let t = p.times(2000);
        assert_eq!(t, p.times(2000), "seeded");
        let mean_gap = t.last().unwrap() / 2000.0;
        assert!((mean_gap - 100.0).abs() < 10.0, "{mean_gap}");
        assert!(Join::parse("flash:20s,2").is_err());
        assert!(Join::parse("sometimes").is_err());
        let e = Exit::parse("45s,0.25").unwrap();
        let t = e.times(4000, 9);
        assert_eq!(t, e.times(4000, 9), "seeded");
        let gone = t.iter().flatten().count();
        assert!((900..1100).contains(&gone), "{gone}");
        assert!(
            t.iter()
                .flatten()
                .all(|&ms| (45_000.0..46_000.0).contains(&ms))
        );
        assert_eq!(
            Exit::parse("10s")
                .unwrap()
                .times(3, 1)
                .iter()
                .flatten()
                .count(),
            3
        );
        assert!(Exit::parse("10s,2").is_err());
    }
}
