//! Full check of a >= 1 GiB etcd-like database with a warm page cache, compared with the Go
//! oracle's `tx.Check()` on the same file in the same run (when `.deps/bin/bboltoracle` is
//! installed). The input is generated once into bench-data/.
//!
//! Not the same work: the file has no synced freelist (as etcd writes it), so Go's check first
//! rebuilds the freelist with a walk of every tree (bbolt 1.3.6 `loadFreelist` → `freepages`)
//! and then walks them again; ours walks once. The output and docs/bbolt.md say so next to
//! the figure.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn warm(path: &Path) {
    use std::io::Read;
    let mut f = std::fs::File::open(path).unwrap();
    let mut buf = vec![0u8; 8 << 20];
    while f.read(&mut buf).unwrap() > 0 {}
}

fn ours(path: &Path) -> Duration {
    let t = Instant::now();
    let r = bbolt::check::check_file(path, &Default::default()).unwrap();
    let d = t.elapsed();
    assert!(r.is_clean(), "{:?}", &r.findings[..r.findings.len().min(5)]);
    d
}

fn go(path: &Path) -> Option<Duration> {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.deps/bin/bboltoracle");
    if !bin.exists() {
        println!("check: Go oracle not installed; no comparison");
        return None;
    }
    let t = Instant::now();
    let out = std::process::Command::new(&bin)
        .arg("check")
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "Go check: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    Some(t.elapsed())
}

fn bench(c: &mut Criterion) {
    let path = common::etcd_db(1 << 30);
    let len = std::fs::metadata(&path).unwrap().len();
    warm(&path);
    let mut g = c.benchmark_group("check");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    g.throughput(Throughput::Bytes(len));
    g.bench_function("etcd_db_1GiB_warm", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| ours(&path)).sum())
    });
    g.finish();
    let best = (0..3).map(|_| ours(&path)).min().unwrap_or_default();
    let gbps = len as f64 / best.as_secs_f64() / 1e9;
    println!(
        "check: {} bytes in {:.3}s = {gbps:.2} GB/s; peak RSS of this process {} MiB",
        len,
        best.as_secs_f64(),
        common::peak_rss_kib() / 1024
    );
    if let Some(g) = (0..2).filter_map(|_| go(&path)).min() {
        println!(
            "check: Go tx.Check() {:.3}s (two tree walks: freelist rebuild + check; ours one); \
             ours is {:.1}x faster",
            g.as_secs_f64(),
            g.as_secs_f64() / best.as_secs_f64()
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
