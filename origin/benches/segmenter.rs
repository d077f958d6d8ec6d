//! Demux + segment + publish throughput of the origin's input path, in MB/s on one core,
//! side by side with ffmpeg's own HLS segmenter (`-c copy -f hls`, one thread) on the same
//! bytes in the same run. Run with `cargo bench -p origin --bench segmenter`.

#![allow(clippy::expect_used)] // a benchmark that cannot set up should stop loudly

use std::process::Command;
use std::time::{Duration, Instant};

use origin::bench::{EMBEDDED_NAMES, ingest, loop_input};

const ITERATIONS: usize = 30; // 30 × 8 s = 4 minutes of media per rendition

fn ours(inputs: &[(String, Vec<u8>)]) -> Duration {
    let start = Instant::now();
    let published = ingest(inputs).expect("metrics");
    let took = start.elapsed();
    assert!(
        published as usize >= ITERATIONS * 4 - 1,
        "published {published}"
    );
    took
}

fn ffmpeg(inputs: &[(String, Vec<u8>)]) -> Option<Duration> {
    let dir = std::env::temp_dir().join(format!("origin-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    let mut total = Duration::ZERO;
    for (name, data) in inputs {
        let input = dir.join(format!("{name}.ts"));
        std::fs::write(&input, data).ok()?;
        let start = Instant::now();
        let st = Command::new("ffmpeg")
            .args([
                "-hide_banner",
                "-nostdin",
                "-v",
                "error",
                "-threads",
                "1",
                "-i",
            ])
            .arg(&input)
            .args([
                "-map",
                "0",
                "-c",
                "copy",
                "-f",
                "hls",
                "-hls_time",
                "2",
                "-hls_list_size",
                "6",
            ])
            .args(["-hls_flags", "delete_segments"])
            .arg(dir.join(format!("{name}.m3u8")))
            .status()
            .ok()?;
        total += start.elapsed();
        if !st.success() {
            return None;
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Some(total)
}

fn main() {
    let inputs: Vec<(String, Vec<u8>)> = EMBEDDED_NAMES
        .iter()
        .map(|n| (n.to_string(), loop_input(n, ITERATIONS).expect("fixture")))
        .collect();
    let bytes: usize = inputs.iter().map(|(_, d)| d.len()).sum();
    let mb = bytes as f64 / 1e6;
    // Best of 3 for both, so a noisy neighbour on the box hurts neither side unfairly.
    let best = |f: &dyn Fn() -> Option<Duration>| (0..3).filter_map(|_| f()).min();
    let our = best(&|| Some(ours(&inputs))).expect("ours ran");
    let peer = best(&|| ffmpeg(&inputs));
    let our_mbs = mb / our.as_secs_f64();
    println!(
        "demux+segment+publish throughput, one core, {mb:.1} MB of H.264/AAC TS (3 renditions x {} s)",
        ITERATIONS * 8
    );
    println!(
        "  origin pipeline : {our_mbs:9.1} MB/s  ({:.3} s)",
        our.as_secs_f64()
    );
    match peer {
        Some(p) => {
            let peer_mbs = mb / p.as_secs_f64();
            println!(
                "  ffmpeg -f hls   : {peer_mbs:9.1} MB/s  ({:.3} s, -c copy -threads 1, incl. process start)",
                p.as_secs_f64()
            );
            println!("  ratio origin/ffmpeg: {:.1}x", our_mbs / peer_mbs);
        }
        None => println!("  ffmpeg -f hls   : not measured (ffmpeg not installed)"),
    }
}
