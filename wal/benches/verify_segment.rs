//! Verifying one full 64,000,000-byte WAL segment (generated here): in memory (frames,
//! CRC chain, torn-write rules) and end to end from a file (`verify_wal_dir`: read,
//! decode, payload checks). Run: `cargo bench -p wal --bench verify_segment`.
//!
//! On a shared machine criterion's wall-clock numbers include time spent waiting for a
//! CPU; each case therefore also prints a throughput over process CPU time
//! (`CLOCK_PROCESS_CPUTIME_ID`), the figure for an otherwise idle core.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prost::Message;
use wal::decoder::{DecodedRecord, Visitor, decode_buffers};
use wal::proto::{Entry, HardState, Metadata};
use wal::record::RecordType;
use wal::{Damage, Encoder, OsFs, SEGMENT_SIZE_BYTES, SegmentId};

/// A first segment filled like etcd fills it: entries of `entry_len` bytes, each
/// followed by a HardState, until the segment size is reached.
fn segment(entry_len: usize) -> Vec<u8> {
    let mut enc = Encoder::new(0);
    enc.append(RecordType::Crc, None);
    let md = Metadata {
        node_id: 1,
        cluster_id: 2,
    }
    .encode_to_vec();
    enc.append(RecordType::Metadata, Some(&md));
    let mut i = 0u64;
    while (enc.bytes().len() as u64) < SEGMENT_SIZE_BYTES {
        i += 1;
        let data: Vec<u8> = (0..entry_len).map(|j| (j as u64 ^ i) as u8).collect();
        enc.append_entry(&Entry {
            r#type: 0,
            term: 2,
            index: i,
            data: Some(data),
        });
        enc.append_state(&HardState {
            term: 2,
            vote: 1,
            commit: i,
        });
    }
    enc.take()
}

struct Count(u64);

impl Visitor for Count {
    fn record(&mut self, _r: &DecodedRecord<'_>) -> Result<(), Damage> {
        self.0 += 1;
        Ok(())
    }
}

fn cpu_seconds() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

/// Runs `f` `n` times and prints bytes per CPU second.
fn cpu_throughput(label: &str, bytes: usize, n: u32, mut f: impl FnMut()) {
    f();
    let start = cpu_seconds();
    for _ in 0..n {
        f();
    }
    let secs = cpu_seconds() - start;
    println!(
        "{label}: {:.2} GB/s over CPU time ({n} runs, {:.1} ms CPU each)",
        bytes as f64 * f64::from(n) / secs / 1e9,
        secs * 1e3 / f64::from(n)
    );
}

fn bench(c: &mut Criterion) {
    let id = SegmentId { seq: 0, index: 0 };
    for entry_len in [1024usize, 100 * 1024] {
        let seg = segment(entry_len);
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("wal");
        std::fs::create_dir(&dir).expect("mkdir");
        std::fs::write(dir.join(id.file_name()), &seg).expect("write segment");

        let label = format!("verify_64MB_segment/entries_{entry_len}B");
        cpu_throughput(&format!("{label}/decode_in_memory"), seg.len(), 20, || {
            let mut v = Count(0);
            black_box(decode_buffers(&[(id, &seg)], &mut v).expect("decode"));
        });
        cpu_throughput(
            &format!("{label}/verify_wal_dir_from_file"),
            seg.len(),
            10,
            || {
                black_box(wal::verify_wal_dir(&OsFs, &dir, None).expect("verify"));
            },
        );

        let mut g = c.benchmark_group(format!("verify_64MB_segment/entries_{entry_len}B"));
        g.throughput(Throughput::Bytes(seg.len() as u64));
        g.sample_size(10);
        g.bench_function("decode_in_memory", |b| {
            b.iter(|| {
                let mut v = Count(0);
                let end = decode_buffers(&[(id, black_box(&seg))], &mut v).expect("decode");
                black_box((end, v.0))
            })
        });
        g.bench_function("verify_wal_dir_from_file", |b| {
            b.iter(|| {
                let r = wal::verify_wal_dir(&OsFs, &dir, None).expect("verify");
                assert!(r.is_ok());
                black_box(r)
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
