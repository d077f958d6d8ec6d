//! The life of one rendition's input as a pure state machine: a source attaches, feeds, goes
//! quiet or too fast, detaches, and after a long enough absence the rendition ends. Times come
//! in as arguments, so every rule is testable without a clock or a socket; [`super::Input`]
//! is the thin owner that applies the decisions to the pipeline and the store.

use std::time::{Duration, Instant};

use crate::segmenter::Arrival;
use crate::timeline::TICKS_PER_SECOND;

/// The limits one input lives under.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Silence after which a feeding source counts as gone (none: never, the loop source).
    pub idle_timeout: Option<Duration>,
    /// How far media time may run ahead of the wall clock (none: not checked).
    pub max_lead: Option<Duration>,
    /// Absence after which the rendition ends with EXT-X-ENDLIST (none: never).
    pub endlist_after: Option<Duration>,
}

/// Where an input is in its life.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum State {
    /// Nothing feeds it; `since` the last source left (none: never fed since start-up, so the
    /// end-of-stream timer does not run).
    Idle {
        /// When the last source left.
        since: Option<Instant>,
    },
    /// A source is attached and feeding.
    Feeding(Feed),
    /// The last source ran too far ahead of the wall clock: no source may attach `until` its
    /// media is no longer ahead (UDP cannot be slowed down, so its input is dropped meanwhile).
    Refusing {
        /// When sources may attach again.
        until: Instant,
        /// When the last source left (for the end-of-stream timer).
        since: Instant,
    },
    /// EXT-X-ENDLIST is written; nothing may feed it again.
    Ended,
}

/// The attached source's bookkeeping.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Feed {
    /// Which attachment this is (a detached session's late calls must not touch a newer one).
    pub session: u64,
    /// The wall time the media delivered so far pays for: it starts at the attachment and
    /// advances by twice every step of media time, never past the present. Silence, garbage
    /// and a trickle too slow to play (under half real time) leave it behind; `idle_timeout`
    /// behind, the source is dropped.
    pub due: Instant,
    /// The newest media time seen.
    pub media: Option<i64>,
}

/// Why a source may not attach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The stream needs a credential and none was presented.
    #[error("this stream needs its ingest secret (Authorization: Bearer SECRET or ?token=SECRET)")]
    Unauthenticated,
    /// The credential presented is not the stream's.
    #[error("wrong ingest secret")]
    Forbidden,
    /// The last source ran ahead of real time; try again after this long.
    #[error("the input ran ahead of real time; send again in {} s at real-time pace (ffmpeg -re)", .0.as_secs_f64().ceil())]
    TooFast(Duration),
    /// Another source is feeding the rendition.
    #[error("another source is already feeding this rendition")]
    Busy,
    /// The rendition has ended.
    #[error("this rendition has ended (EXT-X-ENDLIST published); use a new stream name")]
    Ended,
}

impl Refusal {
    /// The metrics label (`origin_ingest_rejected_total{reason}`).
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Unauthenticated => "unauthenticated",
            Refusal::Forbidden => "forbidden",
            Refusal::TooFast(_) => "too_fast",
            Refusal::Busy => "busy",
            Refusal::Ended => "ended",
        }
    }
}

/// Why an attached source was cut off.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum Cutoff {
    /// Nothing arrived for the idle timeout (this long).
    #[error("no data for {}", humantime::format_duration(*.0))]
    Idle(Duration),
    /// Media time ran ahead of the wall clock by this many seconds.
    #[error("input runs {0:.1} s ahead of real time; send it at real-time pace (ffmpeg -re)")]
    TooFast(f64),
    /// A segment outgrew this many bytes.
    #[error("a segment exceeded {0} bytes; the input has no usable keyframes")]
    TooLarge(usize),
}

impl Cutoff {
    /// The metrics label (`origin_ingest_rejected_total{reason}`).
    pub fn as_str(self) -> &'static str {
        match self {
            Cutoff::Idle(_) => "idle",
            Cutoff::TooFast(_) => "too_fast",
            Cutoff::TooLarge(_) => "too_large",
        }
    }
}

/// What a timer tick decided.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Tick {
    /// Nothing is due.
    Nothing,
    /// The feeding session was dropped.
    Dropped(u64, Cutoff),
    /// The rendition ends now.
    End,
}

/// One input's state machine.
#[derive(Debug)]
pub struct Lifecycle {
    limits: Limits,
    state: State,
    sessions: u64,
}

impl Lifecycle {
    /// An input nothing has fed yet.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            state: State::Idle { since: None },
            sessions: 0,
        }
    }

    /// A source asks to feed at `now`; on success, its session number.
    pub fn attach(&mut self, now: Instant) -> Result<u64, Refusal> {
        match self.state {
            State::Feeding(_) => Err(Refusal::Busy),
            State::Ended => Err(Refusal::Ended),
            State::Refusing { until, .. } if now < until => Err(Refusal::TooFast(until - now)),
            State::Idle { .. } | State::Refusing { .. } => {
                self.sessions += 1;
                self.state = State::Feeding(Feed {
                    session: self.sessions,
                    due: now,
                    media: None,
                });
                Ok(self.sessions)
            }
        }
    }

    /// Whether `session` is the one feeding.
    pub fn is_feeding(&self, session: u64) -> bool {
        matches!(self.state, State::Feeding(f) if f.session == session)
    }

    /// The pipeline's media time (ticks since the Unix epoch: it is anchored to the wall
    /// clock) after feeding `session` input that arrived at `at`. Media further ahead of the
    /// wall clock than the limit would be stamped in the future: the source is cut off and
    /// none may attach until the wall clock has caught up with the media.
    pub fn media(
        &mut self,
        session: u64,
        media_time: Option<i64>,
        at: Arrival,
    ) -> Result<(), Cutoff> {
        let Some(t) = media_time else {
            return Ok(());
        };
        let State::Feeding(f) = &mut self.state else {
            return Ok(());
        };
        if f.session != session {
            return Ok(());
        }
        match f.media {
            None => f.due = at.at,
            Some(prev) if t > prev => {
                let step = Duration::from_secs_f64((t - prev) as f64 / TICKS_PER_SECOND as f64);
                f.due = (f.due + 2 * step).min(at.at);
            }
            Some(_) => {}
        }
        f.media = Some(f.media.map_or(t, |m| m.max(t)));
        let Some(max) = self.limits.max_lead else {
            return Ok(());
        };
        let lead = t.saturating_sub(at.wall) as f64 / TICKS_PER_SECOND as f64;
        if lead > max.as_secs_f64() {
            self.state = State::Refusing {
                until: at.at + Duration::from_secs_f64(lead),
                since: at.at,
            };
            return Err(Cutoff::TooFast(lead));
        }
        Ok(())
    }

    /// `session` leaves at `now` (its input ended, broke or was cut off); false if it had
    /// already been dropped.
    pub fn detach(&mut self, session: u64, now: Instant) -> bool {
        if self.is_feeding(session) {
            self.state = State::Idle { since: Some(now) };
            true
        } else {
            false
        }
    }

    /// When [`Lifecycle::tick`] next has something to do.
    pub fn deadline(&self) -> Option<Instant> {
        match self.state {
            State::Feeding(f) => self.limits.idle_timeout.map(|d| f.due + d),
            State::Idle { since: Some(t) } => self.limits.endlist_after.map(|d| t + d),
            State::Refusing { until, .. } => Some(until),
            State::Idle { since: None } | State::Ended => None,
        }
    }

    /// Applies whatever is due at `now`: a source whose media has not progressed for the idle
    /// timeout is dropped (the absence counts from its last progress), an absence of
    /// `endlist_after` ends the rendition.
    pub fn tick(&mut self, now: Instant) -> Tick {
        match self.deadline() {
            Some(d) if d <= now => {}
            _ => return Tick::Nothing,
        }
        match self.state {
            State::Feeding(f) => {
                self.state = State::Idle { since: Some(f.due) };
                let limit = self.limits.idle_timeout.unwrap_or_default();
                Tick::Dropped(f.session, Cutoff::Idle(limit))
            }
            State::Refusing { since, .. } => {
                self.state = State::Idle { since: Some(since) };
                Tick::Nothing
            }
            State::Idle { .. } => {
                self.state = State::Ended;
                Tick::End
            }
            State::Ended => Tick::Nothing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn limits() -> Limits {
        Limits {
            idle_timeout: Some(2 * S),
            max_lead: Some(8 * S),
            endlist_after: Some(5 * S),
        }
    }

    #[test]
    fn one_feeder_at_a_time_and_ended_is_final() {
        let t0 = Instant::now();
        let mut l = Lifecycle::new(limits());
        let a = l.attach(t0).unwrap();
        assert_eq!(l.attach(t0), Err(Refusal::Busy));
        assert!(l.detach(a, t0 + S));
        assert!(!l.detach(a, t0 + S), "a second detach is a no-op");
        let b = l.attach(t0 + 2 * S).unwrap();
        assert_ne!(a, b);
        assert!(l.detach(b, t0 + 3 * S));
        assert_eq!(l.tick(t0 + 7 * S), Tick::Nothing);
        assert_eq!(l.tick(t0 + 8 * S), Tick::End);
        assert_eq!(l.attach(t0 + 9 * S), Err(Refusal::Ended));
        assert_eq!(l.deadline(), None);
    }

    fn arrival(t0: Instant, secs: f64) -> Arrival {
        Arrival {
            at: t0 + Duration::from_secs_f64(secs),
            wall: 1_795_000_000 * TICKS_PER_SECOND + (secs * TICKS_PER_SECOND as f64) as i64,
        }
    }

    #[test]
    fn no_media_progress_drops_the_feeder_and_starts_the_end_timer_from_its_last_progress() {
        let t0 = Instant::now();
        let w = arrival(t0, 0.0).wall;
        let mut l = Lifecycle::new(limits());
        let a = l.attach(t0).unwrap();
        // Real-time media for 1 s keeps it alive.
        l.media(a, Some(w), arrival(t0, 0.0)).unwrap();
        l.media(a, Some(w + TICKS_PER_SECOND), arrival(t0, 1.0))
            .unwrap();
        assert_eq!(l.deadline(), Some(t0 + 3 * S));
        assert_eq!(l.tick(t0 + 2 * S), Tick::Nothing);
        assert_eq!(l.tick(t0 + 3 * S), Tick::Dropped(a, Cutoff::Idle(2 * S)));
        assert_eq!(l.deadline(), Some(t0 + 6 * S));
        assert_eq!(l.tick(t0 + 6 * S), Tick::End);
    }

    /// Item 14: bytes that trickle in without playable media progress do not keep a source
    /// attached: one 40 ms frame every 0.9 s buys 80 ms, and the source is dropped once it
    /// is `idle_timeout` behind.
    #[test]
    fn a_trickle_cannot_hold_the_rendition() {
        let t0 = Instant::now();
        let w = arrival(t0, 0.0).wall;
        let mut l = Lifecycle::new(limits());
        let a = l.attach(t0).unwrap();
        let mut dropped = None;
        for i in 0..20 {
            let secs = 0.9 * f64::from(i);
            let now = t0 + Duration::from_secs_f64(secs);
            if let Tick::Dropped(s, Cutoff::Idle(_)) = l.tick(now) {
                dropped = Some((s, secs));
                break;
            }
            l.media(a, Some(w + i64::from(i) * 3600), arrival(t0, secs))
                .unwrap();
        }
        let (s, at) = dropped.expect("the trickle was never dropped");
        assert_eq!(s, a);
        assert!(at < 4.0, "dropped only at {at} s");
    }

    /// A source slightly slower than real time (clock drift) is not dropped.
    #[test]
    fn a_slightly_slow_clock_survives() {
        let t0 = Instant::now();
        let w = arrival(t0, 0.0).wall;
        let mut l = Lifecycle::new(limits());
        let a = l.attach(t0).unwrap();
        for i in 0..10_000 {
            let secs = f64::from(i) * 0.1;
            let media = w + (f64::from(i) * 0.1 * 0.95 * TICKS_PER_SECOND as f64) as i64;
            l.media(a, Some(media), arrival(t0, secs)).unwrap();
            assert_eq!(
                l.tick(t0 + Duration::from_secs_f64(secs)),
                Tick::Nothing,
                "{secs}"
            );
        }
    }

    #[test]
    fn never_fed_never_ends() {
        let mut l = Lifecycle::new(limits());
        assert_eq!(l.deadline(), None);
        assert_eq!(l.tick(Instant::now() + 3600 * S), Tick::Nothing);
    }

    #[test]
    fn lead_beyond_the_limit_cuts_off_and_refuses_until_the_wall_clock_catches_up() {
        let t0 = Instant::now();
        let w0 = arrival(t0, 0.0).wall;
        let at = |secs: f64| arrival(t0, secs);
        let mut l = Lifecycle::new(limits());
        let a = l.attach(t0).unwrap();
        assert_eq!(l.media(a, Some(w0), at(0.0)), Ok(()));
        // 9 s of media in 0.5 s: 8.5 s ahead of the wall clock.
        let r = l.media(a, Some(w0 + 9 * TICKS_PER_SECOND), at(0.5));
        assert!(
            matches!(r, Err(Cutoff::TooFast(x)) if (x - 8.5).abs() < 1e-9),
            "{r:?}"
        );
        assert!(!l.is_feeding(a));
        // Nobody attaches until the media is no longer ahead (at 9 s).
        assert_eq!(
            l.attach(t0 + S),
            Err(Refusal::TooFast(Duration::from_secs(8)))
        );
        assert_eq!(l.deadline(), Some(t0 + 9 * S));
        assert_eq!(l.tick(t0 + 9 * S), Tick::Nothing);
        assert!(l.attach(t0 + 9 * S).is_ok());
    }
}
