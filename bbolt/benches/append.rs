//! Appending 1M 17-byte revision keys with ~300-byte values to one bucket in bounded commits
//! (100k keys per commit, append-only allocation, fill 0.9): restore's hot path.
//! `BBOLT_BENCH_NO_SYNC=1` skips fdatasync to measure the CPU side alone.

mod common;

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const KEYS: u64 = 1_000_000;
const BATCH: u64 = 100_000;

fn run_once(no_sync: bool) -> Duration {
    let path = common::bench_data().join("append-bench.db");
    let _ = std::fs::remove_file(&path);
    let values: Vec<Vec<u8>> = (0..256).map(common::kv_value).collect();
    let db = bbolt::Db::open(
        &path,
        bbolt::OpenOptions {
            create: true,
            free_space: bbolt::FreeSpace::AppendOnly,
            no_sync,
            ..Default::default()
        },
    )
    .unwrap();
    db.update(|tx| tx.create_bucket(b"key").map(|_| ()))
        .unwrap();
    let start = Instant::now();
    let mut rev = 2u64;
    while rev < KEYS + 2 {
        let mut tx = db.begin_write().unwrap();
        let mut b = tx.bucket_mut(b"key").unwrap().unwrap();
        b.set_fill_percent(0.9);
        for _ in 0..BATCH {
            b.put(&common::rev_key(rev), &values[(rev % 256) as usize])
                .unwrap();
            rev += 1;
        }
        tx.commit().unwrap();
    }
    let t = start.elapsed();
    drop(db);
    let _ = std::fs::remove_file(&path);
    t
}

fn bench(c: &mut Criterion) {
    let no_sync = std::env::var_os("BBOLT_BENCH_NO_SYNC").is_some();
    let mut g = c.benchmark_group("append");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10));
    g.throughput(Throughput::Elements(KEYS));
    let name = if no_sync {
        "1M_revisions_100k_per_commit_no_fsync"
    } else {
        "1M_revisions_100k_per_commit"
    };
    g.bench_function(name, |b| {
        b.iter_custom(|iters| (0..iters).map(|_| run_once(no_sync)).sum())
    });
    g.finish();
    let best = (0..3).map(|_| run_once(no_sync)).min().unwrap_or_default();
    println!(
        "append: best of 3 = {:.3}s, {:.0} keys/s; peak RSS of this process {} MiB",
        best.as_secs_f64(),
        KEYS as f64 / best.as_secs_f64(),
        common::peak_rss_kib() / 1024
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
