//! MPEG-TS packet layer (ISO/IEC 13818-1): packet header, adaptation field, PCR, PSI tables
//! (PAT, PMT) and PES headers — reading, and the in-place rewrites the loop source needs.

/// Size of one transport packet.
pub const PACKET_SIZE: usize = 188;
/// Sync byte that starts every packet.
pub const SYNC: u8 = 0x47;
/// PID of the Program Association Table.
pub const PAT_PID: u16 = 0;
/// Modulus of 33-bit PTS/DTS and of the PCR base.
pub const PTS_MOD: u64 = 1 << 33;

/// A view of one 188-byte transport packet.
#[derive(Clone, Copy)]
pub struct Packet<'a>(pub &'a [u8; PACKET_SIZE]);

impl<'a> Packet<'a> {
    /// The packet's PID.
    pub fn pid(&self) -> u16 {
        (u16::from(self.0[1] & 0x1f) << 8) | u16::from(self.0[2])
    }
    /// Transport error indicator: the packet is known to be corrupt.
    pub fn transport_error(&self) -> bool {
        self.0[1] & 0x80 != 0
    }
    /// Payload unit start indicator: a PES or section starts in this packet.
    pub fn pusi(&self) -> bool {
        self.0[1] & 0x40 != 0
    }
    /// Continuity counter.
    #[cfg(test)]
    pub fn cc(&self) -> u8 {
        self.0[3] & 0x0f
    }
    /// Whether the packet carries a payload.
    pub fn has_payload(&self) -> bool {
        self.0[3] & 0x10 != 0
    }
    /// Whether the packet carries an adaptation field.
    pub fn has_adaptation(&self) -> bool {
        self.0[3] & 0x20 != 0
    }
    /// The adaptation field (without its length byte), if present and well-formed.
    fn adaptation(&self) -> Option<&'a [u8]> {
        if !self.has_adaptation() {
            return None;
        }
        let len = usize::from(self.0[4]);
        if len == 0 || 5 + len > PACKET_SIZE {
            return None;
        }
        Some(&self.0[5..5 + len])
    }
    /// Random access indicator (set by most muxers on keyframes).
    pub fn random_access(&self) -> bool {
        self.adaptation().is_some_and(|a| a[0] & 0x40 != 0)
    }
    /// PCR in 27 MHz units, if the packet carries one.
    pub fn pcr(&self) -> Option<u64> {
        let a = self.adaptation()?;
        if a[0] & 0x10 == 0 || a.len() < 7 {
            return None;
        }
        let base = (u64::from(a[1]) << 25)
            | (u64::from(a[2]) << 17)
            | (u64::from(a[3]) << 9)
            | (u64::from(a[4]) << 1)
            | (u64::from(a[5]) >> 7);
        let ext = (u64::from(a[5] & 1) << 8) | u64::from(a[6]);
        Some(base * 300 + ext)
    }
    /// The payload bytes (empty when there is none or the adaptation field is malformed).
    pub fn payload(&self) -> &'a [u8] {
        if !self.has_payload() {
            return &[];
        }
        let start = if self.has_adaptation() {
            5 + usize::from(self.0[4])
        } else {
            4
        };
        if start >= PACKET_SIZE {
            return &[];
        }
        &self.0[start..]
    }
}

/// Sets the continuity counter of a packet.
pub fn set_cc(pkt: &mut [u8; PACKET_SIZE], cc: u8) {
    pkt[3] = (pkt[3] & 0xf0) | (cc & 0x0f);
}

/// Rewrites the PCR of a packet that carries one (27 MHz units, wrapped to 33-bit base).
pub fn set_pcr(pkt: &mut [u8; PACKET_SIZE], pcr: u64) -> bool {
    if Packet(pkt).pcr().is_none() {
        return false;
    }
    let base = (pcr / 300) % PTS_MOD;
    let ext = pcr % 300;
    let a = &mut pkt[6..12];
    a[0] = (base >> 25) as u8;
    a[1] = (base >> 17) as u8;
    a[2] = (base >> 9) as u8;
    a[3] = (base >> 1) as u8;
    a[4] = (((base & 1) as u8) << 7) | 0x7e | ((ext >> 8) as u8 & 1);
    a[5] = ext as u8;
    true
}

/// The timestamps and header length of a PES packet header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PesHeader {
    /// Stream id (0xE0.. video, 0xC0.. audio).
    pub stream_id: u8,
    /// Presentation timestamp (33-bit, 90 kHz).
    pub pts: Option<u64>,
    /// Decoding timestamp (33-bit, 90 kHz); absent means equal to PTS.
    pub dts: Option<u64>,
    /// Offset of the elementary-stream data from the start of the PES packet.
    pub payload_offset: usize,
}

fn read_ts(b: &[u8]) -> u64 {
    (u64::from(b[0] >> 1) & 0x07) << 30
        | u64::from(b[1]) << 22
        | (u64::from(b[2]) >> 1) << 15
        | u64::from(b[3]) << 7
        | u64::from(b[4]) >> 1
}

/// Writes a 33-bit timestamp in PES header form with the 4-bit `prefix` ('0010' PTS only,
/// '0011' PTS with DTS, '0001' DTS).
pub fn write_ts(b: &mut [u8], prefix: u8, ts: u64) {
    let ts = ts % PTS_MOD;
    b[0] = (prefix << 4) | (((ts >> 30) as u8 & 0x07) << 1) | 1;
    b[1] = (ts >> 22) as u8;
    b[2] = (((ts >> 15) as u8) << 1) | 1;
    b[3] = (ts >> 7) as u8;
    b[4] = ((ts as u8) << 1) | 1;
}

/// Parses the PES header at the start of `p` (the payload of a PUSI packet).
pub fn parse_pes_header(p: &[u8]) -> Option<PesHeader> {
    if p.len() < 9 || p[0] != 0 || p[1] != 0 || p[2] != 1 {
        return None;
    }
    let stream_id = p[3];
    // Stream ids without the optional header (padding, private 2, ECM...): no timestamps.
    if matches!(
        stream_id,
        0xbc | 0xbe | 0xbf | 0xf0 | 0xf1 | 0xf2 | 0xf8 | 0xff
    ) {
        return Some(PesHeader {
            stream_id,
            pts: None,
            dts: None,
            payload_offset: 6,
        });
    }
    if p[6] & 0xc0 != 0x80 {
        return None;
    }
    let flags = p[7] >> 6;
    let hlen = usize::from(p[8]);
    let payload_offset = 9 + hlen;
    if payload_offset > p.len() {
        return None;
    }
    let (pts, dts) = match flags {
        0b10 if hlen >= 5 => (Some(read_ts(&p[9..14])), None),
        0b11 if hlen >= 10 => (Some(read_ts(&p[9..14])), Some(read_ts(&p[14..19]))),
        0b00 => (None, None),
        _ => return None,
    };
    Some(PesHeader {
        stream_id,
        pts,
        dts,
        payload_offset,
    })
}

/// Rewrites PTS/DTS in the PES header at the start of this PUSI packet's payload by applying
/// `f` to each timestamp. Returns false when the packet holds no parsable PES header.
pub fn map_pes_timestamps(pkt: &mut [u8; PACKET_SIZE], f: impl Fn(u64) -> u64) -> bool {
    let view = Packet(pkt);
    if !view.pusi() {
        return false;
    }
    let start = PACKET_SIZE - view.payload().len();
    let Some(h) = parse_pes_header(view.payload()) else {
        return false;
    };
    let p = &mut pkt[start..];
    let flags = p[7] >> 6;
    if let Some(pts) = h.pts {
        write_ts(
            &mut p[9..14],
            if flags == 0b11 { 0b0011 } else { 0b0010 },
            f(pts),
        );
    }
    if let Some(dts) = h.dts {
        write_ts(&mut p[14..19], 0b0001, f(dts));
    }
    true
}

/// CRC-32/MPEG-2 as used by PSI sections.
pub fn crc32_mpeg2(data: &[u8]) -> u32 {
    let mut crc: u32 = 0xffff_ffff;
    for &b in data {
        crc ^= u32::from(b) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04c1_1db7
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// Errors reading a PSI section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PsiError {
    /// The section does not fit in the packet (multi-packet sections are not used by PAT/PMT
    /// in practice; they are rejected rather than misread).
    #[error("section truncated or spans packets")]
    Truncated,
    /// The CRC does not match.
    #[error("section CRC mismatch")]
    Crc,
    /// Not the expected table.
    #[error("unexpected table id {0:#x}")]
    TableId(u8),
}

/// Returns the section body (from table_id up to, not including, the CRC) after checking it.
fn section(payload: &[u8], table_id: u8) -> Result<&[u8], PsiError> {
    let pointer = usize::from(*payload.first().ok_or(PsiError::Truncated)?);
    let s = payload.get(1 + pointer..).ok_or(PsiError::Truncated)?;
    if s.len() < 3 {
        return Err(PsiError::Truncated);
    }
    if s[0] != table_id {
        return Err(PsiError::TableId(s[0]));
    }
    let len = (usize::from(s[1] & 0x0f) << 8) | usize::from(s[2]);
    if len < 9 || 3 + len > s.len() {
        return Err(PsiError::Truncated);
    }
    let whole = &s[..3 + len];
    if crc32_mpeg2(whole) != 0 {
        return Err(PsiError::Crc);
    }
    Ok(&whole[..whole.len() - 4])
}

/// Reads a PAT section; returns the PMT PID of the first program.
pub fn parse_pat(payload: &[u8]) -> Result<Option<u16>, PsiError> {
    let s = section(payload, 0x00)?;
    Ok(s[8..]
        .chunks_exact(4)
        .find(|e| u16::from_be_bytes([e[0], e[1]]) != 0)
        .map(|e| u16::from_be_bytes([e[2] & 0x1f, e[3]])))
}

/// One elementary stream listed in a PMT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EsInfo {
    /// stream_type (0x1B H.264, 0x0F AAC/ADTS, ...).
    pub stream_type: u8,
    /// PID carrying it.
    pub pid: u16,
}

/// Stream type of H.264 video.
pub const STREAM_TYPE_H264: u8 = 0x1b;
/// Stream type of AAC audio in ADTS.
pub const STREAM_TYPE_AAC: u8 = 0x0f;

/// Reads a PMT section; returns the elementary streams in order.
pub fn parse_pmt(payload: &[u8]) -> Result<Vec<EsInfo>, PsiError> {
    let s = section(payload, 0x02)?;
    if s.len() < 12 {
        return Err(PsiError::Truncated);
    }
    let info_len = (usize::from(s[10] & 0x0f) << 8) | usize::from(s[11]);
    let mut rest = s.get(12 + info_len..).ok_or(PsiError::Truncated)?;
    let mut out = Vec::new();
    while rest.len() >= 5 {
        let es_len = (usize::from(rest[3] & 0x0f) << 8) | usize::from(rest[4]);
        out.push(EsInfo {
            stream_type: rest[0],
            pid: u16::from_be_bytes([rest[1] & 0x1f, rest[2]]),
        });
        rest = rest.get(5 + es_len..).ok_or(PsiError::Truncated)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_of_known_pat() {
        // PAT from ffmpeg: program 1 -> PMT PID 0x1000.
        let sec = [
            0x00, 0xb0, 0x0d, 0x00, 0x01, 0xc1, 0x00, 0x00, 0x00, 0x01, 0xf0, 0x00,
        ];
        let crc = crc32_mpeg2(&sec);
        let mut full = sec.to_vec();
        full.extend_from_slice(&crc.to_be_bytes());
        assert_eq!(crc32_mpeg2(&full), 0);
        let mut payload = vec![0u8];
        payload.extend_from_slice(&full);
        assert_eq!(parse_pat(&payload), Ok(Some(0x1000)));
        payload[5] ^= 1;
        assert_eq!(parse_pat(&payload), Err(PsiError::Crc));
    }

    #[test]
    fn pes_timestamps_roundtrip() {
        let mut pkt = [0xffu8; PACKET_SIZE];
        pkt[..4].copy_from_slice(&[0x47, 0x41, 0x00, 0x10]);
        let hdr = [0, 0, 1, 0xe0, 0, 0, 0x80, 0xc0, 10];
        pkt[4..13].copy_from_slice(&hdr);
        write_ts(&mut pkt[13..18], 0b0011, 123_456);
        write_ts(&mut pkt[18..23], 0b0001, 120_000);
        let h = parse_pes_header(Packet(&pkt).payload()).unwrap();
        assert_eq!((h.pts, h.dts), (Some(123_456), Some(120_000)));
        assert!(map_pes_timestamps(&mut pkt, |t| (t + PTS_MOD - 100) % PTS_MOD));
        let h = parse_pes_header(Packet(&pkt).payload()).unwrap();
        assert_eq!((h.pts, h.dts), (Some(123_356), Some(119_900)));
        assert!(map_pes_timestamps(&mut pkt, |t| t + PTS_MOD * 3 + 5));
        let h = parse_pes_header(Packet(&pkt).payload()).unwrap();
        assert_eq!(h.pts, Some(123_361));
    }

    #[test]
    fn pcr_roundtrip() {
        let mut pkt = [0u8; PACKET_SIZE];
        pkt[..6].copy_from_slice(&[0x47, 0x01, 0x00, 0x30, 7, 0x10]);
        let pcr = (PTS_MOD - 1) * 300 + 299;
        assert!(set_pcr(&mut pkt, pcr));
        assert_eq!(Packet(&pkt).pcr(), Some(pcr));
        assert!(set_pcr(&mut pkt, pcr + 301));
        assert_eq!(Packet(&pkt).pcr(), Some(300)); // base wrapped to 1, extension 0
    }
}
