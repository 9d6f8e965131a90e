//! Arbitrary bytes as a bbolt file: the checker and every reader (open, dump, stats, cursors
//! both ways, point lookups) must return errors, never panic or read out of bounds. Each
//! input is also tried with both meta checksums repaired, so the fuzzer gets past meta
//! validation into the trees.
//!
//! Shared by the cargo-fuzz target and `tests/it/reliability/fuzz_smoke.rs` (which replays the corpus).
fn exercise(data: &[u8]) {
    let _ = bbolt::check::check_bytes(
        data,
        &bbolt::check::CheckOptions {
            max_findings: 64,
            mapped_budget: 0,
        },
    );
    let Ok(tx) = bbolt::ReadTx::from_bytes(data) else {
        return;
    };
    let _ = bbolt::dump::write_dump_tx(&tx, &mut std::io::sink());
    let _ = bbolt::stats::stats(&tx);
    let root = tx.root();
    let mut c = root.cursor();
    let mut n = 0;
    let mut e = c.first();
    while let Ok(Some(x)) = e {
        if let Ok(b) = root.bucket_at(&x) {
            let mut bc = b.cursor();
            let _ = bc.last();
            for _ in 0..8 {
                if !matches!(bc.prev(), Ok(Some(_))) {
                    break;
                }
            }
            let _ = bc.seek(x.key);
            let _ = b.get(x.key);
        }
        n += 1;
        if n > 64 {
            break;
        }
        e = c.next();
    }
    let _ = c.seek(b"key");
    let _ = c.prev();
}

/// Recomputes the checksum of the meta page at `off` (page size taken from the meta itself).
fn fix_meta(buf: &mut [u8], off: usize) {
    let Some(meta) = buf.get(off + 16..off + 72) else {
        return;
    };
    let sum = bbolt::meta::fnv1a64(meta).to_le_bytes();
    if let Some(slot) = buf.get_mut(off + 72..off + 80) {
        slot.copy_from_slice(&sum);
    }
}

pub fn run(data: &[u8]) {
    exercise(data);
    if data.len() >= 80 {
        let mut fixed = data.to_vec();
        fix_meta(&mut fixed, 0);
        let ps = u32::from_le_bytes([fixed[24], fixed[25], fixed[26], fixed[27]]) as usize;
        if bbolt::meta::valid_page_size(ps as u32) {
            fix_meta(&mut fixed, ps);
        }
        exercise(&fixed);
    }
}
