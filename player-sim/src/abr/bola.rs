//! BOLA-BASIC (Spiteri et al., INFOCOM 2016) with dash.js's constants: utilities ln(bitrate)
//! shifted so the lowest is 1, a 10 s minimum buffer, 2 s more per ladder rung, a 12 s stable
//! buffer; each segment maximizes (V·(utility + γp) − buffer) / bitrate.

use super::{Abr, Context, Report};

const MINIMUM_BUFFER_S: f64 = 10.0;
const MINIMUM_BUFFER_PER_LEVEL_S: f64 = 2.0;
const STABLE_BUFFER_S: f64 = 12.0;

/// BOLA-BASIC.
#[derive(Debug, Clone, Copy, Default)]
pub struct Bola;

impl Abr for Bola {
    fn name(&self) -> &'static str {
        "bola"
    }
    fn choose(&mut self, ctx: &Context<'_>) -> usize {
        let b = ctx.bitrates_kbps;
        if b.len() < 2 {
            return 0;
        }
        let u: Vec<f64> = b.iter().map(|x| (x / b[0]).ln() + 1.0).collect();
        let buffer_time =
            STABLE_BUFFER_S.max(MINIMUM_BUFFER_S + MINIMUM_BUFFER_PER_LEVEL_S * b.len() as f64);
        let gp = (u[u.len() - 1] - 1.0) / (buffer_time / MINIMUM_BUFFER_S - 1.0);
        let vp = MINIMUM_BUFFER_S / gp;
        let level = ctx.buffer_ms / 1000.0;
        let mut best = 0;
        let mut score = f64::NEG_INFINITY;
        for (i, (ui, bi)) in u.iter().zip(b).enumerate() {
            let s = (vp * (ui + gp) - level) / bi;
            if s >= score {
                score = s;
                best = i;
            }
        }
        best
    }
    fn report(&mut self, _r: &Report) {}
}
