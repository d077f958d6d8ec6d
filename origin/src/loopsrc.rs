//! The loop source: replays an MPEG-TS file forever as one continuous live stream.
//!
//! Media time is anchored to the Unix epoch: iteration `k` of a loop of length `L` covers
//! media time `[k·L, (k+1)·L)`, so two origins started at different moments emit the same
//! timestamps (and thus segment numbers and bytes) for the same instant. Each packet is
//! released when the wall clock reaches its decode time, with PTS/DTS, PCR and continuity
//! counters rewritten so the output never jumps.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::input::Input;
use crate::segmenter::Arrival;
use crate::timeline::TICKS_PER_SECOND;
use crate::ts::{self, PACKET_SIZE, PTS_MOD, Packet};

pub use crate::fixtures::{EMBEDDED_NAMES, embedded};

/// Why a file cannot be looped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FixtureError {
    /// Not a whole number of aligned 188-byte packets.
    #[error("not an aligned MPEG-TS file")]
    NotTs,
    /// No PAT/PMT with an H.264 stream.
    #[error("no H.264 video stream found")]
    NoVideo,
    /// The video has no keyframe with a timestamp.
    #[error("no timestamped keyframe found")]
    NoKeyframe,
}

struct LoopPacket {
    data: [u8; PACKET_SIZE],
    /// Release time relative to the loop start, ticks.
    at: i64,
    /// Index of this packet among its PID's payload packets in one loop (for an
    /// adaptation-only packet: of the payload packet before it, so it repeats that counter).
    cc_index: i64,
}

/// A file prepared for looping.
pub struct Fixture {
    packets: Vec<LoopPacket>,
    /// Payload packets per loop, by PID: continuity counters advance this much per iteration.
    per_loop: std::collections::HashMap<u16, i64>,
    /// PTS of the first keyframe: the loop's time zero.
    base: u64,
    /// Loop length, ticks.
    pub duration: i64,
}

fn rel(t: u64, base: u64) -> i64 {
    let d = ((t + PTS_MOD - base % PTS_MOD) % PTS_MOD) as i64;
    if d >= PTS_MOD as i64 / 2 {
        d - PTS_MOD as i64
    } else {
        d
    }
}

impl Fixture {
    /// Prepares `bytes` for looping: the loop starts at the first keyframe and lasts until
    /// the last video frame ends; PES packets outside that span (encoder priming) are dropped.
    pub fn parse(bytes: &[u8]) -> Result<Self, FixtureError> {
        if bytes.is_empty() || !bytes.len().is_multiple_of(PACKET_SIZE) {
            return Err(FixtureError::NotTs);
        }
        let pkts: Vec<&[u8; PACKET_SIZE]> = bytes
            .chunks_exact(PACKET_SIZE)
            .map(|c| c.try_into().map_err(|_| FixtureError::NotTs))
            .collect::<Result<_, _>>()?;
        if pkts.iter().any(|p| p[0] != ts::SYNC) {
            return Err(FixtureError::NotTs);
        }
        let mut pmt = None;
        let mut streams = Vec::new();
        for p in &pkts {
            let v = Packet(p);
            if v.pid() == ts::PAT_PID && v.pusi() && pmt.is_none() {
                pmt = ts::parse_pat(v.payload()).ok().flatten();
            } else if Some(v.pid()) == pmt && v.pusi() {
                streams = ts::parse_pmt(v.payload()).unwrap_or_default();
                break;
            }
        }
        let video = streams
            .iter()
            .find(|s| s.stream_type == ts::STREAM_TYPE_H264)
            .ok_or(FixtureError::NoVideo)?
            .pid;
        // PES starts: (packet index, pid, pts, dts).
        let mut starts = Vec::new();
        for (i, p) in pkts.iter().enumerate() {
            let v = Packet(p);
            if v.pusi()
                && let Some(h) = ts::parse_pes_header(v.payload())
                && let Some(pts) = h.pts
            {
                starts.push((i, v.pid(), pts, h.dts.unwrap_or(pts), v.random_access()));
            }
        }
        let base = starts
            .iter()
            .find(|s| s.1 == video && s.4)
            .or_else(|| starts.iter().find(|s| s.1 == video))
            .ok_or(FixtureError::NoKeyframe)?
            .2;
        let mut vpts: Vec<i64> = starts
            .iter()
            .filter(|s| s.1 == video)
            .map(|s| rel(s.2, base))
            .collect();
        vpts.sort_unstable();
        let frame = vpts
            .windows(2)
            .map(|w| w[1] - w[0])
            .filter(|d| *d > 0)
            .min()
            .unwrap_or(3600);
        let duration = vpts.last().copied().unwrap_or(0) + frame;
        if duration <= 0 {
            return Err(FixtureError::NoKeyframe);
        }
        // Keep or drop each PES as a whole; decide per packet by the PES it belongs to.
        let mut keep_pid: std::collections::HashMap<u16, (bool, i64)> = Default::default();
        let mut next_start = starts.iter().peekable();
        let mut at = 0i64;
        let mut packets = Vec::with_capacity(pkts.len());
        for (i, p) in pkts.iter().enumerate() {
            let pid = Packet(p).pid();
            if let Some(s) = next_start.peek()
                && s.0 == i
            {
                let r = rel(s.2, base);
                keep_pid.insert(pid, ((0..duration).contains(&r), rel(s.3, base)));
                next_start.next();
            }
            let keep = match keep_pid.get(&pid) {
                Some((keep, dts)) => {
                    if *keep {
                        at = at.max(*dts);
                    }
                    *keep
                }
                // PSI and other non-PES packets are kept; PES data before the first start is not.
                None => {
                    !Packet(p).has_payload()
                        || pid == ts::PAT_PID
                        || Some(pid) == pmt
                        || !streams.iter().any(|s| s.pid == pid)
                }
            };
            if keep {
                packets.push(LoopPacket {
                    data: **p,
                    at: at.max(0),
                    cc_index: 0,
                });
            }
        }
        // Continuity counters are a function of (iteration, position), so every origin emits
        // the same bytes for the same instant whenever it started.
        let mut per_loop: std::collections::HashMap<u16, i64> = Default::default();
        for p in &mut packets {
            let view = Packet(&p.data);
            let n = per_loop.entry(view.pid()).or_default();
            if view.has_payload() {
                p.cc_index = *n;
                *n += 1;
            } else {
                p.cc_index = *n - 1;
            }
        }
        Ok(Self {
            packets,
            per_loop,
            base,
            duration,
        })
    }

    /// `n` consecutive iterations starting at iteration `first`, as one continuous stream
    /// (what [`run`] would send, without the pacing): input for benchmarks and tests.
    pub fn render(&self, first: i64, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.packets.len() * PACKET_SIZE * n);
        for k in first..first + n as i64 {
            emit(self, k, 0..self.packets.len(), &mut out);
        }
        out
    }
}

pub use crate::timeline::epoch_ticks;

/// Writes iteration `k` of the loop, packets `[from, to)`, with rewritten timestamps and
/// continuity counters, into `out`.
fn emit(f: &Fixture, k: i64, range: std::ops::Range<usize>, out: &mut Vec<u8>) {
    let shift = k * f.duration;
    let map = |t: u64| (rel(t, f.base) + shift).rem_euclid(PTS_MOD as i64) as u64;
    for p in &f.packets[range] {
        let mut d = p.data;
        let pid = Packet(&d).pid();
        if let Some(pcr) = Packet(&d).pcr() {
            ts::set_pcr(&mut d, map(pcr / 300) * 300 + pcr % 300);
        }
        ts::map_pes_timestamps(&mut d, map);
        let per_loop = f.per_loop.get(&pid).copied().unwrap_or(0);
        ts::set_cc(&mut d, (k * per_loop + p.cc_index).rem_euclid(16) as u8);
        out.extend_from_slice(&d);
    }
}

/// Replays `fixture` into `input` forever, starting `backfill` in the past (emitted at
/// once, so playlists are full at start-up) and then at real-time pace.
pub async fn run(fixture: Arc<Fixture>, input: Arc<Input>, backfill: Duration) {
    let l = fixture.duration;
    let backfill = (backfill.as_secs_f64() * TICKS_PER_SECOND as f64) as i64;
    let mut k = (epoch_ticks() - backfill).div_euclid(l);
    let mut batch = Vec::with_capacity(256 * 1024);
    let mut session = match input.attach(Instant::now(), None) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(stream = %input.stream_name(), rendition = %input.rendition(), error = %e, "loop source cannot attach");
            return;
        }
    };
    loop {
        let mut i = 0;
        while i < fixture.packets.len() {
            let now = epoch_ticks();
            // Everything already due goes out in one batch.
            let due = fixture.packets[i..]
                .iter()
                .position(|p| k * l + p.at > now)
                .map_or(fixture.packets.len(), |n| i + n);
            if due > i {
                emit(&fixture, k, i..due, &mut batch);
                // Feed in modest pieces, as a network input would arrive (start-up backfill
                // is megabytes at once). The loop's input has no limits that could cut it off.
                for piece in batch.chunks(64 * 1024) {
                    session.feed(piece, Arrival::now()).ok();
                }
                batch.clear();
                i = due;
            }
            if i < fixture.packets.len() {
                let wait = (k * l + fixture.packets[i].at - epoch_ticks()).max(0);
                tokio::time::sleep(Duration::from_micros((wait as u64 * 1000).div_ceil(90))).await;
            }
        }
        k += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_fixtures_loop_cleanly() {
        for name in EMBEDDED_NAMES {
            let f = Fixture::parse(embedded(name).unwrap()).unwrap();
            assert_eq!(f.duration, 8 * TICKS_PER_SECOND, "{name}");
            assert!(f.packets.windows(2).all(|w| w[0].at <= w[1].at));
            assert!(f.packets.iter().all(|p| (0..f.duration).contains(&p.at)));
        }
    }

    /// An origin that started one iteration earlier emits exactly the same bytes for the
    /// same instant as one that starts now.
    #[test]
    fn output_depends_only_on_the_instant() {
        let f = Fixture::parse(embedded("240p").unwrap()).unwrap();
        let k = epoch_ticks() / f.duration;
        let early = f.render(k, 2);
        let late = f.render(k + 1, 1);
        assert_eq!(&early[early.len() / 2..], &late[..]);
    }

    #[test]
    fn consecutive_iterations_have_continuous_timestamps_and_counters() {
        let f = Fixture::parse(embedded("144p").unwrap()).unwrap();
        let mut out = Vec::new();
        let k = epoch_ticks() / f.duration;
        emit(&f, k, 0..f.packets.len(), &mut out);
        emit(&f, k + 1, 0..f.packets.len(), &mut out);
        let mut last_cc: std::collections::HashMap<u16, u8> = Default::default();
        let mut audio_pts = Vec::new();
        for c in out.chunks_exact(PACKET_SIZE) {
            let p = Packet(c.try_into().unwrap());
            if p.has_payload()
                && let Some(prev) = last_cc.insert(p.pid(), p.cc())
            {
                assert_eq!(p.cc(), (prev + 1) & 0x0f, "pid {}", p.pid());
            }
            if p.pusi() && p.pid() == 0x101 {
                audio_pts.push(ts::parse_pes_header(p.payload()).unwrap().pts.unwrap());
            }
        }
        // Audio frames continue across the seam with a constant 1920-tick step.
        assert!(
            audio_pts
                .windows(2)
                .all(|w| (w[1] + PTS_MOD - w[0]) % PTS_MOD == 1920)
        );
        assert_eq!(audio_pts.len(), 750);
    }
}
