//! Where pushed media meets the wall clock. A live input's media time is placed on the Unix
//! epoch timeline (90 kHz ticks) at the moment it arrives, at its first access unit and again
//! after every discontinuity, so PROGRAM-DATE-TIME tells the truth after an outage and
//! segment numbers (which follow media time) keep moving forward across restarts of the
//! input or the origin. The renditions of one stream share their anchors: a ladder pushed by
//! one encoder lands on the same ticks in every rendition even though each rendition's bytes
//! arrive a few milliseconds apart.

use std::sync::Mutex;

use crate::timeline::TICKS_PER_SECOND;
use crate::ts::PTS_MOD;

/// How far an arrival may be from where the latest anchor puts its PTS and still be read as
/// the same encoder clock (another rendition of the same ladder, or jitter) rather than as an
/// outage to re-anchor after.
pub const TOLERANCE: i64 = TICKS_PER_SECOND;

/// One stream's anchors.
#[derive(Debug, Default)]
pub struct Anchors {
    /// The latest placement: this PTS was put at this media time.
    last: Mutex<Option<(u64, i64)>>,
}

impl Anchors {
    /// Places `pts`, which arrived at wall-clock tick `wall`, on the stream's timeline, never
    /// before `floor` (the rendition's own media must not go backwards).
    pub fn place(&self, pts: u64, wall: i64, floor: Option<i64>) -> i64 {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let (t, placed) = place(*last, pts, wall, floor);
        *last = Some(placed);
        t
    }
}

/// The pure rule behind [`Anchors::place`]: the latest anchor's reading of `pts` if that is
/// within [`TOLERANCE`] of the arrival, else the arrival itself; then no earlier than `floor`.
/// Returns the media time and the anchor to keep.
pub fn place(
    last: Option<(u64, i64)>,
    pts: u64,
    wall: i64,
    floor: Option<i64>,
) -> (i64, (u64, i64)) {
    let pts = pts % PTS_MOD;
    let by_anchor = last.map(|(p0, t0)| {
        let mut d = ((pts + PTS_MOD - p0) % PTS_MOD) as i64;
        if d >= PTS_MOD as i64 / 2 {
            d -= PTS_MOD as i64;
        }
        t0.saturating_add(d)
    });
    let t = match by_anchor {
        Some(t) if t.saturating_sub(wall).abs() <= TOLERANCE => t,
        _ => wall,
    };
    let t = floor.map_or(t, |f| t.max(f));
    (t, (pts, t))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = TICKS_PER_SECOND;
    const W: i64 = 1_795_000_000 * S;

    #[test]
    fn renditions_of_one_encoder_share_the_first_anchor() {
        let a = Anchors::default();
        let t_a = a.place(126_000, W, None);
        assert_eq!(t_a, W);
        // The second rendition's same keyframe arrives 40 ms later: same tick.
        assert_eq!(a.place(126_000, W + S / 25, None), W);
        // And a later keyframe of it lands where the encoder clock says.
        assert_eq!(
            a.place(126_000 + 2 * S as u64, W + 2 * S + 30, None),
            W + 2 * S
        );
    }

    #[test]
    fn an_outage_re_anchors_to_the_arrival_and_never_goes_back() {
        let a = Anchors::default();
        a.place(0, W, None);
        // The encoder restarts from PTS 0 after 10 s: the arrival wins.
        assert_eq!(a.place(0, W + 16 * S, Some(W + 6 * S)), W + 16 * S);
        // Input running ahead of the wall clock is not pulled back before its own media.
        assert_eq!(a.place(900_000, W + 17 * S, Some(W + 25 * S)), W + 25 * S);
    }

    #[test]
    fn pts_wrap_is_read_as_a_small_step() {
        let (t, _) = place(Some((PTS_MOD - 90, W)), 90, W + 2, None);
        assert_eq!(t, W + 180);
    }
}
