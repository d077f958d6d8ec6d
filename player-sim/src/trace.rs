//! Network traces: bandwidth and latency over time, read from the formats the ABR literature
//! uses (Sabre JSON, Mahimahi packet-delivery, Pensieve "cooked"), with scale/offset/loop
//! transforms.

use std::path::Path;

/// One period of constant conditions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Period {
    /// Length, milliseconds.
    pub duration_ms: f64,
    /// Bandwidth, kbit/s (equivalently bits per millisecond).
    pub bandwidth_kbps: f64,
    /// Round-trip latency paid once per request, milliseconds.
    pub latency_ms: f64,
}

/// A network trace (replayed in a loop when a session outlasts it).
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    /// Name (file name) for reports.
    pub name: String,
    /// The periods, in order.
    pub periods: Vec<Period>,
}

/// Why a trace could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The content is not a trace in any known format.
    #[error("{path}: line {line}: {message}")]
    Format {
        /// The file.
        path: String,
        /// 1-based line (0 when not line-based).
        line: usize,
        /// What is wrong.
        message: String,
    },
}

#[derive(serde::Deserialize)]
struct SabrePeriod {
    duration_ms: f64,
    bandwidth_kbps: f64,
    latency_ms: f64,
}

impl Trace {
    /// Reads a trace, detecting the format: a JSON array (Sabre), one integer per line
    /// (Mahimahi millisecond delivery opportunities), or `seconds Mbps` pairs (Pensieve cooked).
    pub fn load(path: &Path) -> Result<Self, TraceError> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = std::fs::read_to_string(path).map_err(|source| TraceError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&name, &text).map_err(|(line, message)| TraceError::Format {
            path: path.display().to_string(),
            line,
            message,
        })
    }

    /// Parses trace text (see [`Trace::load`]); errors carry a line number.
    pub fn parse(name: &str, text: &str) -> Result<Self, (usize, String)> {
        let trimmed = text.trim_start();
        let periods = if trimmed.starts_with('[') {
            let raw: Vec<SabrePeriod> =
                serde_json::from_str(text).map_err(|e| (e.line(), e.to_string()))?;
            raw.into_iter()
                .map(|p| Period {
                    duration_ms: p.duration_ms,
                    bandwidth_kbps: p.bandwidth_kbps,
                    latency_ms: p.latency_ms,
                })
                .collect()
        } else {
            let lines: Vec<(usize, &str)> = text
                .lines()
                .enumerate()
                .map(|(i, l)| (i + 1, l.trim()))
                .filter(|(_, l)| !l.is_empty())
                .collect();
            let two_columns = lines
                .first()
                .is_some_and(|(_, l)| l.split_whitespace().count() >= 2);
            if two_columns {
                parse_cooked(&lines)?
            } else {
                parse_mahimahi(&lines)?
            }
        };
        let t = Trace {
            name: name.to_string(),
            periods,
        };
        t.check().map_err(|m| (0, m))?;
        Ok(t)
    }

    fn check(&self) -> Result<(), String> {
        if self.periods.is_empty() {
            return Err("trace has no periods".into());
        }
        for (i, p) in self.periods.iter().enumerate() {
            if !(p.duration_ms.is_finite()
                && p.duration_ms > 0.0
                && p.bandwidth_kbps.is_finite()
                && p.bandwidth_kbps >= 0.0
                && p.latency_ms.is_finite()
                && p.latency_ms >= 0.0)
            {
                return Err(format!(
                    "period {i}: durations must be > 0, bandwidth and latency >= 0"
                ));
            }
        }
        if self.periods.iter().all(|p| p.bandwidth_kbps == 0.0) {
            return Err("trace never has any bandwidth".into());
        }
        Ok(())
    }

    /// Multiplies every bandwidth by `factor`.
    pub fn scaled(mut self, factor: f64) -> Self {
        for p in &mut self.periods {
            p.bandwidth_kbps *= factor;
        }
        self
    }

    /// Starts the trace `offset_ms` in (wrapping around).
    pub fn offset(mut self, offset_ms: f64) -> Self {
        let total: f64 = self.periods.iter().map(|p| p.duration_ms).sum();
        let mut skip = offset_ms.rem_euclid(total);
        let mut i = 0;
        while skip > 0.0 && i < self.periods.len() {
            if self.periods[i].duration_ms > skip {
                let mut first = self.periods[i];
                first.duration_ms -= skip;
                let mut rotated = vec![first];
                rotated.extend_from_slice(&self.periods[i + 1..]);
                let mut head = self.periods[..i].to_vec();
                let mut tail = self.periods[i];
                tail.duration_ms = skip;
                head.push(tail);
                rotated.extend(head);
                self.periods = rotated;
                return self;
            }
            skip -= self.periods[i].duration_ms;
            i += 1;
        }
        self
    }

    /// Sets every period's latency (Mahimahi and cooked traces carry none).
    pub fn with_latency(mut self, latency_ms: f64) -> Self {
        for p in &mut self.periods {
            p.latency_ms = latency_ms;
        }
        self
    }
}

/// Pensieve cooked traces: `time_seconds bandwidth_mbps` per line; each line holds until the next.
fn parse_cooked(lines: &[(usize, &str)]) -> Result<Vec<Period>, (usize, String)> {
    let mut pts = Vec::with_capacity(lines.len());
    for (n, l) in lines {
        let mut it = l.split_whitespace();
        let t: f64 = it
            .next()
            .and_then(|v| v.parse().ok())
            .ok_or((*n, "expected `seconds Mbps`".to_string()))?;
        let bw: f64 = it
            .next()
            .and_then(|v| v.parse().ok())
            .ok_or((*n, "expected `seconds Mbps`".to_string()))?;
        pts.push((t, bw));
    }
    let mut out = Vec::new();
    for w in pts.windows(2) {
        let d = (w[1].0 - w[0].0) * 1000.0;
        if d > 0.0 {
            out.push(Period {
                duration_ms: d,
                bandwidth_kbps: w[0].1 * 1000.0,
                latency_ms: 0.0,
            });
        }
    }
    Ok(out)
}

/// Mahimahi: one line per 1500-byte delivery opportunity, its millisecond timestamp. As in
/// mahimahi's `LinkQueue`, the schedule repeats with a period equal to the last timestamp
/// (so `0 1 2 3 4` is 5 opportunities every 4 ms). Binned into periods of at most 100 ms.
fn parse_mahimahi(lines: &[(usize, &str)]) -> Result<Vec<Period>, (usize, String)> {
    let mut stamps = Vec::with_capacity(lines.len());
    let mut prev = 0;
    for (n, l) in lines {
        let t = l
            .parse::<u64>()
            .map_err(|_| (*n, "expected a millisecond timestamp".to_string()))?;
        if t < prev {
            return Err((*n, "timestamps must not decrease".to_string()));
        }
        prev = t;
        stamps.push(t);
    }
    let Some(&period) = stamps.last() else {
        return Ok(Vec::new());
    };
    if period == 0 {
        return Err((
            lines.len(),
            "the trace must last for a nonzero time".to_string(),
        ));
    }
    let bin = period.min(100);
    let bins = period.div_ceil(bin) as usize;
    let mut counts = vec![0u64; bins];
    for s in stamps {
        counts[((s % period) / bin) as usize] += 1;
    }
    Ok(counts
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let d = (period - i as u64 * bin).min(bin) as f64;
            Period {
                duration_ms: d,
                bandwidth_kbps: (c * 1500 * 8) as f64 / d,
                latency_ms: 0.0,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_three_formats() {
        let s = Trace::parse(
            "s",
            r#"[{"duration_ms": 1000, "bandwidth_kbps": 800, "latency_ms": 50}]"#,
        )
        .unwrap();
        assert_eq!(
            s.periods[0],
            Period {
                duration_ms: 1000.0,
                bandwidth_kbps: 800.0,
                latency_ms: 50.0
            }
        );
        let c = Trace::parse("c", "0.0 1.5\n1.0 3.0\n3.0 0.5\n").unwrap();
        assert_eq!(c.periods.len(), 2);
        assert_eq!(
            c.periods[1],
            Period {
                duration_ms: 2000.0,
                bandwidth_kbps: 3000.0,
                latency_ms: 0.0
            }
        );
        let m = Trace::parse("m", "0\n0\n50\n150\n200\n").unwrap();
        // Period 200 ms: [0, 100) holds 0, 0, 50 and the wrapped 200; [100, 200) holds 150.
        assert_eq!(m.periods[0].bandwidth_kbps, 4.0 * 12_000.0 / 100.0);
        assert_eq!(m.periods[1].bandwidth_kbps, 12_000.0 / 100.0);
        assert!(Trace::parse("bad", "0 x\n").is_err());
        assert!(Trace::parse("bad", "[]").is_err());
    }

    #[test]
    fn the_shared_hsdpa_and_mahimahi_traces_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/traces");
        let n = std::fs::read_dir(dir.join("hsdpa_norway_3g"))
            .unwrap()
            .count();
        assert_eq!(n, 86);
        let t = Trace::load(&dir.join("hsdpa_norway_3g/report.2010-09-14_1415CEST.json")).unwrap();
        assert!(t.periods.len() > 10);
        // `0 1 2 3 4`: mahimahi delivers 5 packets per 4 ms, i.e. 15 Mbit/s (not the 12 the
        // file name suggests).
        let m = Trace::load(&dir.join("mahimahi/12mbps")).unwrap();
        assert_eq!(
            m.periods,
            vec![Period {
                duration_ms: 4.0,
                bandwidth_kbps: 15_000.0,
                latency_ms: 0.0
            }]
        );
    }

    #[test]
    fn offset_rotates() {
        let t = Trace::parse("s", r#"[{"duration_ms": 1000, "bandwidth_kbps": 1, "latency_ms": 0}, {"duration_ms": 1000, "bandwidth_kbps": 2, "latency_ms": 0}]"#).unwrap();
        let o = t.offset(1500.0);
        assert_eq!(
            o.periods
                .iter()
                .map(|p| (p.duration_ms, p.bandwidth_kbps))
                .collect::<Vec<_>>(),
            vec![(500.0, 2.0), (1000.0, 1.0), (500.0, 2.0)]
        );
    }
}
