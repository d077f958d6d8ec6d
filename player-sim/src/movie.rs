//! A movie for offline simulation: segment duration, bitrate ladder and every segment's size at
//! every bitrate (Sabre JSON, or Pensieve `video_size_N` files).

use std::path::Path;

/// Chunk sizes of a movie.
#[derive(Debug, Clone, PartialEq)]
pub struct Movie {
    /// Segment duration, milliseconds.
    pub segment_ms: f64,
    /// The ladder, kbit/s, ascending.
    pub bitrates_kbps: Vec<f64>,
    /// `sizes_bits[segment][quality]`.
    pub sizes_bits: Vec<Vec<f64>>,
}

#[derive(serde::Deserialize)]
struct SabreMovie {
    segment_duration_ms: f64,
    bitrates_kbps: Vec<f64>,
    segment_sizes_bits: Vec<Vec<f64>>,
}

/// Bitrates of the Envivio-Dash3 ladder that Pensieve's `video_size_N` files describe.
pub const ENVIVIO_KBPS: [f64; 6] = [300.0, 750.0, 1200.0, 1850.0, 2850.0, 4300.0];

impl Movie {
    /// Reads a Sabre movie JSON file, or a folder of Pensieve `video_size_N` files (bytes per
    /// 4 s chunk, ladder [`ENVIVIO_KBPS`]).
    pub fn load(path: &Path) -> Result<Self, String> {
        if path.is_dir() {
            let mut sizes: Vec<Vec<f64>> = Vec::new();
            for q in 0..ENVIVIO_KBPS.len() {
                let f = path.join(format!("video_size_{q}"));
                let text =
                    std::fs::read_to_string(&f).map_err(|e| format!("{}: {e}", f.display()))?;
                for (i, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
                    let bytes: f64 = line.trim().parse().map_err(|_| {
                        format!("{}: line {}: expected a byte count", f.display(), i + 1)
                    })?;
                    if sizes.len() <= i {
                        sizes.push(vec![0.0; ENVIVIO_KBPS.len()]);
                    }
                    sizes[i][q] = bytes * 8.0;
                }
            }
            let m = Movie {
                segment_ms: 4000.0,
                bitrates_kbps: ENVIVIO_KBPS.to_vec(),
                sizes_bits: sizes,
            };
            m.check().map_err(|e| format!("{}: {e}", path.display()))?;
            return Ok(m);
        }
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let raw: SabreMovie = serde_json::from_str(&text)
            .map_err(|e| format!("{}: line {}: {e}", path.display(), e.line()))?;
        let m = Movie {
            segment_ms: raw.segment_duration_ms,
            bitrates_kbps: raw.bitrates_kbps,
            sizes_bits: raw.segment_sizes_bits,
        };
        m.check().map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(m)
    }

    fn check(&self) -> Result<(), String> {
        if self.segment_ms <= 0.0 || self.bitrates_kbps.is_empty() || self.sizes_bits.is_empty() {
            return Err("needs a positive segment duration, a ladder and segments".into());
        }
        if self.bitrates_kbps.windows(2).any(|w| w[1] <= w[0]) {
            return Err("bitrates must be ascending".into());
        }
        if self.sizes_bits.iter().any(|s| {
            s.len() != self.bitrates_kbps.len() || s.iter().any(|b| !(b.is_finite() && *b > 0.0))
        }) {
            return Err("every segment needs a positive size for every bitrate".into());
        }
        Ok(())
    }

    /// Number of segments.
    pub fn len(&self) -> usize {
        self.sizes_bits.len()
    }

    /// Whether the movie has no segments.
    pub fn is_empty(&self) -> bool {
        self.sizes_bits.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envivio_in_both_formats_agrees() {
        let dir =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/movies/envivio_dash3");
        let sabre = Movie::load(&dir.join("movie_envivio_sabre.json")).unwrap();
        let pensieve = Movie::load(&dir).unwrap();
        assert_eq!(sabre.bitrates_kbps, pensieve.bitrates_kbps);
        assert_eq!(sabre.len(), 48);
        assert_eq!(pensieve.len(), 49);
        assert_eq!(sabre.sizes_bits[..48], pensieve.sizes_bits[..48]);
    }
}
