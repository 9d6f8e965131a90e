//! Bench inputs, generated on demand into `<workspace>/bench-data/` (git-ignored).
#![allow(dead_code)]

use std::path::PathBuf;

pub fn bench_data() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../bench-data");
    std::fs::create_dir_all(&d).expect("create bench-data");
    d
}

/// 17-byte etcd revision key `{main, '_', sub 0}`.
pub fn rev_key(rev: u64) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[..8].copy_from_slice(&rev.to_be_bytes());
    k[8] = b'_';
    k
}

/// A ~330-byte value shaped like a marshalled `mvccpb.KeyValue`.
pub fn kv_value(rev: u64) -> Vec<u8> {
    let key = format!("/registry/pods/default/pod-{:08}", rev % 50_000);
    let mut v = Vec::with_capacity(340);
    v.push(0x0a);
    v.push(key.len() as u8);
    v.extend_from_slice(key.as_bytes());
    v.extend_from_slice(&[0x10, 0x02, 0x18, 0x04, 0x20, 0x01, 0x2a, 0xac, 0x02]);
    v.extend(std::iter::repeat_n((rev % 251) as u8, 300));
    v
}

/// Peak resident memory of this process so far (VmHWM), in KiB.
pub fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// An etcd-like database of at least `min_bytes`: etcd's buckets, the `key` bucket filled
/// with increasing revisions at fill 0.9 in 100k-key commits (what etcd's batch commits do),
/// built once and reused.
pub fn etcd_db(min_bytes: u64) -> PathBuf {
    let path = bench_data().join(format!("etcd-{}m.db", min_bytes >> 20));
    if std::fs::metadata(&path).is_ok_and(|m| m.len() >= min_bytes) {
        return path;
    }
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let db = bbolt::Db::open(
        &tmp,
        bbolt::OpenOptions {
            create: true,
            free_space: bbolt::FreeSpace::AppendOnly,
            no_sync: true,
            ..Default::default()
        },
    )
    .expect("create bench db");
    db.update(|tx| {
        for b in [
            &b"alarm"[..],
            b"auth",
            b"authRoles",
            b"authUsers",
            b"cluster",
            b"key",
            b"lease",
            b"members",
            b"members_removed",
            b"meta",
        ] {
            tx.create_bucket(b)?;
        }
        Ok(())
    })
    .unwrap();
    let mut rev = 2u64;
    while std::fs::metadata(&tmp).map(|m| m.len()).unwrap_or(0) < min_bytes {
        let mut tx = db.begin_write().unwrap();
        let mut b = tx.bucket_mut(b"key").unwrap().unwrap();
        b.set_fill_percent(0.9);
        for _ in 0..100_000 {
            b.put(&rev_key(rev), &kv_value(rev)).unwrap();
            rev += 1;
        }
        tx.commit().unwrap();
    }
    drop(db);
    std::fs::rename(&tmp, &path).unwrap();
    path
}
