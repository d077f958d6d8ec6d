//! Adaptive-bitrate controllers behind one trait, shared by the offline and live modes.

mod bba;
mod bola;
mod fixed;
mod mpc;
mod throughput;

pub use bba::Bba;
pub use bola::Bola;
pub use fixed::Fixed;
pub use mpc::RobustMpc;
pub use throughput::Throughput;

/// What a controller sees when it picks the next segment's quality.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// Index of the segment about to be fetched.
    pub segment: usize,
    /// Buffered media, ms.
    pub buffer_ms: f64,
    /// Largest buffer the player keeps, ms.
    pub buffer_max_ms: f64,
    /// Quality of the previous segment.
    pub last_quality: Option<usize>,
    /// The ladder, kbit/s, ascending.
    pub bitrates_kbps: &'a [f64],
    /// Segment duration, ms.
    pub segment_ms: f64,
    /// Sizes of the upcoming segments (from `segment` on), bits per quality, when known
    /// (offline); live mode passes estimates from the bitrates.
    pub upcoming_bits: &'a [Vec<f64>],
}

/// A finished download, reported back to the controller.
#[derive(Debug, Clone, Copy)]
pub struct Report {
    /// Quality fetched.
    pub quality: usize,
    /// Bits fetched.
    pub bits: f64,
    /// Time to first byte, ms.
    pub latency_ms: f64,
    /// Transfer time after the first byte, ms.
    pub transfer_ms: f64,
}

/// An ABR controller.
pub trait Abr: Send {
    /// Its name in reports.
    fn name(&self) -> &'static str;
    /// The quality for the next segment.
    fn choose(&mut self, ctx: &Context<'_>) -> usize;
    /// Learns from a finished download.
    fn report(&mut self, r: &Report);
}

/// Names accepted by [`by_name`].
pub const NAMES: &[&str] = &["throughput", "bba", "bola", "mpc", "fixed"];

/// Builds a controller by name (`fixed` and `fixed:N` pin quality N, default the lowest).
pub fn by_name(name: &str) -> Option<Box<dyn Abr>> {
    Some(match name {
        "throughput" => Box::new(Throughput::default()),
        "bba" => Box::new(Bba::default()),
        "bola" => Box::new(Bola::default()),
        "mpc" | "robustmpc" => Box::new(RobustMpc::default()),
        "fixed" => Box::new(Fixed(0)),
        other => {
            let q = other.strip_prefix("fixed:")?.parse().ok()?;
            Box::new(Fixed(q))
        }
    })
}
