//! The offline network model, as Sabre's: each request first pays the current period's
//! latency, then transfers its bits at the bandwidth of each period it spans; the trace loops.

use crate::trace::Trace;

/// Timing of one download.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Download {
    /// Time to first byte (the latency), ms.
    pub latency_ms: f64,
    /// Transfer time after the first byte, ms.
    pub transfer_ms: f64,
}

impl Download {
    /// Request to last byte, ms.
    pub fn total_ms(&self) -> f64 {
        self.latency_ms + self.transfer_ms
    }
}

/// A position in a looping trace.
#[derive(Debug, Clone)]
pub struct Network<'a> {
    trace: &'a Trace,
    index: usize,
    time_to_next: f64,
}

impl<'a> Network<'a> {
    /// Starts at the beginning of `trace` (which has at least one period with bandwidth).
    pub fn new(trace: &'a Trace) -> Self {
        Self {
            trace,
            index: 0,
            time_to_next: trace.periods[0].duration_ms,
        }
    }

    fn next_period(&mut self) {
        self.index = (self.index + 1) % self.trace.periods.len();
        self.time_to_next = self.trace.periods[self.index].duration_ms;
    }

    /// Lets `ms` pass without transferring (the player is idle).
    pub fn delay(&mut self, mut ms: f64) {
        while ms > self.time_to_next {
            ms -= self.time_to_next;
            self.next_period();
        }
        self.time_to_next -= ms;
    }

    /// The latency of the period the model is in, ms (nothing is paid).
    pub fn latency_now(&self) -> f64 {
        self.trace.periods[self.index].latency_ms
    }

    /// Pays one request's latency from here; returns it, ms.
    pub fn latency(&mut self) -> f64 {
        let mut units = 1.0;
        let mut total = 0.0;
        while units > 0.0 {
            let lat = self.trace.periods[self.index].latency_ms;
            let t = units * lat;
            if t <= self.time_to_next {
                total += t;
                self.time_to_next -= t;
                units = 0.0;
            } else {
                total += self.time_to_next;
                units -= self.time_to_next / lat;
                self.next_period();
            }
        }
        total
    }

    /// Transfers `bits` from here; returns the time it takes, ms.
    pub fn transfer(&mut self, mut bits: f64) -> f64 {
        let mut total = 0.0;
        while bits > 0.0 {
            let bw = self.trace.periods[self.index].bandwidth_kbps;
            if bits <= self.time_to_next * bw {
                let t = bits / bw;
                total += t;
                self.time_to_next -= t;
                bits = 0.0;
            } else {
                total += self.time_to_next;
                bits -= self.time_to_next * bw;
                self.next_period();
            }
        }
        total
    }

    /// Bits the link can transfer in the next `ms` (without moving along the trace).
    pub fn capacity_bits(&self, mut ms: f64) -> f64 {
        let periods = &self.trace.periods;
        let (mut index, mut left) = (self.index, self.time_to_next);
        let mut bits = 0.0;
        // Bounded: a trace of zero-length periods must not spin forever.
        for _ in 0..=periods.len() {
            let t = ms.min(left);
            bits += t * periods[index].bandwidth_kbps;
            ms -= t;
            if ms <= 0.0 {
                break;
            }
            index = (index + 1) % periods.len();
            left = periods[index].duration_ms;
        }
        bits
    }

    /// Downloads `bits`: latency, then transfer.
    pub fn download(&mut self, bits: f64) -> Download {
        let latency_ms = self.latency();
        let transfer_ms = self.transfer(bits);
        Download {
            latency_ms,
            transfer_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trace(json: &str) -> Trace {
        Trace::parse("t", json).unwrap()
    }

    #[test]
    fn transfer_spans_periods_and_loops() {
        // 1000 kbps for 1 s, then 500 kbps for 1 s, latency 100 then 200 ms.
        let t = trace(
            r#"[{"duration_ms":1000,"bandwidth_kbps":1000,"latency_ms":100},{"duration_ms":1000,"bandwidth_kbps":500,"latency_ms":200}]"#,
        );
        let mut n = Network::new(&t);
        // 100 ms latency, then 900 ms at 1000 kbps (900 kbit), then 200 kbit at 500 kbps = 400 ms.
        let d = n.download(1_100_000.0);
        assert_eq!(
            d,
            Download {
                latency_ms: 100.0,
                transfer_ms: 1300.0
            }
        );
        // 600 ms left in period 2: latency 200, then 400 ms * 500 = 200 kbit, then loops to 1000 kbps.
        let d = n.download(300_000.0);
        assert_eq!(
            d,
            Download {
                latency_ms: 200.0,
                transfer_ms: 500.0
            }
        );
    }

    #[test]
    fn latency_can_straddle_periods() {
        let t = trace(
            r#"[{"duration_ms":50,"bandwidth_kbps":1000,"latency_ms":100},{"duration_ms":1000,"bandwidth_kbps":1000,"latency_ms":200}]"#,
        );
        let mut n = Network::new(&t);
        // Half the latency unit is spent in period 1 (50 of 100 ms), the other half at 200 ms.
        assert_eq!(n.download(0.0).latency_ms, 150.0);
    }
}
