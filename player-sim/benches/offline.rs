//! Offline simulation speed: 48-segment sessions per second on one core, per controller, on
//! the 86 HSDPA traces × the Envivio movie. Run with `cargo bench -p player-sim --bench offline`.

#![allow(clippy::expect_used)] // a benchmark that cannot load its data should stop loudly

use std::path::Path;
use std::time::{Duration, Instant};

use player_sim::abr;
use player_sim::movie::Movie;
use player_sim::offline::{Settings, run};
use player_sim::trace::Trace;

fn main() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data");
    let movie =
        Movie::load(&data.join("movies/envivio_dash3/movie_envivio_sabre.json")).expect("movie");
    let mut traces: Vec<Trace> = std::fs::read_dir(data.join("traces/hsdpa_norway_3g"))
        .expect("traces")
        .map(|e| Trace::load(&e.expect("entry").path()).expect("trace"))
        .collect();
    traces.sort_by(|a, b| a.name.cmp(&b.name));
    println!(
        "offline sessions per second on one core ({} traces x {} segments, Envivio ladder):",
        traces.len(),
        movie.len()
    );
    // OFFLINE_BENCH_ABR=mpc measures one controller (for profiling).
    let only = std::env::var("OFFLINE_BENCH_ABR").ok();
    for name in abr::NAMES
        .iter()
        .filter(|n| only.as_deref().is_none_or(|o| o == **n))
    {
        let started = Instant::now();
        let mut sessions = 0usize;
        let mut checksum = 0.0;
        while started.elapsed() < Duration::from_millis(1500) {
            for (i, t) in traces.iter().enumerate() {
                let a = abr::by_name(name).expect("controller");
                checksum += run(i, &movie, t, a, Settings::default()).session.qoe_lin;
                sessions += 1;
            }
        }
        let rate = sessions as f64 / started.elapsed().as_secs_f64();
        println!(
            "  {name:<11} {rate:>12.0} sessions/s   (target >= 10,000; checksum {checksum:.1})"
        );
    }
}
