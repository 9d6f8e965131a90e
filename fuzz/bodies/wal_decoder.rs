//! Arbitrary bytes as one or two WAL segments: decoding, verification, payload decoding
//! and record printing must never panic, and decoding is consistent with verification.
//!
//! Shared by the cargo-fuzz target and `tests/it/reliability/fuzz_smoke.rs` (which replays the corpus).
use wal::decoder::{DecodedRecord, Visitor, decode_buffers};
use wal::{Damage, SegmentId};

struct Describe(usize);

impl Visitor for Describe {
    fn record(&mut self, r: &DecodedRecord<'_>) -> Result<(), Damage> {
        let rec = wal::WalRecord::from_decoded(r);
        self.0 += wal::dump::describe(&rec).len();
        Ok(())
    }
}

pub fn run(data: &[u8]) {
    // The first byte picks where the first segment ends (in 8-byte steps), so inputs can
    // exercise the CRC chain across segments and the last-segment-only torn rule.
    let (split, body) = match data.split_first() {
        Some((s, rest)) => (usize::from(*s) * 8, rest),
        None => (0, data),
    };
    let s0 = SegmentId { seq: 0, index: 0 };
    let s1 = SegmentId { seq: 1, index: 1 };
    let segments: Vec<(SegmentId, &[u8])> = if split == 0 || split >= body.len() {
        vec![(s0, body)]
    } else {
        let (a, b) = body.split_at(split);
        vec![(s0, a), (s1, b)]
    };
    let decoded = decode_buffers(&segments, &mut Describe(0));
    let report = wal::verify::verify_buffers(&segments);
    let _ = report.to_json();
    let _ = report.to_text();
    // Frame-level corruption seen by the plain decoder is corruption for verify too.
    if decoded.is_err() {
        assert!(!report.is_usable());
    }
}
