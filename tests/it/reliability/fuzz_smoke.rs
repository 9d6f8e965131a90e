//! Fuzz smoke run without cargo-fuzz: every fuzz target's body (`fuzz/bodies/*.rs`, shared
//! with the cargo-fuzz entry points) gets every committed corpus file and a few thousand
//! seeded mutations of them. A panic anywhere fails the test and names the input. Longer
//! coverage-guided runs: docs/reliability.md.
//!
//! `ETCD_RESTORE_FUZZ_SMOKE_ITERS` scales the mutations (default 2000; ×10 for the fast targets).

#[path = "../../../fuzz/bodies/batch_config.rs"]
mod batch_config;
#[path = "../../../fuzz/bodies/bbolt_open_check.rs"]
mod bbolt_open_check;
#[path = "../../../fuzz/bodies/delta_decoder.rs"]
mod delta_decoder;
#[path = "../../../fuzz/bodies/snap_reader.rs"]
mod snap_reader;
#[path = "../../../fuzz/bodies/snapshot_name.rs"]
mod snapshot_name;
#[path = "../../../fuzz/bodies/wal_decoder.rs"]
mod wal_decoder;

use std::path::{Path, PathBuf};
use std::time::Instant;

use testkit::Rng;
use testkit::tree::env_count;

type Body = fn(&[u8]);

/// Target, body, and its share of the mutations (the delta decoder runs four decompressors
/// per input and is ~1000× slower than the others).
const TARGETS: [(&str, Body, u64); 6] = [
    ("bbolt_open_check", bbolt_open_check::run, 10),
    ("wal_decoder", wal_decoder::run, 10),
    ("snap_reader", snap_reader::run, 10),
    ("delta_decoder", delta_decoder::run, 1),
    ("snapshot_name", snapshot_name::run, 10),
    ("batch_config", batch_config::run, 1),
];

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(corpus_dir(target))
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().is_file())
                .map(|e| {
                    (
                        e.file_name().to_string_lossy().into_owned(),
                        std::fs::read(e.path()).unwrap(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// A libFuzzer-like mutation: a few random edits of one corpus input (or a splice of two).
fn mutate(rng: &mut Rng, inputs: &[(String, Vec<u8>)]) -> Vec<u8> {
    let pick = |rng: &mut Rng| {
        inputs
            .get(rng.below(inputs.len() as u64) as usize)
            .map(|(_, d)| d.clone())
            .unwrap_or_default()
    };
    let mut d = pick(rng);
    let edits = 1 + rng.below(8);
    for _ in 0..edits {
        let len = d.len() as u64;
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len) as usize;
                d[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len) as usize;
                d[i] = [0u8, 0xff, 0x7f, 0x80, b'0', b'-', b'.', b'"'][rng.below(8) as usize];
            }
            2 => {
                let i = rng.below(len + 1) as usize;
                d.insert(i, rng.next_u64() as u8);
            }
            3 if len > 0 => {
                let i = rng.below(len) as usize;
                d.remove(i);
            }
            4 => d.truncate(rng.below(len + 1) as usize),
            5 if len > 8 => {
                // Overwrite a little-endian word with an interesting value (lengths, counts).
                let i = rng.below(len - 7) as usize;
                let v: u64 =
                    [0, 1, u64::MAX, u32::MAX as u64, 4096, 1 << 31][rng.below(6) as usize];
                d[i..i + 8].copy_from_slice(&v.to_le_bytes());
            }
            6 if len > 2 => {
                // Duplicate a chunk.
                let a = rng.below(len) as usize;
                let b = (a + 1 + rng.below(64) as usize).min(d.len());
                let chunk = d[a..b].to_vec();
                let at = rng.below(d.len() as u64 + 1) as usize;
                d.splice(at..at, chunk);
            }
            7 => {
                // Splice with another input.
                let other = pick(rng);
                let cut = rng.below(len + 1) as usize;
                let from = rng.below(other.len() as u64 + 1) as usize;
                d.truncate(cut);
                d.extend_from_slice(&other[from..]);
            }
            _ => {
                let n = rng.below(16) as usize;
                for _ in 0..n {
                    d.push(rng.next_u64() as u8);
                }
            }
        }
    }
    d
}

fn run_one(target: &str, body: Body, what: &str, data: &[u8]) {
    let r = std::panic::catch_unwind(|| body(data));
    if r.is_err() {
        // Keep the input for `cargo fuzz run <target> <file>`.
        let dir = std::env::temp_dir().join("etcd-restore-fuzz-smoke");
        let _ = std::fs::create_dir_all(&dir);
        let file = dir.join(format!("{target}-crash-{}", std::process::id()));
        let _ = std::fs::write(&file, data);
        panic!(
            "{target}: panic on {what} ({} bytes), input saved to {}",
            data.len(),
            file.display()
        );
    }
}

#[test]
fn every_fuzz_target_survives_its_corpus_and_seeded_mutations() {
    let iters = env_count("ETCD_RESTORE_FUZZ_SMOKE_ITERS", 2000);
    for (target, body, share) in TARGETS {
        let iters = iters * share;
        let t = Instant::now();
        let inputs = corpus(target);
        assert!(
            !inputs.is_empty(),
            "{target}: no corpus in {}",
            corpus_dir(target).display()
        );
        for (name, data) in &inputs {
            run_one(target, body, name, data);
        }
        run_one(target, body, "the empty input", b"");
        let mut rng = Rng::new(0xf022 ^ target.len() as u64);
        for i in 0..iters {
            let d = mutate(&mut rng, &inputs);
            run_one(target, body, &format!("mutation {i}"), &d);
        }
        println!(
            "fuzz smoke {target}: {} corpus inputs + {iters} mutations in {:.2?}",
            inputs.len(),
            t.elapsed()
        );
    }
}

/// Writes small seed inputs for the targets whose corpus comes from our own writers
/// (`cargo test --test it -- --ignored write_seed_corpora`); existing files stay.
#[test]
#[ignore]
fn write_seed_corpora() {
    let tmp = testkit::tempfile::tempdir().unwrap();
    let put = |target: &str, name: &str, data: &[u8]| {
        let dir = corpus_dir(target);
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        if !p.exists() {
            std::fs::write(p, data).unwrap();
        }
    };
    // bbolt: tiny files with etcd-like buckets, nested buckets, inline and paged values.
    for (ps, name) in [(512u32, "etcd-512"), (1024, "etcd-1k"), (4096, "etcd-4k")] {
        let path = tmp.path().join(name);
        let db = bbolt::Db::open(
            &path,
            bbolt::OpenOptions {
                create: true,
                page_size: ps,
                no_sync: true,
                ..bbolt::OpenOptions::default()
            },
        )
        .unwrap();
        let mut tx = db.begin_write().unwrap();
        for b in [&b"key"[..], b"meta", b"lease", b"members"] {
            let mut bk = tx.create_bucket(b).unwrap();
            for i in 0..if b == b"key" { 40u32 } else { 3 } {
                let v = vec![b'v'; (i as usize * 37) % 700];
                bk.put(format!("k{i:04}").as_bytes(), &v).unwrap();
            }
        }
        {
            let mut outer = tx.create_bucket(b"nested").unwrap();
            let mut inner = outer.create_bucket(b"inner").unwrap();
            inner.put(b"a", b"1").unwrap();
        }
        tx.commit().unwrap();
        drop(db);
        put("bbolt_open_check", name, &std::fs::read(&path).unwrap());
    }
    // WAL and .snap of a freshly restored 3-member cluster.
    let cluster = wal::Cluster::from_initial_cluster(
        "a=http://10.0.0.1:2380,b=http://10.0.0.2:2380,c=http://10.0.0.3:2380",
        "etcd-cluster",
    )
    .unwrap();
    for (flavor, tag) in [
        (wal::RestoreFlavor::V3_5, "35"),
        (wal::RestoreFlavor::V3_4, "34"),
    ] {
        let fresh = wal::FreshMember::new(&cluster, "b", flavor).unwrap();
        let d = tmp.path().join(tag);
        let snap = fresh
            .write(
                &wal::OsFs,
                &d.join("wal"),
                &d.join("snap"),
                wal::WriterOptions::default(),
            )
            .unwrap();
        put(
            "snap_reader",
            &format!("fresh-{tag}.snap"),
            &std::fs::read(&snap).unwrap(),
        );
        let seg = std::fs::read(d.join("wal/0000000000000000-0000000000000000.wal")).unwrap();
        let used = seg.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        let used = used.div_ceil(8) * 8;
        let mut input = vec![0u8]; // first byte: no split into two segments
        input.extend_from_slice(&seg[..used]);
        put("wal_decoder", &format!("fresh-{tag}"), &input);
        // The same records split into two segments at 64 bytes.
        input[0] = 8;
        put("wal_decoder", &format!("fresh-{tag}-split"), &input);
    }
    put(
        "snap_reader",
        "name",
        b"0000000000000001-0000000000000003.snap",
    );
    put(
        "snap_reader",
        "segment-name",
        b"0000000000000000-0000000000000000.wal",
    );
}
