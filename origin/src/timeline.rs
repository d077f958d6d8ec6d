//! Maps 33-bit PTS values onto one continuous 64-bit media timeline (90 kHz ticks), across
//! the PTS wrap, and detects jumps that make a discontinuity.

use crate::ts::PTS_MOD;

/// 90 kHz ticks per second.
pub const TICKS_PER_SECOND: i64 = 90_000;

/// The wall clock on the media timeline: ticks since the Unix epoch.
pub fn epoch_ticks() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    d.as_secs() as i64 * TICKS_PER_SECOND
        + i64::from(d.subsec_nanos()) * TICKS_PER_SECOND / 1_000_000_000
}

/// A PTS either continues the timeline or jumped away from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mapped {
    /// The extended media time.
    Continuous(i64),
    /// The PTS is further than the jump threshold from the last one; `delta` is the signed
    /// distance in ticks (modulo the wrap).
    Jump {
        /// Signed distance from the previous PTS.
        delta: i64,
    },
}

/// Continuous media time from wrapping PTS.
#[derive(Debug, Clone)]
pub struct Timeline {
    last: Option<(u64, i64)>,
    hint: Option<i64>,
    forward_limit: i64,
    backward_limit: i64,
}

impl Timeline {
    /// A timeline whose first PTS is placed on the 2^33 wrap nearest `hint` (the loop source
    /// passes the wall clock so media time counts from the Unix epoch); without a hint the
    /// first PTS is taken as is. Forward steps over `forward_limit` ticks and backward steps
    /// over `backward_limit` are jumps.
    pub fn new(hint: Option<i64>, forward_limit: i64, backward_limit: i64) -> Self {
        Self {
            last: None,
            hint,
            forward_limit,
            backward_limit,
        }
    }

    /// Places `pts` on the timeline (without moving it on a jump).
    pub fn map(&mut self, pts: u64) -> Mapped {
        let pts = pts % PTS_MOD;
        let ext = match self.last {
            None => match self.hint {
                Some(h) => {
                    let wraps = (h - pts as i64).div_euclid(PTS_MOD as i64);
                    let lo = pts as i64 + wraps * PTS_MOD as i64;
                    if h - lo > PTS_MOD as i64 / 2 {
                        lo + PTS_MOD as i64
                    } else {
                        lo
                    }
                }
                None => pts as i64,
            },
            Some((raw, ext)) => {
                let mut d = ((pts + PTS_MOD - raw) % PTS_MOD) as i64;
                if d >= PTS_MOD as i64 / 2 {
                    d -= PTS_MOD as i64;
                }
                if d > self.forward_limit || d < -self.backward_limit {
                    return Mapped::Jump { delta: d };
                }
                ext + d
            }
        };
        self.last = Some((pts, ext));
        Mapped::Continuous(ext)
    }

    /// Whether a PTS has been placed yet.
    pub fn is_placed(&self) -> bool {
        self.last.is_some()
    }

    /// Declares that `pts` is at media time `ext` from now on (after a jump).
    pub fn rebase(&mut self, pts: u64, ext: i64) {
        self.last = Some((pts % PTS_MOD, ext));
    }

    /// Extended time of a PTS near the last one, without moving the timeline (for DTS).
    pub fn peek(&self, pts: u64) -> Option<i64> {
        let (raw, ext) = self.last?;
        let mut d = ((pts % PTS_MOD + PTS_MOD - raw) % PTS_MOD) as i64;
        if d >= PTS_MOD as i64 / 2 {
            d -= PTS_MOD as i64;
        }
        Some(ext + d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwraps_33_bit_wrap() {
        let mut t = Timeline::new(None, 10 * TICKS_PER_SECOND, TICKS_PER_SECOND);
        let start = PTS_MOD - 3600;
        assert_eq!(t.map(start), Mapped::Continuous(start as i64));
        assert_eq!(t.map(0), Mapped::Continuous(PTS_MOD as i64));
        assert_eq!(t.map(3600), Mapped::Continuous(PTS_MOD as i64 + 3600));
    }

    #[test]
    fn hint_places_first_pts_near_epoch() {
        let epoch = 1_795_000_000i64 * TICKS_PER_SECOND;
        let pts = (epoch as u64) % PTS_MOD;
        let mut t = Timeline::new(Some(epoch + 500), 10, 10);
        assert_eq!(t.map(pts), Mapped::Continuous(epoch));
        let mut t = Timeline::new(Some(epoch - 500), 10, 10);
        assert_eq!(t.map(pts), Mapped::Continuous(epoch));
    }

    #[test]
    fn detects_jumps_both_ways() {
        let mut t = Timeline::new(None, 10 * TICKS_PER_SECOND, TICKS_PER_SECOND);
        assert_eq!(t.map(900_000), Mapped::Continuous(900_000));
        assert_eq!(t.map(900_000 - 7200), Mapped::Continuous(892_800)); // B-frame reorder
        assert_eq!(
            t.map(126_000),
            Mapped::Jump {
                delta: 126_000 - 892_800
            }
        );
        assert!(matches!(t.map(900_000 * 20), Mapped::Jump { .. }));
        t.rebase(126_000, 1_000_000);
        assert_eq!(t.map(129_600), Mapped::Continuous(1_003_600));
    }
}
