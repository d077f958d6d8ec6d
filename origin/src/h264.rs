//! The slice of H.264 (ISO/IEC 14496-10) the origin needs: Annex B NAL unit scanning to tell
//! IDR access units from others, and the SPS fields behind CODECS and RESOLUTION.

/// NAL unit type of a non-IDR coded slice.
pub const NAL_SLICE: u8 = 1;
/// NAL unit type of an IDR coded slice.
pub const NAL_IDR: u8 = 5;
/// NAL unit type of a sequence parameter set.
pub const NAL_SPS: u8 = 7;

/// Yields `(offset_of_nal_header, nal_type)` for every NAL unit start in Annex B `data`.
pub fn nal_units(data: &[u8]) -> impl Iterator<Item = (usize, u8)> + '_ {
    let mut i = 0;
    std::iter::from_fn(move || {
        while i + 3 < data.len() {
            if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
                let at = i + 3;
                i = at;
                return Some((at, data[at] & 0x1f));
            }
            i += 1;
        }
        None
    })
}

/// Fields of a sequence parameter set that playlists advertise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sps {
    /// profile_idc (66 baseline, 77 main, 100 high...).
    pub profile_idc: u8,
    /// The constraint_set flags byte.
    pub constraints: u8,
    /// level_idc (30 = 3.0).
    pub level_idc: u8,
    /// Displayed width in pixels (after cropping).
    pub width: u32,
    /// Displayed height in pixels (after cropping).
    pub height: u32,
}

impl Sps {
    /// RFC 6381 codec string, e.g. `avc1.4d401e`.
    pub fn codec_string(&self) -> String {
        format!(
            "avc1.{:02x}{:02x}{:02x}",
            self.profile_idc, self.constraints, self.level_idc
        )
    }
}

/// Bit reader over an RBSP (emulation-prevention bytes already removed).
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Bits<'_> {
    fn bit(&mut self) -> Option<u32> {
        let byte = *self.data.get(self.pos / 8)?;
        let b = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Some(u32::from(b))
    }
    fn bits(&mut self, n: u32) -> Option<u32> {
        (0..n).try_fold(0u32, |acc, _| Some((acc << 1) | self.bit()?))
    }
    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        Some(((1u64 << zeros) - 1 + u64::from(self.bits(zeros)?)) as u32)
    }
    fn se(&mut self) -> Option<i32> {
        let k = self.ue()?;
        Some(if k % 2 == 1 {
            k.div_ceil(2) as i32
        } else {
            -((k / 2) as i32)
        })
    }
}

/// Removes emulation-prevention bytes (00 00 03 → 00 00).
fn rbsp(nal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len());
    let mut zeros = 0;
    for &b in nal {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

fn skip_scaling_list(r: &mut Bits<'_>, size: usize) -> Option<()> {
    let (mut last, mut next) = (8i32, 8i32);
    for _ in 0..size {
        if next != 0 {
            let delta = r.se()?;
            // delta_scale is specified in -128..=127; anything else is a corrupt SPS.
            if !(-128..=127).contains(&delta) {
                return None;
            }
            next = (last + delta + 256) % 256;
        }
        if next != 0 {
            last = next;
        }
    }
    Some(())
}

/// Parses an SPS NAL unit (starting at its header byte). `None` when it is malformed.
pub fn parse_sps(nal: &[u8]) -> Option<Sps> {
    if nal.first()? & 0x1f != NAL_SPS {
        return None;
    }
    let data = rbsp(&nal[1..]);
    let mut r = Bits {
        data: &data,
        pos: 0,
    };
    let profile_idc = r.bits(8)? as u8;
    let constraints = r.bits(8)? as u8;
    let level_idc = r.bits(8)? as u8;
    r.ue()?; // seq_parameter_set_id
    let mut chroma_format_idc = 1;
    let mut separate_colour_plane = 0;
    if matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma_format_idc = r.ue()?;
        if chroma_format_idc == 3 {
            separate_colour_plane = r.bit()?;
        }
        r.ue()?; // bit_depth_luma_minus8
        r.ue()?; // bit_depth_chroma_minus8
        r.bit()?; // qpprime_y_zero_transform_bypass_flag
        if r.bit()? == 1 {
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.bit()? == 1 {
                    skip_scaling_list(&mut r, if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    r.ue()?; // log2_max_frame_num_minus4
    match r.ue()? {
        0 => {
            r.ue()?; // log2_max_pic_order_cnt_lsb_minus4
        }
        1 => {
            r.bit()?;
            r.se()?;
            r.se()?;
            let n = r.ue()?;
            if n > 255 {
                return None;
            }
            for _ in 0..n {
                r.se()?;
            }
        }
        _ => {}
    }
    r.ue()?; // max_num_ref_frames
    r.bit()?; // gaps_in_frame_num_value_allowed_flag
    let w_mbs = r.ue()? + 1;
    let h_map = r.ue()? + 1;
    let frame_mbs_only = r.bit()?;
    if frame_mbs_only == 0 {
        r.bit()?; // mb_adaptive_frame_field_flag
    }
    r.bit()?; // direct_8x8_inference_flag
    let (mut cl, mut cr, mut ct, mut cb) = (0, 0, 0, 0);
    if r.bit()? == 1 {
        cl = r.ue()?;
        cr = r.ue()?;
        ct = r.ue()?;
        cb = r.ue()?;
    }
    let (sub_w, sub_h) = match (chroma_format_idc, separate_colour_plane) {
        (1, 0) => (2, 2),
        (2, 0) => (2, 1),
        _ => (1, 1),
    };
    let crop_x = if chroma_format_idc == 0 || separate_colour_plane == 1 {
        1
    } else {
        sub_w
    };
    let crop_y = (if chroma_format_idc == 0 || separate_colour_plane == 1 {
        1
    } else {
        sub_h
    }) * (2 - frame_mbs_only);
    // Widen before any arithmetic: every field is attacker-controlled on an ingest.
    let (w_mbs, h_map) = (u64::from(w_mbs), u64::from(h_map));
    let (cl, cr, ct, cb) = (u64::from(cl), u64::from(cr), u64::from(ct), u64::from(cb));
    let (crop_x, crop_y) = (crop_x as u64, crop_y as u64); // 1 or 2 by construction
    let width = (w_mbs * 16).checked_sub((cl + cr) * crop_x)?;
    let height = (u64::from(2 - frame_mbs_only) * h_map * 16).checked_sub((ct + cb) * crop_y)?;
    if width == 0 || height == 0 || width > 16384 || height > 16384 {
        return None;
    }
    let (width, height) = (width as u32, height as u32);
    Some(Sps {
        profile_idc,
        constraints,
        level_idc,
        width,
        height,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nal_types() {
        let data = [
            0, 0, 0, 1, 0x09, 0xf0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x65, 0x88,
        ];
        let types: Vec<u8> = nal_units(&data).map(|(_, t)| t).collect();
        assert_eq!(types, vec![9, 7, 5]);
    }

    #[test]
    fn parses_x264_main_360p_sps() {
        // SPS emitted by x264 for 640x360 main profile level 3.0.
        let sps = [
            0x67, 0x4d, 0x40, 0x1e, 0xec, 0xa0, 0x50, 0x17, 0xfc, 0xb8, 0x08, 0x80, 0x00, 0x00,
            0x03, 0x00, 0x80, 0x00, 0x00, 0x19, 0x07, 0x8b, 0x16, 0xcb,
        ];
        let s = parse_sps(&sps).unwrap();
        assert_eq!((s.width, s.height), (640, 360));
        assert_eq!(s.codec_string(), "avc1.4d401e");
    }

    /// Reproducers found by `cargo fuzz run sps` (overflowing sizes, crops, scaling deltas).
    #[test]
    fn fuzzer_reproducers_are_rejected() {
        for hex in [
            "674d401eeca05000000017fcb80880cb",
            "27677f2c01dddd00000000dddddd2c2b",
            "6767bb00f500000009f5f5f50df538",
            "671d404d0927570b00000000ffffffff051d00ff2e000067",
            "671d4031104d09570b00000000ffffffff2e00000067",
            "6764001ead80000000fffffffe",
        ] {
            let bytes: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            if let Some(s) = parse_sps(&bytes) {
                assert!(
                    (1..=16384).contains(&s.width) && (1..=16384).contains(&s.height),
                    "{hex}: {s:?}"
                );
            }
        }
    }

    #[test]
    fn garbage_is_rejected_not_panicking() {
        assert_eq!(parse_sps(&[0x67]), None);
        assert_eq!(parse_sps(&[0x67, 0x4d, 0x40]), None);
        assert_eq!(parse_sps(&[0x67, 0x64, 0, 0x1e, 0]), None);
        assert_eq!(parse_sps(&[0x65, 1, 2, 3]), None);
    }
}
