//! BOLA-BASIC (Spiteri et al., INFOCOM 2016), its parameters sized against the player's
//! buffer target as Sabre sizes them: utilities ln(bitrate / lowest) (the lowest is 0),
//! γp = 5, and V so that the highest rung's weight V·(u_max + γp) equals the largest buffer
//! the player asks for a segment at (buffer max − one segment). Each segment maximizes
//! (V·(utility + γp) − buffer) / bitrate.
//!
//! (dash.js's fixed constants — a 10 s minimum buffer and 2 s more per rung — put the top
//! rung of a 6-rung ladder beyond 21 s of buffer, which a 25 s buffer with 4 s segments never
//! reaches before deciding: BOLA stayed a rung or two below the top on any network.)

use super::{Abr, Context, Report};

/// γp: how much a rung's utility weighs against the buffer (Sabre's default).
const GAMMA_P: f64 = 5.0;

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
        let u: Vec<f64> = b.iter().map(|x| (x / b[0]).ln()).collect();
        let target_s = (ctx.buffer_max_ms - ctx.segment_ms).max(ctx.segment_ms) / 1000.0;
        let vp = target_s / (u[u.len() - 1] + GAMMA_P);
        let level = ctx.buffer_ms / 1000.0;
        let mut best = 0;
        let mut score = f64::NEG_INFINITY;
        for (i, (ui, bi)) in u.iter().zip(b).enumerate() {
            let s = (vp * (ui + GAMMA_P) - level) / bi;
            // Strictly better only: a tie keeps the lower rung (as Sabre does).
            if s > score {
                score = s;
                best = i;
            }
        }
        best
    }
    fn report(&mut self, _r: &Report) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Envivio ladder, 4 s segments, a 25 s buffer.
    const LADDER: [f64; 6] = [300.0, 750.0, 1200.0, 1850.0, 2850.0, 4300.0];

    fn choose_at(buffer_s: f64) -> usize {
        Bola.choose(&Context {
            segment: 10,
            buffer_ms: buffer_s * 1000.0,
            buffer_max_ms: 25_000.0,
            last_quality: None,
            bitrates_kbps: &LADDER,
            segment_ms: 4000.0,
            upcoming_bits: &[],
            peak_kbps: &LADDER,
            first_listed: 0,
            live: false,
        })
    }

    /// Hand-computed: u = ln(b / 300), u_max = ln(4300/300) = 2.6626, V = 21 / 7.6626 =
    /// 2.7406. Between rungs 4 and 5 the scores tie where the buffer is
    /// V·(γp + (b5·u4 − b4·u5)/(b5 − b4)) = 2.7406 · (5 + (4300·2.2513 − 2850·2.6626)/1450)
    /// = 2.7406 · 6.4427 = 17.66 s: the top rung from there, before the player's largest
    /// decision point (21 s) — the old constants needed more than 21 s.
    #[test]
    fn the_top_rung_comes_at_a_buffer_the_player_reaches() {
        assert_eq!(choose_at(17.5), 4);
        assert_eq!(choose_at(17.8), 5);
        assert_eq!(choose_at(21.0), 5);
        assert_eq!(choose_at(0.0), 0);
    }

    #[test]
    fn higher_buffers_never_choose_lower_rungs() {
        let mut last = 0;
        for tenths in 0..=250 {
            let q = choose_at(f64::from(tenths) / 10.0);
            assert!(
                q >= last,
                "at {} s: {q} after {last}",
                f64::from(tenths) / 10.0
            );
            last = q;
        }
        assert_eq!(last, LADDER.len() - 1);
    }
}
