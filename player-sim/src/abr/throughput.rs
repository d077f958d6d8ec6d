//! Throughput-based adaptation as hls.js does it: two duration-weighted EWMAs (half-lives 3 s
//! and 9 s) of download bandwidth, the lower one taken; the highest rung below 0.95 of it, or
//! below 0.7 of it when that means switching up. 500 kbit/s until the first sample.

use super::ewma::Ewma;
use super::{Abr, Context, Report};

/// The hls.js throughput rule.
#[derive(Debug, Clone, Copy)]
pub struct Throughput {
    fast: Ewma,
    slow: Ewma,
    /// Estimate before any sample, kbit/s.
    pub default_kbps: f64,
    /// Safety factor when staying or switching down.
    pub factor: f64,
    /// Safety factor when switching up.
    pub up_factor: f64,
}

impl Default for Throughput {
    fn default() -> Self {
        Self {
            fast: Ewma::new(3.0),
            slow: Ewma::new(9.0),
            default_kbps: 500.0,
            factor: 0.95,
            up_factor: 0.7,
        }
    }
}

impl Throughput {
    /// Current bandwidth estimate, kbit/s.
    pub fn estimate_kbps(&self) -> f64 {
        if self.fast.total_weight() <= 0.0 {
            self.default_kbps
        } else {
            self.fast.get().min(self.slow.get())
        }
    }
}

impl Abr for Throughput {
    fn name(&self) -> &'static str {
        "throughput"
    }
    fn choose(&mut self, ctx: &Context<'_>) -> usize {
        let bw = self.estimate_kbps();
        let current = ctx.last_quality.unwrap_or(0);
        (0..ctx.bitrates_kbps.len())
            .rev()
            .find(|&i| {
                let f = if i > current {
                    self.up_factor
                } else {
                    self.factor
                };
                ctx.bitrates_kbps[i] <= bw * f
            })
            .unwrap_or(0)
    }
    fn estimate_kbps(&self) -> Option<f64> {
        Some(Throughput::estimate_kbps(self))
    }
    fn report(&mut self, r: &Report) {
        // As hls.js: request to last byte, at least 50 ms; weight = that duration in seconds.
        let ms = (r.latency_ms + r.transfer_ms).max(50.0);
        let kbps = r.bits / ms;
        self.fast.sample(ms / 1000.0, kbps);
        self.slow.sample(ms / 1000.0, kbps);
    }
}
