//! Arbitrary bytes as a `.snap` file (and as a file name): reading must never panic, and
//! a snapshot that loads survives a write/read round trip.
//!
//! Shared by the cargo-fuzz target and `tests/it/reliability/fuzz_smoke.rs` (which replays the corpus).
pub fn run(data: &[u8]) {
    if let Ok(s) = wal::snap::decode_snap(data) {
        let again = wal::snap::decode_snap(&wal::snap::encode_snap(&s));
        assert_eq!(again.as_ref(), Ok(&s));
    }
    if let Ok(name) = std::str::from_utf8(data) {
        if let Some((t, i)) = wal::snap::parse_snap_name(name) {
            assert_eq!(wal::snap::snap_name(t, i), name);
        }
        if let Some(id) = wal::SegmentId::parse(name) {
            assert_eq!(id.file_name(), name);
        }
    }
}
