//! How long the edge waits for an upstream body: the longest pause between chunks
//! (`upstream.body_idle_timeout`), a total deadline (`upstream.body_deadline`) and a minimum
//! rate (`upstream.min_body_rate` bytes/s, judged over [`RATE_WINDOW`]). A body that drips a
//! few bytes now and then passes an idle timeout but not these. Time the edge itself spent
//! waiting for slow readers (pass-through backpressure) is not counted against the upstream.

use std::time::Duration;

use tokio::time::Instant;

use crate::config::UpstreamConfig;

/// The span over which `min_body_rate` is judged (a body may pause, but not for long).
pub const RATE_WINDOW: Duration = Duration::from_secs(5);

/// The clocks of one upstream body.
#[derive(Debug, Clone)]
pub struct BodyPace {
    idle: Duration,
    deadline: Duration,
    min_rate: u64,
    started: Instant,
    excluded: Duration,
    last_data: Instant,
    window_start: Instant,
    window_bytes: u64,
}

impl BodyPace {
    /// Starts the clocks at `now` (the response head has arrived).
    pub fn new(cfg: &UpstreamConfig, now: Instant) -> Self {
        Self {
            idle: cfg.body_idle_timeout,
            deadline: cfg.body_deadline,
            min_rate: cfg.min_body_rate,
            started: now,
            excluded: Duration::ZERO,
            last_data: now,
            window_start: now,
            window_bytes: 0,
        }
    }

    /// Leaves `d` (time spent waiting for readers) out of every clock.
    pub fn exclude(&mut self, d: Duration) {
        self.excluded = self.excluded.saturating_add(d);
        self.last_data += d;
        self.window_start += d;
    }

    /// `n` body bytes arrived at `now`.
    pub fn received(&mut self, n: usize, now: Instant) {
        self.last_data = now;
        self.window_bytes = self.window_bytes.saturating_add(n as u64);
    }

    /// How long to wait for the next chunk at `now`, or why the body has failed.
    pub fn next_wait(&mut self, now: Instant) -> Result<Duration, String> {
        let elapsed = now
            .saturating_duration_since(self.started)
            .saturating_sub(self.excluded);
        if elapsed >= self.deadline {
            return Err(format!(
                "upstream body took longer than upstream.body_deadline ({:?})",
                self.deadline
            ));
        }
        let quiet = now.saturating_duration_since(self.last_data);
        if quiet >= self.idle {
            return Err(format!("no body data for {:?}", self.idle));
        }
        let mut window = now.saturating_duration_since(self.window_start);
        if window >= RATE_WINDOW {
            let needed = (self.min_rate as f64 * window.as_secs_f64()) as u64;
            if self.window_bytes < needed {
                return Err(format!(
                    "upstream body slower than upstream.min_body_rate ({} bytes/s): {} bytes in {:.1} s",
                    self.min_rate,
                    self.window_bytes,
                    window.as_secs_f64()
                ));
            }
            self.window_start = now;
            self.window_bytes = 0;
            window = Duration::ZERO;
        }
        Ok((self.idle - quiet)
            .min(self.deadline - elapsed)
            .min(RATE_WINDOW - window))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> UpstreamConfig {
        crate::config::Config::parse("t.toml", "[upstream]\nurls = [\"http://127.0.0.1:1\"]\n")
            .unwrap()
            .upstream
    }

    /// Regression: a body that drips 1 KiB every 2 s passed the 3 s idle timeout and was
    /// fetched forever; the minimum rate now ends it after one window.
    #[test]
    fn a_dripping_body_fails_the_minimum_rate() {
        let t0 = Instant::now();
        let mut p = BodyPace::new(&cfg(), t0);
        let mut t = t0;
        let failed = (1..100).find_map(|i| {
            t = t0 + Duration::from_secs(2 * i);
            if let Err(e) = p.next_wait(t) {
                return Some((i, e));
            }
            p.received(1024, t);
            None
        });
        let (i, e) = failed.unwrap();
        assert!(i <= 3, "failed after {i} drips");
        assert!(e.contains("min_body_rate"), "{e}");
    }

    #[test]
    fn a_steady_body_runs_until_the_deadline_and_reader_waits_do_not_count() {
        let c = cfg();
        let t0 = Instant::now();
        let mut p = BodyPace::new(&c, t0);
        let mut t = t0;
        while t < t0 + c.body_deadline - Duration::from_secs(1) {
            t += Duration::from_millis(500);
            assert!(p.next_wait(t).is_ok());
            p.received(64 * 1024, t);
        }
        // A minute waiting for readers is not the upstream's fault.
        p.exclude(Duration::from_secs(60));
        t += Duration::from_secs(60);
        assert!(p.next_wait(t).is_ok());
        t += Duration::from_secs(2);
        let e = p.next_wait(t).unwrap_err();
        assert!(e.contains("body_deadline"), "{e}");
    }

    #[test]
    fn a_pause_longer_than_the_idle_timeout_fails() {
        let c = cfg();
        let t0 = Instant::now();
        let mut p = BodyPace::new(&c, t0);
        assert_eq!(p.next_wait(t0).unwrap(), c.body_idle_timeout);
        let e = p.next_wait(t0 + c.body_idle_timeout).unwrap_err();
        assert!(e.contains("no body data"), "{e}");
    }
}
