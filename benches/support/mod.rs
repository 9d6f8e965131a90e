//! Synthetic but realistic delta snapshots for the benches: Kubernetes-like keys, binary
//! values of 100 B to 8 KiB (protobuf objects are binary), 10 % deletes, txns of 1–4 events,
//! encoded exactly as etcd-backup-restore does (Go encoding/json + SHA-256 trailer).

#![allow(dead_code)]

use etcd_restore::snapstore::{EventKind, OwnedEvent, encode_delta};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const TEXT: &[u8] = b"abcdefghijklmnopqrstuvwxyz:{}\" ";

/// A delta object (JSON + SHA-256) of about `target` bytes.
pub fn delta_object(target: usize) -> Vec<u8> {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut events = Vec::new();
    let mut size = 0usize;
    let mut rev = 1_000_000i64;
    while size < target {
        rev += 1;
        let txn = 1 + rng.below(4);
        for _ in 0..txn {
            let key = format!(
                "/registry/{}/ns-{}/obj-{}",
                ["pods", "configmaps", "leases", "events"][rng.below(4) as usize],
                rng.below(200),
                rng.below(5000)
            )
            .into_bytes();
            let delete = rng.below(10) == 0;
            let vlen = if delete {
                0
            } else {
                100 + (rng.below(64) * rng.below(128)) as usize
            };
            let mut value = vec![0u8; vlen];
            for (i, b) in value.iter_mut().enumerate() {
                // Mostly text-like with some binary: compresses like real objects (~4-6x).
                *b = if i % 7 == 0 {
                    rng.below(256) as u8
                } else {
                    TEXT[rng.below(TEXT.len() as u64) as usize]
                };
            }
            size += key.len() * 4 / 3 + vlen * 4 / 3 + 150;
            events.push(OwnedEvent {
                kind: if delete {
                    EventKind::Delete
                } else {
                    EventKind::Put
                },
                key,
                value,
                create_revision: if delete { 0 } else { rev - 10 },
                mod_revision: rev,
                version: if delete { 0 } else { 1 + rng.below(20) as i64 },
                lease: if rng.below(5) == 0 { 7587 } else { 0 },
            });
        }
    }
    let pairs: Vec<(OwnedEvent, &str)> = events
        .into_iter()
        .map(|e| (e, "2024-05-06T07:08:09.123456789Z"))
        .collect();
    encode_delta(&pairs)
}

/// User+system CPU seconds of this process and of its waited-for children, from
/// /proc/self/stat (clock ticks of 10 ms). On a shared machine wall time mostly measures the
/// neighbours; CPU time measures the work.
pub fn cpu_seconds() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<f64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    // After ")": state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14).
    let tick = 100.0;
    let get = |i: usize| f.get(i).copied().unwrap_or(0.0) / tick;
    (get(11) + get(12), get(13) + get(14))
}

/// Runs `op` until it used at least `min_cpu` CPU seconds (own + children) and returns bytes
/// per CPU second.
pub fn cpu_throughput(bytes: u64, min_cpu: f64, mut op: impl FnMut()) -> f64 {
    let (s0, c0) = cpu_seconds();
    let mut n = 0u64;
    loop {
        op();
        n += 1;
        let (s1, c1) = cpu_seconds();
        let used = (s1 - s0) + (c1 - c0);
        if used >= min_cpu && n >= 3 {
            return (bytes * n) as f64 / used;
        }
    }
}
