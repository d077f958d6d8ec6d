//! `origin::h264::parse_sps` on arbitrary bytes: returns `Some` or `None`, never panics.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(sps) = origin::h264::parse_sps(data) {
        // What the parser promises about accepted SPSs.
        assert!(sps.width > 0 && sps.width <= 16384, "width {}", sps.width);
        assert!(sps.height > 0 && sps.height <= 16384, "height {}", sps.height);
        let _ = sps.codec_string();
    }
});
