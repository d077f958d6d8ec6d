//! RobustMPC (Yin et al., SIGCOMM 2015) as Pensieve implements it: the harmonic mean of the last
//! 5 throughputs, divided by 1 + the largest of the last 5 relative prediction errors, then
//! every quality plan over the next 5 segments is scored with QoE_lin
//! (Mbps − 4.3·rebuffer_s − |ΔMbps|) and the first step of the best plan is taken.

use super::{Abr, Context, Report};

const HORIZON: usize = 5;
const PAST: usize = 5;
const REBUF_PENALTY: f64 = 4.3;

/// RobustMPC.
#[derive(Debug, Clone, Default)]
pub struct RobustMpc {
    past_kbps: Vec<f64>,
    past_errors: Vec<f64>,
    last_prediction: Option<f64>,
}

impl RobustMpc {
    /// The robust throughput prediction, kbit/s (none before the first download).
    pub fn predict(&self) -> Option<f64> {
        if self.past_kbps.is_empty() {
            return None;
        }
        let recent = &self.past_kbps[self.past_kbps.len().saturating_sub(PAST)..];
        let harmonic = recent.len() as f64 / recent.iter().map(|b| 1.0 / b.max(1e-9)).sum::<f64>();
        let errs = &self.past_errors[self.past_errors.len().saturating_sub(PAST)..];
        let max_err = errs.iter().copied().fold(0.0, f64::max);
        Some(harmonic / (1.0 + max_err))
    }
}

struct Search<'a> {
    bitrates: &'a [f64],
    sizes: &'a [Vec<f64>],
    segment_ms: f64,
    bw: f64,
    best: f64,
    best_first: usize,
}

impl Search<'_> {
    /// Depth-first over plans, carrying each prefix's buffer, rebuffer and score once.
    fn go(&mut self, depth: usize, buffer_ms: f64, last: usize, score: f64, first: usize) {
        if depth == self.sizes.len().min(HORIZON) {
            if score > self.best {
                self.best = score;
                self.best_first = first;
            }
            return;
        }
        for q in 0..self.bitrates.len() {
            let dl = self.sizes[depth][q] / self.bw;
            let rebuf = (dl - buffer_ms).max(0.0);
            let buffer = (buffer_ms - dl).max(0.0) + self.segment_ms;
            let s = score + self.bitrates[q] / 1000.0
                - REBUF_PENALTY * rebuf / 1000.0
                - (self.bitrates[q] - self.bitrates[last]).abs() / 1000.0;
            self.go(depth + 1, buffer, q, s, if depth == 0 { q } else { first });
        }
    }
}

impl Abr for RobustMpc {
    fn name(&self) -> &'static str {
        "mpc"
    }
    fn choose(&mut self, ctx: &Context<'_>) -> usize {
        let Some(bw) = self.predict() else {
            self.last_prediction = None;
            return 0;
        };
        self.last_prediction = Some(bw);
        let mut s = Search {
            bitrates: ctx.bitrates_kbps,
            sizes: ctx.upcoming_bits,
            segment_ms: ctx.segment_ms,
            bw,
            best: f64::NEG_INFINITY,
            best_first: 0,
        };
        s.go(0, ctx.buffer_ms, ctx.last_quality.unwrap_or(0), 0.0, 0);
        s.best_first
    }
    fn report(&mut self, r: &Report) {
        let kbps = r.bits / (r.latency_ms + r.transfer_ms).max(1e-3);
        if let Some(p) = self.last_prediction {
            self.past_errors.push((p - kbps).abs() / kbps.max(1e-9));
        }
        self.past_kbps.push(kbps);
        if self.past_kbps.len() > 64 {
            self.past_kbps.drain(..32);
        }
        if self.past_errors.len() > 64 {
            self.past_errors.drain(..32);
        }
    }
}
