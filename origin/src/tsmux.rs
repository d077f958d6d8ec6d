//! A minimal MPEG-TS writer for synthetic H.264/AAC streams: deterministic inputs for tests,
//! property tests, fuzz seeds and the segmenter benchmark. Not used on the serving path.

use crate::ts::{self, PACKET_SIZE};

/// PID of the PMT written by [`TsWriter`].
pub const PMT_PID: u16 = 0x1000;
/// PID of the video stream.
pub const VIDEO_PID: u16 = 0x100;
/// PID of the audio stream.
pub const AUDIO_PID: u16 = 0x101;

/// SPS of a 640x360 main-profile level-3.0 stream (as x264 writes it).
pub const SPS_360P: [u8; 24] = [
    0x67, 0x4d, 0x40, 0x1e, 0xec, 0xa0, 0x50, 0x17, 0xfc, 0xb8, 0x08, 0x80, 0x00, 0x00, 0x03, 0x00,
    0x80, 0x00, 0x00, 0x19, 0x07, 0x8b, 0x16, 0xcb,
];

/// Writes a single-program TS with one H.264 and one AAC stream.
#[derive(Debug, Clone)]
pub struct TsWriter {
    cc: [u8; 4],
    /// PID the PMT lists for video (tests change it to provoke a PID change).
    pub video_pid: u16,
}

impl Default for TsWriter {
    fn default() -> Self {
        Self {
            cc: [0; 4],
            video_pid: VIDEO_PID,
        }
    }
}

fn section_packet(pid: u16, cc: u8, body: &[u8]) -> [u8; PACKET_SIZE] {
    let mut pkt = [0xffu8; PACKET_SIZE];
    pkt[0] = ts::SYNC;
    pkt[1] = 0x40 | (pid >> 8) as u8;
    pkt[2] = pid as u8;
    pkt[3] = 0x10 | (cc & 0x0f);
    pkt[4] = 0; // pointer field
    let crc = ts::crc32_mpeg2(body);
    pkt[5..5 + body.len()].copy_from_slice(body);
    pkt[5 + body.len()..9 + body.len()].copy_from_slice(&crc.to_be_bytes());
    pkt
}

impl TsWriter {
    /// A writer with fresh continuity counters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a PAT and a PMT.
    pub fn psi(&mut self, out: &mut Vec<u8>) {
        let pat = [
            0x00,
            0xb0,
            0x0d,
            0x00,
            0x01,
            0xc1,
            0x00,
            0x00,
            0x00,
            0x01,
            0xe0 | (PMT_PID >> 8) as u8,
            PMT_PID as u8,
        ];
        out.extend_from_slice(&section_packet(0, self.cc[0], &pat));
        self.cc[0] = (self.cc[0] + 1) & 0x0f;
        let v = self.video_pid;
        let pmt = [
            0x02,
            0xb0,
            0x17,
            0x00,
            0x01,
            0xc1,
            0x00,
            0x00,
            0xe0 | (v >> 8) as u8,
            v as u8, // PCR PID
            0xf0,
            0x00,
            ts::STREAM_TYPE_H264,
            0xe0 | (v >> 8) as u8,
            v as u8,
            0xf0,
            0x00,
            ts::STREAM_TYPE_AAC,
            0xe0 | (AUDIO_PID >> 8) as u8,
            AUDIO_PID as u8,
            0xf0,
            0x00,
        ];
        out.extend_from_slice(&section_packet(PMT_PID, self.cc[1], &pmt));
        self.cc[1] = (self.cc[1] + 1) & 0x0f;
    }

    /// Appends one video access unit of about `size` bytes: AUD, SPS+PPS on keyframes, and an
    /// IDR (keyframe) or non-IDR slice.
    pub fn video_au(&mut self, out: &mut Vec<u8>, pts: u64, dts: u64, keyframe: bool, size: usize) {
        let mut es = vec![0, 0, 0, 1, 0x09, 0xf0];
        if keyframe {
            es.extend_from_slice(&[0, 0, 0, 1]);
            es.extend_from_slice(&SPS_360P);
            es.extend_from_slice(&[0, 0, 0, 1, 0x68, 0xef, 0xbc, 0x80]);
        }
        es.extend_from_slice(&[0, 0, 1, if keyframe { 0x65 } else { 0x41 }, 0x88]);
        // Slice filler that never forms a start code.
        es.extend((es.len()..size.max(es.len() + 1)).map(|i| 0x80 | (i as u8 & 0x7f)));
        let pid = self.video_pid;
        self.pes(out, pid, 0xe0, pts, Some(dts), keyframe, &es);
    }

    /// Appends one AAC frame of `size` bytes (an ADTS header and filler).
    pub fn audio_frame(&mut self, out: &mut Vec<u8>, pts: u64, size: usize) {
        let len = size.max(7);
        let mut es = vec![
            0xff,
            0xf1,
            0x50,
            0x80,
            ((len >> 3) & 0xff) as u8,
            (((len & 7) << 5) | 0x1f) as u8,
            0xfc,
        ];
        es.resize(len, 0x21);
        self.pes(out, AUDIO_PID, 0xc0, pts, None, false, &es);
    }

    #[allow(clippy::too_many_arguments)]
    fn pes(
        &mut self,
        out: &mut Vec<u8>,
        pid: u16,
        sid: u8,
        pts: u64,
        dts: Option<u64>,
        rai: bool,
        es: &[u8],
    ) {
        let mut pes = vec![0, 0, 1, sid, 0, 0, 0x80];
        let mut ts_bytes = [0u8; 10];
        let hlen = match dts {
            Some(d) if d != pts => {
                pes.push(0xc0);
                ts::write_ts(&mut ts_bytes[..5], 0b0011, pts);
                ts::write_ts(&mut ts_bytes[5..], 0b0001, d);
                10
            }
            _ => {
                pes.push(0x80);
                ts::write_ts(&mut ts_bytes[..5], 0b0010, pts);
                5
            }
        };
        pes.push(hlen as u8);
        pes.extend_from_slice(&ts_bytes[..hlen]);
        pes.extend_from_slice(es);
        let body_len = pes.len() - 6;
        if sid != 0xe0 && body_len <= 0xffff {
            pes[4..6].copy_from_slice(&(body_len as u16).to_be_bytes());
        }
        let slot = if pid == AUDIO_PID { 3 } else { 2 };
        let mut first = true;
        let mut rest = &pes[..];
        while !rest.is_empty() {
            let mut pkt = [0xffu8; PACKET_SIZE];
            pkt[0] = ts::SYNC;
            pkt[1] = (if first { 0x40 } else { 0 }) | (pid >> 8) as u8;
            pkt[2] = pid as u8;
            let mut af: Vec<u8> = Vec::new();
            if first && rai {
                // Random access + PCR (PCR = DTS, good enough for a synthetic stream).
                let base = dts.unwrap_or(pts) % ts::PTS_MOD;
                af = vec![
                    0x50,
                    (base >> 25) as u8,
                    (base >> 17) as u8,
                    (base >> 9) as u8,
                    (base >> 1) as u8,
                    (((base & 1) as u8) << 7) | 0x7e,
                    0,
                ];
            }
            let room = PACKET_SIZE - 4 - if af.is_empty() { 0 } else { 1 + af.len() };
            let take = rest.len().min(room);
            if take < room {
                // Stuff with the adaptation field so the payload ends the packet exactly.
                let need = PACKET_SIZE - 4 - take - 1; // adaptation field length value
                if af.is_empty() {
                    af = if need == 0 { vec![] } else { vec![0x00] };
                }
                af.resize(need, 0xff);
                pkt[3] = 0x30 | self.cc[slot];
                pkt[4] = need as u8;
                pkt[5..5 + af.len()].copy_from_slice(&af);
            } else if !af.is_empty() {
                pkt[3] = 0x30 | self.cc[slot];
                pkt[4] = af.len() as u8;
                pkt[5..5 + af.len()].copy_from_slice(&af);
            } else {
                pkt[3] = 0x10 | self.cc[slot];
            }
            let start = PACKET_SIZE - take;
            pkt[start..].copy_from_slice(&rest[..take]);
            rest = &rest[take..];
            self.cc[slot] = (self.cc[slot] + 1) & 0x0f;
            first = false;
            out.extend_from_slice(&pkt);
        }
    }
}

/// A synthetic stream: `gops` GOPs of `gop_frames` frames at `frame` ticks each, starting at
/// PTS `start`, with audio, PAT/PMT before every keyframe. Returns the TS bytes.
pub fn synthetic(
    start: u64,
    gops: usize,
    gop_frames: usize,
    frame: u64,
    frame_size: usize,
) -> Vec<u8> {
    let mut w = TsWriter::new();
    let mut out = Vec::new();
    let mut audio_pts = start;
    for g in 0..gops {
        for f in 0..gop_frames {
            let n = (g * gop_frames + f) as u64;
            let pts = start + n * frame;
            if f == 0 {
                w.psi(&mut out);
            }
            w.video_au(
                &mut out,
                pts,
                pts,
                f == 0,
                if f == 0 { frame_size * 4 } else { frame_size },
            );
            while audio_pts < pts + frame {
                w.audio_frame(&mut out, audio_pts, 200);
                audio_pts += 1920;
            }
        }
    }
    out
}
