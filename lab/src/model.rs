//! The capacity model (docs/capacity.md) in the form the lab checks: what a topology with
//! this many viewers at this bitrate should cost, to compare with what the run measured.
//!
//! Over a steady window, every viewer downloads what it plays: the edge tier sends
//! `viewers × bitrate` plus one media playlist per viewer per target duration. Behind a
//! hashed shield pool each object has one owner, so the origin serves, per rendition
//! watched, one segment per segment duration and one playlist refresh per playlist
//! lifetime (max-age plus the time until the next request), plus the master playlist's
//! refreshes at every shield (the edges health-check each shield with it, so each keeps a
//! copy of its own) and the shields' health checks of the origins.

/// What the model needs to know.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Inputs {
    /// Viewers playing during the window.
    pub viewers: f64,
    /// Their mean played bitrate, kbit/s.
    pub bitrate_kbps: f64,
    /// Segment duration (= target duration), s.
    pub segment_s: f64,
    /// Bytes of one media playlist response, headers included.
    pub playlist_bytes: f64,
    /// Renditions watched anywhere.
    pub renditions: f64,
    /// Shields (each health-checks the origins).
    pub shields: f64,
    /// Origins.
    pub origins: f64,
    /// Health checks per second each shield sends each origin.
    pub health_per_s: f64,
}

/// What the model predicts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prediction {
    /// Bytes per second the edge tier sends viewers, Mbit/s.
    pub edge_egress_mbps: f64,
    /// Requests per second the origins answer (content and health checks).
    pub origin_rps: f64,
}

/// A media playlist lives max-age (half the target duration, at least 1 s) and is
/// refreshed on the first request after that; with many viewers that is at once.
fn playlist_lifetime_s(segment_s: f64) -> f64 {
    (segment_s / 2.0).floor().max(1.0)
}

/// The model's prediction for `i`.
pub fn predict(i: &Inputs) -> Prediction {
    let media = i.viewers * i.bitrate_kbps * 1000.0;
    let playlists = i.viewers / i.segment_s * i.playlist_bytes * 8.0;
    let lifetime = playlist_lifetime_s(i.segment_s);
    let content = i.renditions * (1.0 / i.segment_s + 1.0 / lifetime) + i.shields / lifetime;
    Prediction {
        edge_egress_mbps: (media + playlists) / 1e6,
        origin_rps: content + i.shields * i.origins * i.health_per_s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed() {
        let p = predict(&Inputs {
            viewers: 2000.0,
            bitrate_kbps: 600.0,
            segment_s: 2.0,
            playlist_bytes: 500.0,
            renditions: 3.0,
            shields: 2.0,
            origins: 1.0,
            health_per_s: 2.0,
        });
        // 2000 × 600 kbit/s = 1200 Mbit/s; playlists 1000/s × 4000 bit = 4 Mbit/s.
        assert!((p.edge_egress_mbps - 1204.0).abs() < 1e-9);
        // 3 × (0.5 + 1) + 2 masters + 2 × 2 health = 10.5.
        assert!((p.origin_rps - 10.5).abs() < 1e-9);
    }
}
