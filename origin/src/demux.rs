//! Push demuxer: bytes in any chunking → transport packets tagged by role, with an
//! [`AccessUnit`] marker before the first packet of every video access unit.
//!
//! Whether an access unit is an IDR is only known once its first slice NAL has been seen,
//! which may be a few packets after the PES starts; packets from that PES start on (of every
//! PID, to keep order) are held back until the decision, so a segment can be cut exactly
//! before the IDR's first packet.

use crate::h264::{self, Sps};
use crate::ts::{self, PACKET_SIZE, Packet, PsiError, SYNC};

/// What a packet carries, as far as segmenting cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketKind {
    /// Program Association Table.
    Pat,
    /// Program Map Table.
    Pmt,
    /// The video elementary stream.
    Video,
    /// The audio elementary stream.
    Audio,
    /// Anything else (SDT, data, null packets...), passed through.
    Other,
}

/// A video access unit about to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccessUnit {
    /// PTS (33-bit, 90 kHz).
    pub pts: u64,
    /// DTS (33-bit, 90 kHz); equal to PTS when the stream sends none.
    pub dts: u64,
    /// The access unit holds an IDR slice (or, failing NAL evidence, the random-access flag).
    pub keyframe: bool,
}

/// Audio codec found in the PMT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioCodec {
    /// AAC in ADTS (stream type 0x0F); advertised as AAC-LC.
    Aac,
    /// MPEG-1/2 audio (stream types 0x03/0x04).
    Mpeg,
    /// AC-3 (stream type 0x81).
    Ac3,
}

impl AudioCodec {
    /// RFC 6381 codec string.
    pub fn codec_string(self) -> &'static str {
        match self {
            AudioCodec::Aac => "mp4a.40.2",
            AudioCodec::Mpeg => "mp4a.40.34",
            AudioCodec::Ac3 => "ac-3",
        }
    }
}

/// Something wrong with the input, each a counter label and a log line upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// Bytes that are not aligned transport packets were skipped.
    #[error("lost sync; skipped {0} bytes")]
    SyncLost(usize),
    /// A packet had the transport error indicator set and was dropped.
    #[error("packet with transport error indicator dropped")]
    TransportError,
    /// A PAT or PMT could not be read.
    #[error("bad PSI section: {0}")]
    Psi(PsiError),
    /// Packets arrived before any PAT/PMT told what they are.
    #[error("packets before PAT/PMT dropped")]
    NoProgram,
    /// The PMT moved the video to another PID (or the PAT moved the PMT).
    #[error("PID layout changed")]
    PidChange,
    /// The program has no H.264 video stream, which segmenting requires.
    #[error("program has no H.264 video stream")]
    NoVideo,
    /// A video PES header could not be parsed or had no PTS.
    #[error("unparsable video PES header")]
    PesHeader,
}

impl InputError {
    /// Stable label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            InputError::SyncLost(_) => "sync_lost",
            InputError::TransportError => "transport_error",
            InputError::Psi(_) => "bad_psi",
            InputError::NoProgram => "no_program",
            InputError::PidChange => "pid_change",
            InputError::NoVideo => "no_video",
            InputError::PesHeader => "bad_pes",
        }
    }
}

/// One thing the demuxer found, in stream order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A transport packet to forward.
    Packet(Box<[u8; PACKET_SIZE]>, PacketKind),
    /// A video access unit starts with the next video packet.
    AccessUnit(AccessUnit),
    /// A new SPS was seen (first one, or changed).
    Sps(Sps),
    /// The program's layout is (newly) known.
    Program {
        /// Audio codec, if the program has audio.
        audio: Option<AudioCodec>,
    },
    /// Something was wrong with the input; the demuxer carried on.
    Error(InputError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    video: u16,
    audio: Option<(u16, AudioCodec)>,
}

struct PendingAu {
    pts: u64,
    dts: u64,
    random_access: bool,
    es: Vec<u8>,
    packets: Vec<(Box<[u8; PACKET_SIZE]>, PacketKind)>,
}

/// Most packets held back waiting for a video access unit's type before falling back to the
/// random-access flag.
const MAX_PENDING_PACKETS: usize = 256;
/// Most elementary-stream bytes scanned for the first slice NAL.
const MAX_PENDING_ES: usize = 64 * 1024;

/// Streaming MPEG-TS demuxer for one single-program input.
#[derive(Default)]
pub struct Demuxer {
    buf: Vec<u8>,
    pmt_pid: Option<u16>,
    layout: Option<Layout>,
    pending: Option<PendingAu>,
    last_sps: Option<Sps>,
    warned_no_program: bool,
}

impl Demuxer {
    /// A demuxer for a new input connection.
    pub fn new() -> Self {
        Self::default()
    }

    /// Consumes `data`, appending what it finds to `out`.
    pub fn push(&mut self, data: &[u8], out: &mut Vec<Event>) {
        self.buf.extend_from_slice(data);
        let mut pos = 0;
        let len = self.buf.len();
        while len - pos >= PACKET_SIZE {
            // A packet counts as aligned when it starts with a sync byte and so does the next
            // one (when we have it): a truncated packet fails the second test.
            let aligned = self.buf[pos] == SYNC
                && (len - pos < PACKET_SIZE + 1 || self.buf[pos + PACKET_SIZE] == SYNC);
            if !aligned {
                match find_sync(&self.buf[pos + 1..]) {
                    Some(off) => {
                        out.push(Event::Error(InputError::SyncLost(off + 1)));
                        pos += off + 1;
                        continue;
                    }
                    None => {
                        // No confirmable sync: keep from the first sync byte too close to the
                        // end to confirm (a packet may start there), drop the rest.
                        let keep_from = (pos + 1..len)
                            .find(|&i| self.buf[i] == SYNC && len - i < PACKET_SIZE)
                            .unwrap_or(len);
                        out.push(Event::Error(InputError::SyncLost(keep_from - pos)));
                        pos = keep_from;
                        break;
                    }
                }
            }
            let mut pkt = Box::new([0u8; PACKET_SIZE]);
            pkt.copy_from_slice(&self.buf[pos..pos + PACKET_SIZE]);
            pos += PACKET_SIZE;
            self.packet(pkt, out);
        }
        self.buf.drain(..pos);
    }

    /// Flushes what is held back at the end of the input.
    pub fn finish(&mut self, out: &mut Vec<Event>) {
        self.flush_pending(out);
        self.buf.clear();
    }

    fn packet(&mut self, pkt: Box<[u8; PACKET_SIZE]>, out: &mut Vec<Event>) {
        let p = Packet(&pkt);
        if p.transport_error() {
            out.push(Event::Error(InputError::TransportError));
            return;
        }
        let pid = p.pid();
        if pid == ts::PAT_PID {
            if p.pusi() {
                match ts::parse_pat(p.payload()) {
                    Ok(Some(pmt)) => {
                        if self.pmt_pid.is_some_and(|old| old != pmt) {
                            out.push(Event::Error(InputError::PidChange));
                            self.layout = None;
                        }
                        self.pmt_pid = Some(pmt);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        out.push(Event::Error(InputError::Psi(e)));
                        return;
                    }
                }
            }
            return self.forward(pkt, PacketKind::Pat, out);
        }
        if Some(pid) == self.pmt_pid {
            if p.pusi() {
                match ts::parse_pmt(p.payload()) {
                    Ok(streams) => self.program(&streams, out),
                    Err(e) => {
                        out.push(Event::Error(InputError::Psi(e)));
                        return;
                    }
                }
            }
            return self.forward(pkt, PacketKind::Pmt, out);
        }
        let Some(layout) = self.layout else {
            // SDT, NIT and other reserved PSI PIDs (< 0x20) legitimately precede the PAT.
            if !self.warned_no_program && pid >= 0x20 && pid != 0x1fff {
                self.warned_no_program = true;
                out.push(Event::Error(InputError::NoProgram));
            }
            return;
        };
        if pid == layout.video {
            self.video(pkt, out);
        } else if layout.audio.is_some_and(|(a, _)| a == pid) {
            self.forward(pkt, PacketKind::Audio, out);
        } else if pid != 0x1fff {
            self.forward(pkt, PacketKind::Other, out);
        }
    }

    fn program(&mut self, streams: &[ts::EsInfo], out: &mut Vec<Event>) {
        let video = streams
            .iter()
            .find(|s| s.stream_type == ts::STREAM_TYPE_H264);
        let Some(video) = video else {
            if self.layout.is_some() || !self.warned_no_program {
                out.push(Event::Error(InputError::NoVideo));
            }
            self.warned_no_program = true;
            self.layout = None;
            return;
        };
        let audio = streams.iter().find_map(|s| {
            let codec = match s.stream_type {
                ts::STREAM_TYPE_AAC => AudioCodec::Aac,
                0x03 | 0x04 => AudioCodec::Mpeg,
                0x81 => AudioCodec::Ac3,
                _ => return None,
            };
            Some((s.pid, codec))
        });
        let layout = Layout {
            video: video.pid,
            audio,
        };
        if self.layout == Some(layout) {
            return;
        }
        if self.layout.is_some() {
            out.push(Event::Error(InputError::PidChange));
            self.flush_pending(out);
        }
        self.layout = Some(layout);
        out.push(Event::Program {
            audio: audio.map(|(_, c)| c),
        });
    }

    fn video(&mut self, pkt: Box<[u8; PACKET_SIZE]>, out: &mut Vec<Event>) {
        let p = Packet(&pkt);
        if p.pusi() {
            self.flush_pending(out);
            let payload = p.payload();
            let Some(h) = ts::parse_pes_header(payload).filter(|h| h.pts.is_some()) else {
                out.push(Event::Error(InputError::PesHeader));
                return;
            };
            let pts = h.pts.unwrap_or_default();
            let es = payload[h.payload_offset..].to_vec();
            let random_access = p.random_access();
            self.pending = Some(PendingAu {
                pts,
                dts: h.dts.unwrap_or(pts),
                random_access,
                es,
                packets: vec![(pkt, PacketKind::Video)],
            });
            self.try_decide(out);
        } else if let Some(pending) = &mut self.pending {
            if pending.es.len() < MAX_PENDING_ES {
                pending.es.extend_from_slice(p.payload());
            }
            pending.packets.push((pkt, PacketKind::Video));
            self.try_decide(out);
        } else {
            out.push(Event::Packet(pkt, PacketKind::Video));
        }
    }

    fn forward(&mut self, pkt: Box<[u8; PACKET_SIZE]>, kind: PacketKind, out: &mut Vec<Event>) {
        match &mut self.pending {
            Some(pending) => {
                pending.packets.push((pkt, kind));
                if pending.packets.len() >= MAX_PENDING_PACKETS {
                    self.flush_pending(out);
                }
            }
            None => out.push(Event::Packet(pkt, kind)),
        }
    }

    /// Decides the pending access unit's type if its first slice is in view.
    fn try_decide(&mut self, out: &mut Vec<Event>) {
        let Some(pending) = &self.pending else { return };
        let (keyframe, sps) = scan_access_unit(&pending.es);
        if let Some(s) = sps
            && self.last_sps != Some(s)
        {
            self.last_sps = Some(s);
            out.push(Event::Sps(s));
        }
        let overflow =
            pending.packets.len() >= MAX_PENDING_PACKETS || pending.es.len() >= MAX_PENDING_ES;
        if let Some(k) = keyframe {
            self.emit_pending(k, out);
        } else if overflow {
            self.flush_pending(out);
        }
    }

    /// Emits the pending access unit, deciding by the random-access flag if still unknown.
    fn flush_pending(&mut self, out: &mut Vec<Event>) {
        if let Some(p) = &self.pending {
            let k = p.random_access;
            self.emit_pending(k, out);
        }
    }

    fn emit_pending(&mut self, keyframe: bool, out: &mut Vec<Event>) {
        if let Some(p) = self.pending.take() {
            out.push(Event::AccessUnit(AccessUnit {
                pts: p.pts,
                dts: p.dts,
                keyframe,
            }));
            out.extend(p.packets.into_iter().map(|(b, k)| Event::Packet(b, k)));
        }
    }
}

/// Scans the start of an access unit: `(Some(is_idr), sps)` once its first slice is in view.
fn scan_access_unit(es: &[u8]) -> (Option<bool>, Option<Sps>) {
    let mut sps = None;
    let mut nals = h264::nal_units(es).peekable();
    while let Some((at, t)) = nals.next() {
        match t {
            h264::NAL_SPS => {
                // The SPS is complete once the next start code is in view.
                if let Some(&(next, _)) = nals.peek() {
                    sps = h264::parse_sps(&es[at..next.saturating_sub(3)]);
                }
            }
            h264::NAL_IDR => return (Some(true), sps),
            h264::NAL_SLICE | 2..=4 => return (Some(false), sps),
            _ => {}
        }
    }
    (None, sps)
}

/// Offset of the first byte in `data` that starts two consecutive packets (or one, at the end).
fn find_sync(data: &[u8]) -> Option<usize> {
    (0..data.len())
        .find(|&i| {
            data[i] == SYNC && (i + PACKET_SIZE >= data.len() || data[i + PACKET_SIZE] == SYNC)
        })
        .filter(|&i| data.len() - i >= PACKET_SIZE)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A crafted stream (found by `cargo fuzz run demux`) whose SPS overflowed the size
    /// arithmetic: it must be survived, not panic.
    #[test]
    fn crafted_sps_overflow_is_survived() {
        let data = include_bytes!("../tests/data/sps-overflow-via-demux.bin");
        let mut d = Demuxer::new();
        let mut out = Vec::new();
        d.push(&data[1..], &mut out);
        d.finish(&mut out);
        assert!(out.iter().any(|e| matches!(e, Event::AccessUnit(_))));
        assert!(
            !out.iter().any(|e| matches!(e, Event::Sps(_))),
            "the bogus SPS is not advertised"
        );
    }

    #[test]
    fn arbitrary_chunking_gives_identical_events() {
        let data = crate::tsmux::synthetic(0, 2, 25, 3600, 700);
        let mut whole = Vec::new();
        let mut d = Demuxer::new();
        d.push(&data, &mut whole);
        d.finish(&mut whole);
        for chunk in [1, 7, 188, 189, 1000] {
            let mut parts = Vec::new();
            let mut d = Demuxer::new();
            for c in data.chunks(chunk) {
                d.push(c, &mut parts);
            }
            d.finish(&mut parts);
            assert_eq!(parts, whole, "chunk {chunk}");
        }
    }
}
