//! Batch files from anywhere: never panic; whatever is accepted keeps the promises the
//! checker makes (unique aliases and stores, data dirs unique and not nested in each other).
//!
//! Shared by the cargo-fuzz target and `tests/it/reliability/fuzz_smoke.rs` (which replays the corpus).
use std::path::Path;

use etcd_restore::batch::{Batch, Purpose};
use etcd_restore::snapstore::StoreArgs;

pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let base = StoreArgs::default();
    for purpose in [Purpose::Restore, Purpose::Compact, Purpose::Validate] {
        let Ok(batch) = Batch::parse(
            text,
            Path::new("fuzz.yaml"),
            Path::new("/fuzz"),
            purpose,
            &base,
        ) else {
            continue;
        };
        let mut aliases: Vec<&str> = batch.members.iter().map(|m| m.alias.as_str()).collect();
        aliases.sort_unstable();
        let n = aliases.len();
        aliases.dedup();
        assert_eq!(aliases.len(), n, "duplicate alias accepted");
        let mut stores: Vec<&str> = batch.members.iter().map(|m| m.store_key.as_str()).collect();
        stores.sort_unstable();
        stores.dedup();
        assert_eq!(stores.len(), n, "two members share a store");
        let dirs: Vec<_> = batch
            .members
            .iter()
            .flat_map(|m| m.targets.dirs())
            .collect();
        for (i, a) in dirs.iter().enumerate() {
            for b in dirs.iter().skip(i + 1) {
                assert!(
                    !a.starts_with(b) && !b.starts_with(a),
                    "nested or equal data dirs accepted: {a:?} {b:?}"
                );
            }
        }
    }
}
