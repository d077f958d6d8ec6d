//! Buffer-based adaptation, BBA-0 (Huang et al., SIGCOMM 2014), as Pensieve's baseline runs it:
//! the lowest rate below a reservoir, the highest above reservoir + cushion, linear between.

use super::{Abr, Context, Report};

/// BBA-0.
#[derive(Debug, Clone, Copy)]
pub struct Bba {
    /// Reservoir, ms (Pensieve: 5 s).
    pub reservoir_ms: f64,
    /// Cushion, ms (Pensieve: 10 s).
    pub cushion_ms: f64,
}

impl Default for Bba {
    fn default() -> Self {
        Self {
            reservoir_ms: 5000.0,
            cushion_ms: 10_000.0,
        }
    }
}

impl Abr for Bba {
    fn name(&self) -> &'static str {
        "bba"
    }
    fn choose(&mut self, ctx: &Context<'_>) -> usize {
        let top = ctx.bitrates_kbps.len() - 1;
        if ctx.buffer_ms < self.reservoir_ms {
            0
        } else if ctx.buffer_ms >= self.reservoir_ms + self.cushion_ms {
            top
        } else {
            ((top as f64) * (ctx.buffer_ms - self.reservoir_ms) / self.cushion_ms) as usize
        }
    }
    fn report(&mut self, _r: &Report) {}
}
