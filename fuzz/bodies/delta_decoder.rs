//! Delta decoder and decompressors on arbitrary bytes: never panic, never read out of bounds;
//! every error names the object; accepted JSON yields events whose revisions never go back.
//!
//! Shared by the cargo-fuzz target and `tests/it/reliability/fuzz_smoke.rs` (which replays the corpus).
use std::convert::Infallible;

use etcd_restore::snapstore::{Compression, decode_delta, decode_delta_json, decompress_vec};
use sha2::{Digest, Sha256};

const NAME: &str = "v2/Incr-00000001-00000009-1700000000";

fn check_json(json: &[u8]) {
    let mut last = i64::MIN;
    let res = decode_delta_json(json, NAME, &mut |e: &etcd_restore::snapstore::Event<'_>| {
        assert!(e.mod_revision > 0 && e.mod_revision >= last);
        assert!(!e.key.is_empty());
        last = e.mod_revision;
        Ok::<(), Infallible>(())
    });
    if let Err(e) = res {
        assert!(e.to_string().contains(NAME));
        if let Some(off) = e.offset() {
            assert!(
                off <= json.len() as u64,
                "offset {off} beyond {}",
                json.len()
            );
        }
    }
}

pub fn run(data: &[u8]) {
    // As a whole object (almost always a hash error, but exercises the length checks).
    let _ = decode_delta(data, NAME, |_| Ok::<(), Infallible>(()));
    // As JSON whose hash is right: the parser proper.
    check_json(data);
    let mut with_hash = data.to_vec();
    with_hash.extend_from_slice(&Sha256::digest(data));
    let a = decode_delta(&with_hash, NAME, |_| Ok::<(), Infallible>(())).ok();
    let b = decode_delta_json(data, NAME, &mut |_: &etcd_restore::snapstore::Event<'_>| {
        Ok::<(), Infallible>(())
    })
    .ok();
    assert_eq!(a, b);
    // As a compressed object of every kind.
    for c in [
        Compression::Gzip,
        Compression::Zlib,
        Compression::Lzw,
        Compression::Zstd,
    ] {
        match decompress_vec(c, data, NAME) {
            Ok(plain) => {
                let _ = decode_delta(&plain, NAME, |_| Ok::<(), Infallible>(()));
            }
            Err(e) => assert!(e.to_string().contains(NAME)),
        }
    }
}
