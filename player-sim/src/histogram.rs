//! A mergeable histogram with bounded relative error: the per-metric distributions a report
//! carries so that reports of many player-sim processes combine into one (`player-sim
//! merge`) with exact counts, sums, means, minima and maxima, and percentiles within
//! [`RELATIVE_ERROR`] of the exact ones.
//!
//! Values are counted in logarithmic buckets `[γ^i, γ^(i+1))` (of |v|, negatives apart),
//! with zero counted exactly: most sessions stall for exactly 0 s, and that must stay 0.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Bucket growth factor γ.
pub const GAMMA: f64 = 1.02;

/// Largest relative error of a percentile read from buckets: (γ − 1) / (γ + 1).
pub const RELATIVE_ERROR: f64 = (GAMMA - 1.0) / (GAMMA + 1.0);

/// Magnitudes below this count as zero.
const ZERO: f64 = 1e-9;

/// Counts of values by logarithmic bucket, plus exact count, sum, minimum and maximum.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LogHistogram {
    /// Values recorded.
    pub count: u64,
    /// Their sum.
    pub sum: f64,
    /// Smallest (0 when empty).
    pub min: f64,
    /// Largest (0 when empty).
    pub max: f64,
    /// Values of magnitude below 1e-9.
    pub zero: u64,
    /// Positive values: bucket index → count.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pos: BTreeMap<i32, u64>,
    /// Negative values, by the bucket of their magnitude.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub neg: BTreeMap<i32, u64>,
}

fn bucket(magnitude: f64) -> i32 {
    // |v| ≥ 1e-9 and finite: the index is within ±1,100 or so, far inside i32.
    (magnitude.ln() / GAMMA.ln()).floor() as i32
}

/// The value standing for bucket `i`: the point of least relative error within it.
fn representative(i: i32) -> f64 {
    GAMMA.powi(i) * 2.0 * GAMMA / (1.0 + GAMMA)
}

impl LogHistogram {
    /// The histogram of `values` (non-finite ones are skipped).
    pub fn of(values: impl IntoIterator<Item = f64>) -> Self {
        let mut h = Self::default();
        for v in values {
            h.record(v);
        }
        h
    }

    /// Counts `v` (a non-finite value is skipped: it has no place on the axis).
    pub fn record(&mut self, v: f64) {
        if !v.is_finite() {
            return;
        }
        if self.count == 0 {
            (self.min, self.max) = (v, v);
        } else {
            self.min = self.min.min(v);
            self.max = self.max.max(v);
        }
        self.count = self.count.saturating_add(1);
        self.sum += v;
        if v.abs() < ZERO {
            self.zero = self.zero.saturating_add(1);
        } else if v > 0.0 {
            *self.pos.entry(bucket(v)).or_default() += 1;
        } else {
            *self.neg.entry(bucket(-v)).or_default() += 1;
        }
    }

    /// Adds `other`'s values to this one's.
    pub fn merge(&mut self, other: &Self) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            (self.min, self.max) = (other.min, other.max);
        } else {
            self.min = self.min.min(other.min);
            self.max = self.max.max(other.max);
        }
        self.count = self.count.saturating_add(other.count);
        self.sum += other.sum;
        self.zero = self.zero.saturating_add(other.zero);
        for (mine, theirs) in [(&mut self.pos, &other.pos), (&mut self.neg, &other.neg)] {
            for (i, c) in theirs {
                let e = mine.entry(*i).or_default();
                *e = e.saturating_add(*c);
            }
        }
    }

    /// Exact mean (0 when empty).
    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum / self.count as f64
        }
    }

    /// The nearest-rank `p` quantile (as `qoe::Stats::of`), within [`RELATIVE_ERROR`] of
    /// the exact value; exact for zeros, the minimum and the maximum. 0 when empty.
    pub fn quantile(&self, p: f64) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let n = self.count;
        let rank = ((n as f64 * p).ceil() as u64).clamp(1, n);
        if rank == 1 {
            return self.min;
        }
        if rank == n {
            return self.max;
        }
        // Ascending: the most negative first, then zeros, then positives.
        let negatives = self
            .neg
            .iter()
            .rev()
            .map(|(i, c)| (-representative(*i), *c));
        let zeros = std::iter::once((0.0, self.zero));
        let positives = self.pos.iter().map(|(i, c)| (representative(*i), *c));
        let mut seen = 0u64;
        for (v, c) in negatives.chain(zeros).chain(positives) {
            seen = seen.saturating_add(c);
            if seen >= rank {
                return v.clamp(self.min, self.max);
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn exact(mut v: Vec<f64>, p: f64) -> f64 {
        v.sort_by(f64::total_cmp);
        v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1]
    }

    #[test]
    fn zeros_stay_exact_and_empty_is_zero() {
        let h = LogHistogram::of([0.0, 0.0, 0.0, 2.5]);
        assert_eq!(h.quantile(0.5), 0.0);
        assert_eq!(h.quantile(0.95), 2.5);
        assert_eq!((h.count, h.sum, h.min, h.max), (4, 2.5, 0.0, 2.5));
        let e = LogHistogram::default();
        assert_eq!((e.quantile(0.5), e.mean()), (0.0, 0.0));
    }

    #[test]
    fn non_finite_values_are_skipped() {
        let h = LogHistogram::of([f64::NAN, 1.0, f64::INFINITY]);
        assert_eq!(h.count, 1);
    }

    #[test]
    fn serde_round_trip() {
        let h = LogHistogram::of([-3.0, 0.0, 0.25, 7.0, 7.0]);
        let back: LogHistogram = serde_json::from_str(&serde_json::to_string(&h).unwrap()).unwrap();
        assert_eq!(back, h);
    }

    proptest! {
        /// Percentiles within the stated relative error of the exact nearest rank, over
        /// values of either sign and many magnitudes.
        #[test]
        fn quantiles_are_within_the_relative_error(
            v in proptest::collection::vec(prop_oneof![Just(0.0), -1e4f64..1e4, 1e-3f64..1.0], 1..300),
            p in 0.0f64..=1.0,
        ) {
            let h = LogHistogram::of(v.iter().copied());
            let want = exact(v.clone(), p);
            let got = h.quantile(p);
            prop_assert!((got - want).abs() <= want.abs() * RELATIVE_ERROR * 1.000_001 + 1e-12,
                "p{p}: {got} vs {want}");
        }

        /// Merging the histograms of parts equals the histogram of the whole.
        #[test]
        fn merge_of_parts_is_the_whole(
            v in proptest::collection::vec(-1e3f64..1e3, 0..200),
            cut in 0usize..200,
        ) {
            let cut = cut.min(v.len());
            let mut a = LogHistogram::of(v[..cut].iter().copied());
            a.merge(&LogHistogram::of(v[cut..].iter().copied()));
            let whole = LogHistogram::of(v.iter().copied());
            prop_assert_eq!(a.count, whole.count);
            prop_assert_eq!((&a.pos, &a.neg, a.zero, a.min, a.max), (&whole.pos, &whole.neg, whole.zero, whole.min, whole.max));
            prop_assert!((a.sum - whole.sum).abs() <= 1e-6 * (1.0 + whole.sum.abs()));
        }
    }
}
