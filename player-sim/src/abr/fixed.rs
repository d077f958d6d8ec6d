//! The fixed-rendition baseline.

use super::{Abr, Context, Report};

/// Always the same quality (clamped to the ladder).
#[derive(Debug, Clone, Copy)]
pub struct Fixed(pub usize);

impl Abr for Fixed {
    fn name(&self) -> &'static str {
        "fixed"
    }
    fn choose(&mut self, ctx: &Context<'_>) -> usize {
        self.0.min(ctx.bitrates_kbps.len() - 1)
    }
    fn report(&mut self, _r: &Report) {}
}
