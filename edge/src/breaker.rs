//! A circuit breaker per upstream: after enough consecutive failures it opens and the
//! upstream is skipped; after a while one trial request is let through, and its result
//! closes or reopens the breaker.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Breaker position; also the value of `edge_upstream_breaker_state` (0, 1, 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// Requests flow.
    Closed,
    /// Requests are refused until the open period ends.
    Open,
    /// One trial request is (or may be) in flight.
    HalfOpen,
}

impl Position {
    /// The gauge value.
    pub fn as_i64(self) -> i64 {
        match self {
            Position::Closed => 0,
            Position::Open => 1,
            Position::HalfOpen => 2,
        }
    }
}

#[derive(Debug)]
struct Inner {
    position: Position,
    failures: u32,
    opened_at: Instant,
    trial_in_flight: bool,
}

/// One upstream's breaker.
#[derive(Debug)]
pub struct Breaker {
    threshold: u32,
    open_for: Duration,
    inner: Mutex<Inner>,
}

impl Breaker {
    /// A closed breaker that opens after `threshold` consecutive failures for `open_for`.
    pub fn new(threshold: u32, open_for: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            open_for,
            inner: Mutex::new(Inner {
                position: Position::Closed,
                failures: 0,
                opened_at: Instant::now(),
                trial_in_flight: false,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where it stands now (an expired open period reads as half-open).
    pub fn position(&self) -> Position {
        let i = self.lock();
        if i.position == Position::Open && i.opened_at.elapsed() >= self.open_for {
            Position::HalfOpen
        } else {
            i.position
        }
    }

    /// May a request go to this upstream now? In half-open, only one trial at a time.
    /// Returns the transition to log, if any.
    pub fn allow(&self) -> (bool, Option<Position>) {
        let mut i = self.lock();
        match i.position {
            Position::Closed => (true, None),
            Position::Open if i.opened_at.elapsed() >= self.open_for => {
                i.position = Position::HalfOpen;
                i.trial_in_flight = true;
                (true, Some(Position::HalfOpen))
            }
            Position::Open => (false, None),
            Position::HalfOpen if !i.trial_in_flight => {
                i.trial_in_flight = true;
                (true, None)
            }
            Position::HalfOpen => (false, None),
        }
    }

    /// Records a success; returns the transition to log, if any.
    pub fn success(&self) -> Option<Position> {
        let mut i = self.lock();
        i.failures = 0;
        i.trial_in_flight = false;
        (i.position != Position::Closed).then(|| {
            i.position = Position::Closed;
            Position::Closed
        })
    }

    /// Records a failure; returns the transition to log, if any.
    pub fn failure(&self) -> Option<Position> {
        let mut i = self.lock();
        i.failures = i.failures.saturating_add(1);
        i.trial_in_flight = false;
        let trips = i.position == Position::HalfOpen
            || (i.position == Position::Closed && i.failures >= self.threshold);
        if trips {
            i.position = Position::Open;
            i.opened_at = Instant::now();
            return Some(Position::Open);
        }
        if i.position == Position::Open {
            i.opened_at = Instant::now();
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn opens_half_opens_and_closes() {
        let b = Breaker::new(3, Duration::from_secs(2));
        assert_eq!(b.failure(), None);
        assert_eq!(b.failure(), None);
        assert_eq!(b.failure(), Some(Position::Open));
        assert_eq!(b.allow(), (false, None));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(b.position(), Position::HalfOpen);
        assert_eq!(b.allow(), (true, Some(Position::HalfOpen)));
        assert_eq!(b.allow(), (false, None), "one trial at a time");
        assert_eq!(b.failure(), Some(Position::Open), "a failed trial reopens");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(b.allow().0);
        assert_eq!(b.success(), Some(Position::Closed));
        assert_eq!(b.allow(), (true, None));
    }
}
