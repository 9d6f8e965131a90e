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
    // CPU-time throughput (robust on a loaded machine), printed next to criterion's numbers.
    let n = json.len() as u64;
    let serde = support::cpu_throughput(n, 2.0, || {
        let v: Vec<Wrapper<'_>> = serde_json::from_slice(json).unwrap();
        black_box(v.len());
    });
    let ignored = support::cpu_throughput(n, 2.0, || {
        let v: serde::de::IgnoredAny = serde_json::from_slice(json).unwrap();
        black_box(v);
    });
    let ours_json = support::cpu_throughput(n, 2.0, || {
        decode_delta_json(json, "bench", &mut |e: &etcd_restore::snapstore::Event<
            '_,
        >| {
            black_box(e.value.len());
            Ok::<(), Infallible>(())
        })
        .unwrap();
    });
    let ours_full = support::cpu_throughput(n, 2.0, || {
        decode_delta(&object, "bench", |e| {
            black_box(e.value.len());
            Ok::<(), Infallible>(())
        })
        .unwrap();
    });
    eprintln!(
        "per CPU second: serde_json borrowed structs {:.2} GB/s, IgnoredAny {:.2} GB/s; ours parse+base64 {:.2} GB/s ({:.0} % of borrowed structs), ours hash+parse+base64 {:.2} GB/s",
        serde / 1e9,
        ignored / 1e9,
        ours_json / 1e9,
        100.0 * ours_json / serde,
        ours_full / 1e9
    );
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
