//! The emulated access link of one player: reads are paced on the receive side so that
//! bytes reach the player no faster than its bandwidth schedule allows (a token bucket with
//! no burst), and each request first pays the schedule's latency. The schedule is the same
//! [`Network`] model the offline mode uses, advanced by wall time.

use std::time::Duration;

use tokio::time::Instant;

use crate::network::Network;
use crate::trace::Trace;

/// A player's link, positioned in its schedule by wall time since the player joined.
#[derive(Debug)]
pub struct Link<'a> {
    net: Network<'a>,
    joined: Instant,
    /// How far into the schedule the link has been accounted.
    clock: Instant,
}

impl<'a> Link<'a> {
    /// A link that starts its schedule at `joined`.
    pub fn new(trace: &'a Trace, joined: Instant) -> Self {
        Self {
            net: Network::new(trace),
            joined,
            clock: joined,
        }
    }

    /// Idle time passes for the schedule too.
    fn catch_up(&mut self, now: Instant) {
        if now > self.clock {
            self.net.delay(ms(now - self.clock));
            self.clock = now;
        }
    }

    /// The moment the next request may go out: now plus the schedule's latency.
    pub fn request_at(&mut self) -> Instant {
        self.catch_up(Instant::now());
        let l = self.net.latency();
        self.clock += from_ms(l);
        self.clock
    }

    /// The latency a request sent now would see, without charging the link for it (a
    /// request made beside a download in progress).
    pub fn latency_now(&mut self) -> Duration {
        self.catch_up(Instant::now());
        from_ms(self.net.latency_now())
    }

    /// The moment `bytes` more have been delivered (sleep until then before using them).
    pub fn deliver(&mut self, bytes: usize) -> Instant {
        self.catch_up(Instant::now());
        let t = self.net.transfer(bytes as f64 * 8.0);
        self.clock += from_ms(t);
        self.clock
    }

    /// How many bytes the link delivers in the next `ms` of its schedule, from now or from
    /// where its accounting stands (whichever is later).
    pub fn bytes_within(&mut self, ms: f64) -> usize {
        self.catch_up(Instant::now());
        (self.net.capacity_bits(ms) / 8.0).min(usize::MAX as f64) as usize
    }

    /// Milliseconds since the player joined.
    pub fn elapsed_ms(&self) -> f64 {
        ms(Instant::now().saturating_duration_since(self.joined))
    }
}

/// A `Duration` in milliseconds.
pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Milliseconds as a `Duration` (clamped to 0..1 day, so bad arithmetic cannot panic).
pub(crate) fn from_ms(ms: f64) -> Duration {
    Duration::from_secs_f64((ms / 1000.0).clamp(0.0, 86_400.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn paces_reads_to_the_schedule() {
        // 800 kbit/s (100 kB/s) with 50 ms latency.
        let t = Trace::parse(
            "t",
            r#"[{"duration_ms": 100000, "bandwidth_kbps": 800, "latency_ms": 50}]"#,
        )
        .unwrap();
        let start = Instant::now();
        let mut link = Link::new(&t, start);
        assert_eq!(link.request_at() - start, Duration::from_millis(50));
        // 50 kB take 500 ms after the latency; a second 50 kB another 500 ms.
        assert_eq!(link.deliver(50_000) - start, Duration::from_millis(550));
        assert_eq!(link.deliver(50_000) - start, Duration::from_millis(1050));
        // 100 ms of link time carries 10 kB.
        assert_eq!(link.bytes_within(100.0), 10_000);
        // After 10 s idle, the link is free again at once.
        tokio::time::advance(Duration::from_secs(10)).await;
        let now = Instant::now();
        assert_eq!(link.deliver(100_000) - now, Duration::from_millis(1000));
    }
}
