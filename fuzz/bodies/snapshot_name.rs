//! Snapshot names and object paths from a hostile bucket: never panic; whatever is accepted
//! re-formats to a name that parses to the same value, and sits at a safe relative path.
//!
//! Shared by the cargo-fuzz target and `tests/it/reliability/fuzz_smoke.rs` (which replays the corpus).
use etcd_restore::snapstore::{
    ObjectKind, classify_object, format_snapshot_name, parse_snapshot_name,
};

pub fn run(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(name) = parse_snapshot_name(s) {
        assert!(name.start_revision >= 0 && name.start_revision <= name.last_revision);
        assert!(name.created_on >= 0);
        let again = parse_snapshot_name(&format_snapshot_name(&name)).expect("re-parse");
        assert_eq!(again, name);
    }
    if let ObjectKind::Snapshot(snap) = classify_object(s, Some(1)) {
        assert_eq!(snap.path, s);
        let segments: Vec<&str> = s.split('/').collect();
        assert!(segments.len() == 2 || segments.len() == 3, "{s:?}");
        assert!(matches!(segments[0], "v1" | "v2"));
        for seg in &segments {
            assert!(!seg.is_empty() && *seg != "." && *seg != "..", "{s:?}");
        }
        assert_eq!(
            parse_snapshot_name(&snap.snap_name).ok(),
            Some(snap.name.clone())
        );
    }
}
