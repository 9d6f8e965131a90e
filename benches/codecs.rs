//! Decompression throughput (decompressed bytes/s) of each snapshot codec on the same delta
//! text, next to the system tools on the same file: `gzip -d` for .gz (and zlib, same
//! deflate), `zstd -d` for .zst. LZW (`.Z`) has no system tool that reads Go's headerless
//! stream, so it stands alone.
//!
//! Both sides do the same work: decompress the whole input and throw the output away. Ours
//! writes into a counting sink; the tool writes to `/dev/null` (not a pipe this process would
//! have to drain and store, which used to be charged to the tool). The tool's output length is
//! checked once, outside the measurement. What remains on the tool's side only: process
//! start-up (~1 ms) and reading the compressed file from the page cache, both small against
//! decompressing 64 MiB.
//!
//! `cargo bench --bench codecs`.

mod support;

use std::hint::black_box;
use std::io::Write;
use std::process::{Command, Stdio};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use etcd_restore::snapstore::{Compression, compress_to, decompress_to};

/// Counts bytes without storing them, like `> /dev/null`.
struct Sink(u64);

impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0 += b.len() as u64;
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs the tool with its output discarded by the kernel, as ours is by the sink.
fn tool(cmd: &str, args: &[&str], file: &std::path::Path) {
    let status = Command::new(cmd)
        .args(args)
        .arg(file)
        .stdout(Stdio::null())
        .status()
        .expect("run tool");
    assert!(status.success(), "{cmd} failed");
}

/// The tool's output length, through a pipe: once, outside the measurements.
fn tool_output_len(cmd: &str, args: &[&str], file: &std::path::Path) -> u64 {
    let out = Command::new(cmd)
        .args(args)
        .arg(file)
        .stdout(Stdio::piped())
        .output()
        .expect("run tool");
    assert!(out.status.success(), "{cmd} failed");
    out.stdout.len() as u64
}

fn bench(c: &mut Criterion) {
    let plain = support::delta_object(64 << 20);
    let dir = tempfile::tempdir().unwrap();
    // CPU-time throughput first (robust on a loaded machine), then criterion's wall time.
    let mut summary = Vec::new();
    let mut g = c.benchmark_group("codecs");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(plain.len() as u64));
    for comp in [
        Compression::Gzip,
        Compression::Zlib,
        Compression::Lzw,
        Compression::Zstd,
    ] {
        let z = compress_to(comp, plain.as_slice(), Vec::new()).unwrap();
        eprintln!(
            "{comp}: {} -> {} bytes (ratio {:.1})",
            plain.len(),
            z.len(),
            plain.len() as f64 / z.len() as f64
        );
        let ours = support::cpu_throughput(plain.len() as u64, 2.0, || {
            let mut sink = Sink(0);
            decompress_to(comp, z.as_slice(), "bench", &mut sink).unwrap();
        });
        summary.push(format!(
            "{comp} decode (ours): {:.0} MB/s per CPU",
            ours / 1e6
        ));
        g.bench_function(format!("{comp} decode (ours)"), |b| {
            b.iter(|| {
                let mut sink = Sink(0);
                decompress_to(comp, black_box(z.as_slice()), "bench", &mut sink).unwrap();
                assert_eq!(sink.0, plain.len() as u64);
            })
        });
        match comp {
            Compression::Gzip => {
                let f = dir.path().join("delta.gz");
                std::fs::write(&f, &z).unwrap();
                assert_eq!(tool_output_len("gzip", &["-dc"], &f), plain.len() as u64);
                let t = support::cpu_throughput(plain.len() as u64, 2.0, || {
                    tool("gzip", &["-dc"], &f);
                });
                summary.push(format!("gzip -d: {:.0} MB/s per CPU", t / 1e6));
                g.bench_function("gzip decode (gzip -d)", |b| {
                    b.iter(|| tool("gzip", &["-dc"], &f))
                });
            }
            Compression::Zstd => {
                let f = dir.path().join("delta.zst");
                std::fs::write(&f, &z).unwrap();
                assert_eq!(tool_output_len("zstd", &["-dcq"], &f), plain.len() as u64);
                let t = support::cpu_throughput(plain.len() as u64, 2.0, || {
                    tool("zstd", &["-dcq"], &f);
                });
                summary.push(format!("zstd -d: {:.0} MB/s per CPU", t / 1e6));
                g.bench_function("zstd decode (zstd -d)", |b| {
                    b.iter(|| tool("zstd", &["-dcq"], &f))
                });
            }
            _ => {}
        }
    }
    g.finish();
    for line in summary {
        eprintln!("{line}");
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
