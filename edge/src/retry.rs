//! Retry policy: capped exponential backoff with full jitter, under a retry budget so that
//! retries add at most a fraction of the fetch rate to a struggling upstream.

use std::sync::Mutex;
use std::time::Duration;

use rand::RngExt;
use tokio::time::Instant;

/// Backoff before retry number `retry` (1-based): uniform in `[0, min(cap, base·2^(retry-1))]`.
pub fn backoff(retry: u32, base: Duration, cap: Duration, rng: &mut impl rand::Rng) -> Duration {
    let exp = base.saturating_mul(
        1u32.checked_shl(retry.saturating_sub(1).min(20))
            .unwrap_or(u32::MAX),
    );
    let ceiling = exp.min(cap);
    Duration::from_nanos(rng.random_range(0..=ceiling.as_nanos().min(u128::from(u64::MAX)) as u64))
}

/// A token bucket of retries: every fetch deposits `ratio` tokens, time adds
/// `min_per_sec`, and every retry spends one.
#[derive(Debug)]
pub struct RetryBudget {
    ratio: f64,
    min_per_sec: f64,
    cap: f64,
    state: Mutex<(f64, Instant)>,
}

impl RetryBudget {
    /// A budget allowing retries of `ratio` of fetches plus `min_per_sec` per second.
    pub fn new(ratio: f64, min_per_sec: u32) -> Self {
        let min_per_sec = f64::from(min_per_sec);
        let cap = min_per_sec + 10.0;
        Self {
            ratio,
            min_per_sec,
            cap,
            state: Mutex::new((cap, Instant::now())),
        }
    }

    fn refill(&self, s: &mut (f64, Instant)) {
        let now = Instant::now();
        s.0 = (s.0 + self.min_per_sec * now.duration_since(s.1).as_secs_f64()).min(self.cap);
        s.1 = now;
    }

    /// A fetch happened.
    pub fn deposit(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.refill(&mut s);
        s.0 = (s.0 + self.ratio).min(self.cap);
    }

    /// Takes one retry token, if there is one.
    pub fn withdraw(&self) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.refill(&mut s);
        if s.0 >= 1.0 {
            s.0 -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;

    proptest! {
        #[test]
        fn backoff_never_exceeds_the_cap(retry in 0u32..100, base_ms in 1u64..1000, cap_ms in 1u64..5000, seed in any::<u64>()) {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let cap = Duration::from_millis(cap_ms);
            let d = backoff(retry, Duration::from_millis(base_ms), cap, &mut rng);
            prop_assert!(d <= cap);
            prop_assert!(d <= Duration::from_millis(base_ms).saturating_mul(1 << retry.saturating_sub(1).min(20)));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn budget_limits_retries_to_a_fraction() {
        let b = RetryBudget::new(0.1, 0);
        // Starts with a small reserve, then only 1 retry per 10 fetches.
        while b.withdraw() {}
        for _ in 0..100 {
            b.deposit();
        }
        let allowed = (0..100).filter(|_| b.withdraw()).count();
        assert!((9..=10).contains(&allowed), "{allowed}");
        // Time refills at min_per_sec.
        let b = RetryBudget::new(0.0, 5);
        while b.withdraw() {}
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!((0..10).filter(|_| b.withdraw()).count(), 5);
    }
}
