//! The sliding window of one rendition: the segments listed in its playlist, plus those that
//! left the playlist recently and must stay fetchable (RFC 8216 §6.2.2).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

/// One published segment.
#[derive(Debug)]
pub struct Segment {
    /// Media sequence number (also its name).
    pub msn: u64,
    /// Duration in 90 kHz ticks.
    pub duration: i64,
    /// PROGRAM-DATE-TIME of its first frame, Unix milliseconds.
    pub pdt_ms: i64,
    /// A discontinuity precedes it.
    pub discontinuity: bool,
    /// The MPEG-TS bytes.
    pub data: Bytes,
    /// Strong ETag (content hash), identical on every origin publishing the same bytes.
    pub etag: String,
    /// Video frames in it.
    pub frames: u32,
    /// Unix seconds when it was published (Last-Modified).
    pub published_unix: u64,
}

impl Segment {
    /// Duration in seconds.
    pub fn duration_secs(&self) -> f64 {
        self.duration as f64 / 90_000.0
    }
}

/// Why a segment was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    /// Names are never reused: a segment must come after the newest one.
    #[error("segment {msn} does not follow the newest segment {newest}")]
    NotIncreasing {
        /// The rejected number.
        msn: u64,
        /// The newest number in the window.
        newest: u64,
    },
}

/// Listed segments plus recently retired ones.
#[derive(Debug)]
pub struct Window {
    capacity: usize,
    listed: VecDeque<Arc<Segment>>,
    retired: VecDeque<(Arc<Segment>, Instant)>,
    discontinuity_sequence: u64,
}

impl Window {
    /// A window listing at most `capacity` segments.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            listed: VecDeque::with_capacity(capacity + 1),
            retired: VecDeque::new(),
            discontinuity_sequence: 0,
        }
    }

    /// Adds the newest segment at `now`, retiring the oldest beyond capacity.
    pub fn push(&mut self, seg: Arc<Segment>, now: Instant) -> Result<(), WindowError> {
        if let Some(newest) = self.newest_msn()
            && seg.msn <= newest
        {
            return Err(WindowError::NotIncreasing {
                msn: seg.msn,
                newest,
            });
        }
        self.listed.push_back(seg);
        while self.listed.len() > self.capacity {
            if let Some(old) = self.listed.pop_front() {
                if old.discontinuity {
                    self.discontinuity_sequence += 1;
                }
                self.retired.push_back((old, now));
            }
        }
        self.expire(now);
        Ok(())
    }

    /// Drops retired segments that have been out of the playlist longer than the playlist's
    /// duration plus their own (the RFC's minimum), and caps them at one window's worth.
    pub fn expire(&mut self, now: Instant) {
        let keep_for = self.duration() + Duration::from_secs(1);
        while let Some((seg, at)) = self.retired.front() {
            let grace = keep_for + Duration::from_secs_f64(seg.duration_secs());
            if now.duration_since(*at) > grace || self.retired.len() > self.capacity * 2 {
                self.retired.pop_front();
            } else {
                break;
            }
        }
    }

    /// The segment named `msn`, if listed or still retained.
    pub fn get(&self, msn: u64) -> Option<&Arc<Segment>> {
        self.listed
            .iter()
            .find(|s| s.msn == msn)
            .or_else(|| self.retired.iter().map(|(s, _)| s).find(|s| s.msn == msn))
    }

    /// Listed segments, oldest first.
    pub fn listed(&self) -> impl ExactSizeIterator<Item = &Arc<Segment>> {
        self.listed.iter()
    }

    /// Number of the newest segment.
    pub fn newest_msn(&self) -> Option<u64> {
        self.listed.back().map(|s| s.msn)
    }

    /// EXT-X-MEDIA-SEQUENCE.
    pub fn media_sequence(&self) -> u64 {
        self.listed.front().map(|s| s.msn).unwrap_or(0)
    }

    /// EXT-X-DISCONTINUITY-SEQUENCE.
    pub fn discontinuity_sequence(&self) -> u64 {
        self.discontinuity_sequence
    }

    /// Whether the window lists `capacity` segments.
    pub fn is_full(&self) -> bool {
        self.listed.len() >= self.capacity
    }

    /// Total duration of the listed segments.
    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.listed.iter().map(|s| s.duration_secs()).sum())
    }

    /// Bytes held, listed and retired.
    pub fn bytes(&self) -> usize {
        self.listed.iter().map(|s| s.data.len()).sum::<usize>()
            + self
                .retired
                .iter()
                .map(|(s, _)| s.data.len())
                .sum::<usize>()
    }

    /// Segments held, listed and retired.
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.listed.len() + self.retired.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn seg(msn: u64, disc: bool) -> Arc<Segment> {
        Arc::new(Segment {
            msn,
            duration: 180_000,
            pdt_ms: msn as i64 * 2000,
            discontinuity: disc,
            data: Bytes::from(vec![0x47; 188]),
            etag: String::new(),
            frames: 50,
            published_unix: 0,
        })
    }

    #[test]
    fn retired_segments_stay_fetchable_then_expire() {
        let t0 = Instant::now();
        let mut w = Window::new(3);
        for m in 0..5 {
            w.push(seg(m, false), t0).unwrap();
        }
        assert_eq!(w.media_sequence(), 2);
        assert!(w.get(0).is_some() && w.get(1).is_some());
        w.expire(t0 + Duration::from_secs(6));
        assert!(
            w.get(0).is_some(),
            "kept for playlist duration + segment duration"
        );
        w.expire(t0 + Duration::from_secs(10));
        assert!(w.get(0).is_none() && w.get(2).is_some());
    }

    #[test]
    fn rejects_reused_names() {
        let mut w = Window::new(3);
        w.push(seg(5, false), Instant::now()).unwrap();
        assert_eq!(
            w.push(seg(5, false), Instant::now()),
            Err(WindowError::NotIncreasing { msn: 5, newest: 5 })
        );
    }

    proptest! {
        /// Media sequence never goes backwards, the window never exceeds its capacity, the
        /// discontinuity sequence counts exactly the discontinuities that slid out, and
        /// memory stays bounded however many segments pass through.
        #[test]
        fn window_invariants(cap in 1usize..10, steps in proptest::collection::vec((1u64..4, any::<bool>(), 0u64..3000), 1..200)) {
            let t0 = Instant::now();
            let mut w = Window::new(cap);
            let mut msn = 0u64;
            let mut all = Vec::new();
            let mut last_ms = 0;
            let mut elapsed = 0u64;
            for (gap, disc, dt) in steps {
                msn += gap;
                elapsed += dt;
                w.push(seg(msn, disc), t0 + Duration::from_millis(elapsed)).unwrap();
                all.push((msn, disc));
                prop_assert!(w.media_sequence() >= last_ms);
                last_ms = w.media_sequence();
                prop_assert!(w.listed().len() <= cap);
                prop_assert!(w.held() <= cap * 3 + 1);
                let slid = all.iter().filter(|(m, d)| *m < w.media_sequence() && *d).count() as u64;
                prop_assert_eq!(w.discontinuity_sequence(), slid);
                prop_assert_eq!(w.newest_msn(), Some(msn));
            }
        }
    }
}
