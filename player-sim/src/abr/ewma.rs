//! The exponentially weighted moving average hls.js (after Shaka Player) keeps of bandwidth
//! and time to first byte: samples carry weights (seconds of download), and the estimate is
//! corrected for its zero start.

/// A weighted EWMA with a half-life in units of weight.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ewma {
    alpha: f64,
    estimate: f64,
    total_weight: f64,
}

impl Ewma {
    /// An empty average: about half of the estimate comes from the last `half_life` of weight.
    pub(crate) fn new(half_life: f64) -> Self {
        Self {
            alpha: (0.5f64.ln() / half_life).exp(),
            estimate: 0.0,
            total_weight: 0.0,
        }
    }

    /// Adds `value` with `weight`.
    pub(crate) fn sample(&mut self, weight: f64, value: f64) {
        let a = self.alpha.powf(weight);
        self.estimate = value * (1.0 - a) + a * self.estimate;
        self.total_weight += weight;
    }

    /// Sum of the weights seen.
    pub(crate) fn total_weight(&self) -> f64 {
        self.total_weight
    }

    /// The zero-corrected estimate (0 before any sample).
    pub(crate) fn get(&self) -> f64 {
        let zero_factor = 1.0 - self.alpha.powf(self.total_weight);
        if zero_factor > 0.0 {
            self.estimate / zero_factor
        } else {
            self.estimate
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_sample_is_the_estimate_and_half_lives_weigh_history() {
        let mut e = Ewma::new(3.0);
        assert_eq!(e.get(), 0.0);
        e.sample(0.5, 1000.0);
        assert!((e.get() - 1000.0).abs() < 1e-9);
        // A 3 s sample (one half-life) of 2000: raw = 2000·½ + ½·raw₀, raw₀ = 1000·(1 − 2^(−1/6)).
        e.sample(3.0, 2000.0);
        let raw0 = 1000.0 * (1.0 - 0.5f64.powf(0.5 / 3.0));
        let raw = 1000.0 + 0.5 * raw0;
        assert!((e.get() - raw / (1.0 - 0.5f64.powf(3.5 / 3.0))).abs() < 1e-9);
        assert_eq!(e.total_weight(), 3.5);
    }
}
