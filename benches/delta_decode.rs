//! Delta decode throughput (GB/s of JSON) next to plain serde_json parses of the same bytes.
//!
//! `cargo bench --bench delta_decode`. Baselines:
//! * `serde_json borrowed structs`: `from_slice` into a `Vec` of borrowed event structs, the
//!   plain way to parse the file (no base64 decoding, no hash);
//! * `serde_json IgnoredAny`: the parser alone.
//!
//! Ours: `decode_delta` (SHA-256 check + parse + base64 decode of keys and values) and
//! `decode_delta_json` (without the hash check).

mod support;

use std::convert::Infallible;
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use etcd_restore::snapstore::{decode_delta, decode_delta_json};
use serde::Deserialize;

#[derive(Deserialize)]
#[allow(dead_code)]
struct Kv<'a> {
    #[serde(borrow, default)]
    key: &'a str,
    #[serde(default)]
    create_revision: i64,
    #[serde(default)]
    mod_revision: i64,
    #[serde(default)]
    version: i64,
    #[serde(borrow, default)]
    value: &'a str,
    #[serde(default)]
    lease: i64,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct EtcdEvent<'a> {
    #[serde(default, rename = "type")]
    kind: i32,
    #[serde(borrow)]
    kv: Kv<'a>,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct Wrapper<'a> {
    #[serde(borrow, rename = "etcdEvent")]
    etcd_event: EtcdEvent<'a>,
    #[serde(borrow)]
    time: &'a str,
}

fn bench(c: &mut Criterion) {
    let object = support::delta_object(32 << 20);
    let json = &object[..object.len() - 32];
    let mut g = c.benchmark_group("delta_decode");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(json.len() as u64));
    g.bench_function("serde_json borrowed structs", |b| {
        b.iter(|| {
            let v: Vec<Wrapper<'_>> = serde_json::from_slice(black_box(json)).unwrap();
            black_box(v.len())
        })
    });
    g.bench_function("serde_json IgnoredAny", |b| {
        b.iter(|| {
            let v: serde::de::IgnoredAny = serde_json::from_slice(black_box(json)).unwrap();
            black_box(v)
        })
    });
    g.bench_function("decode_delta (hash + parse + base64)", |b| {
        b.iter(|| {
            let mut bytes = 0usize;
            let stats = decode_delta(black_box(&object), "bench", |e| {
                bytes += e.key.len() + e.value.len();
                Ok::<(), Infallible>(())
            })
            .unwrap();
            black_box((stats, bytes))
        })
    });
    g.bench_function("decode_delta_json (parse + base64)", |b| {
        b.iter(|| {
            let mut bytes = 0usize;
            let stats = decode_delta_json(
                black_box(json),
                "bench",
                &mut |e: &etcd_restore::snapstore::Event<'_>| {
                    bytes += e.key.len() + e.value.len();
                    Ok::<(), Infallible>(())
                },
            )
            .unwrap();
            black_box((stats, bytes))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
