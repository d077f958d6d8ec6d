//! Arbitrary bytes through the origin's ingest path: `Demuxer` (fed in input-chosen chunk
//! sizes) then `Segmenter`, checking invariants every produced segment must satisfy.
//!
//! Input layout: byte 0 picks the chunking, the rest is the transport stream.
//!   0       -> the whole stream in one `push`
//!   1..=255 -> `push` calls of that many bytes (the last one shorter)

#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use origin::demux::Demuxer;
use origin::segmenter::{Output, Segmenter, SegmenterConfig};

const PACKET_SIZE: usize = 188;

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, stream)) = data.split_first() else {
        return;
    };
    let chunk = if chunk == 0 { stream.len().max(1) } else { usize::from(chunk) };

    let mut d = Demuxer::new();
    let mut s = Segmenter::new(SegmenterConfig::for_target(180_000, 4 << 20));
    let (mut ev, mut out) = (Vec::new(), Vec::new());
    for piece in stream.chunks(chunk) {
        d.push(piece, &mut ev);
    }
    d.finish(&mut ev);
    for e in ev.drain(..) {
        s.handle(e, Instant::now(), &mut out);
    }
    s.finish(false, &mut out);

    let mut prev_msn: Option<u64> = None;
    for o in &out {
        let Output::Segment(seg) = o else { continue };
        assert_eq!(
            seg.data.len() % PACKET_SIZE,
            0,
            "segment {} is {} bytes, not whole packets",
            seg.msn,
            seg.data.len()
        );
        // Extra invariant: every packet the demuxer forwards was sync-aligned.
        for (i, p) in seg.data.chunks(PACKET_SIZE).enumerate() {
            assert_eq!(p[0], 0x47, "segment {} packet {i} lacks the sync byte", seg.msn);
        }
        assert!(seg.duration > 0, "segment {} has duration {}", seg.msn, seg.duration);
        if let Some(prev) = prev_msn {
            assert_eq!(
                Some(seg.msn),
                prev.checked_add(1),
                "segment numbers not consecutive: {prev} then {}",
                seg.msn
            );
        }
        prev_msn = Some(seg.msn);
    }
});
