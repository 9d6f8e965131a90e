//! The memory bound: every job stays within 64 MiB peak RSS on a backup far larger than that.
//!
//! The backup is built here, byte by byte, in etcd-backup-restore's format: a 256 MiB base
//! whose `key` bucket holds Kubernetes-like values (100 B to 1 MiB), bulk-loaded into a bbolt
//! file and uploaded as a gzip `Full-` snapshot with etcd's SHA-256 trailer, and two gzip
//! `Incr-` deltas of 72 MiB of JSON in all (one of 64 MiB). The test keeps its own
//! model of every record it writes, so the HashKV the restored member must report is computed
//! here (etcd's algorithm: CRC-32C over the bucket name and every revision record) rather than
//! by the code under test.
//!
//! Each job runs as a child process; its peak RSS is the kernel's (`wait4` rusage, the same
//! figure `/usr/bin/time -v` prints: anonymous memory plus touched pages of mapped files). A
//! child's figure is at least its parent's peak at the time of the spawn, and this test shares
//! its process with every other integration test, so each job is spawned by a small python3
//! process ([`SPAWNER`]) whose own peak is printed and checked to be far below the bound: a
//! pass is the job's own figure, never a masked one.
//! Then a real etcd 3.5.1 starts on the restored directory and must report the expected
//! revision, HashKV, key count and values.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::Path;
use std::process::Command;

use bbolt::bulk::{BulkLoader, BulkOptions};
use sha2::{Digest, Sha256};
use testkit::mvcc::{kv_proto, rev_key};
use testkit::{EtcdBins, EtcdConfig, EtcdProcess, Rng};

const BIN: &str = env!("CARGO_BIN_EXE_etcd-restore");
/// Debian's python3 (scripts/install-test-deps), the spawner of every measured job.
const PYTHON: &str = "/usr/bin/python3";
const LIMIT_BYTES: u64 = 64 << 20;
const BASE_BYTES: usize = 256 << 20;
const TIME: &str = "2024-05-06T07:08:09.123456789Z";

/// A Kubernetes-like value size: mostly small objects, some KiB-sized configmaps and secrets,
/// a few objects near etcd's 1.5 MiB request limit.
fn value_len(rng: &mut Rng) -> usize {
    match rng.below(1000) {
        0..=549 => 100 + rng.below(1900) as usize,
        550..=899 => 2_000 + rng.below(18_000) as usize,
        900..=989 => 20_000 + rng.below(80_000) as usize,
        _ => (512 << 10) + rng.below(512 << 10) as usize,
    }
}

/// Text-like bytes with some binary: compresses about like protobuf-encoded objects.
fn value(seed: u64, len: usize) -> Vec<u8> {
    const TEXT: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789:{}\" ,.-_/";
    let mut rng = Rng::new(seed);
    (0..len)
        .map(|i| {
            let r = rng.next_u64();
            if i % 9 == 0 {
                r as u8
            } else {
                TEXT[(r % TEXT.len() as u64) as usize]
            }
        })
        .collect()
}

#[derive(Clone, Copy)]
struct Live {
    create: i64,
    modr: i64,
    version: i64,
    seed: u64,
    len: usize,
}

/// What the test wrote: the live keys and etcd's HashKV over every record so far.
struct Model {
    live: std::collections::BTreeMap<Vec<u8>, Live>,
    keys: Vec<Vec<u8>>,
    hash: u32,
    rev: i64,
}

impl Model {
    fn record(&mut self, k: &[u8], v: &[u8]) {
        self.hash = crc32c::crc32c_append(self.hash, k);
        self.hash = crc32c::crc32c_append(self.hash, v);
    }
}

/// `gzip(bytes ++ sha256(bytes))` of a file, as etcd-backup-restore uploads a snapshot.
fn gzip_with_trailer(src: &Path, dst: &Path) {
    let mut input = File::open(src).unwrap();
    let out = BufWriter::new(File::create(dst).unwrap());
    let mut gz = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = input.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        gz.write_all(&buf[..n]).unwrap();
    }
    gz.write_all(&h.finalize()).unwrap();
    gz.finish().unwrap().flush().unwrap();
}

/// A bucket other than `key`: its name and its few entries.
type SmallBucket<'a> = (&'a [u8], Vec<(&'a [u8], Vec<u8>)>);

/// The base: etcd's buckets with `BASE_BYTES` of values, one PUT per revision from 2.
fn write_base(dir: &Path, store: &Path, rng: &mut Rng) -> Model {
    let mut m = Model {
        live: Default::default(),
        keys: Vec::new(),
        hash: crc32c::crc32c(b"key"),
        rev: 1,
    };
    let db = dir.join("base.db");
    let mut l = BulkLoader::create(&db, BulkOptions::default()).unwrap();
    let member = br#"{"id":10276657743932975437,"peerURLs":["http://localhost:2380"],"name":"default","clientURLs":["http://localhost:2379"]}"#;
    let small: [SmallBucket; 5] = [
        (b"alarm", vec![]),
        (b"auth", vec![]),
        (b"authRoles", vec![]),
        (b"authUsers", vec![]),
        (b"cluster", vec![(b"clusterVersion", b"3.5.0".to_vec())]),
    ];
    for (name, kvs) in small {
        l.begin_bucket(name).unwrap();
        for (k, v) in kvs {
            l.put(k, &v).unwrap();
        }
        l.end_bucket().unwrap();
    }
    l.begin_bucket(b"key").unwrap();
    let kinds = ["pods", "configmaps", "secrets", "leases", "deployments"];
    let mut bytes = 0usize;
    while bytes < BASE_BYTES {
        m.rev += 1;
        let i = m.keys.len();
        let key = format!(
            "/registry/{}/ns-{}/obj-{i:06}",
            kinds[i % kinds.len()],
            i % 37
        )
        .into_bytes();
        let len = value_len(rng);
        let seed = rng.next_u64();
        let (k, v) = (
            rev_key(m.rev, 0, false),
            kv_proto(&key, m.rev, m.rev, 1, &value(seed, len)),
        );
        l.put(&k, &v).unwrap();
        m.record(&k, &v);
        m.live.insert(
            key.clone(),
            Live {
                create: m.rev,
                modr: m.rev,
                version: 1,
                seed,
                len,
            },
        );
        m.keys.push(key);
        bytes += len;
    }
    l.end_bucket().unwrap();
    let rest: [SmallBucket; 4] = [
        (b"lease", vec![]),
        (b"members", vec![(b"8e9e05c52164694d", member.to_vec())]),
        (b"members_removed", vec![]),
        (
            b"meta",
            vec![
                (b"consistent_index", 1u64.to_be_bytes().to_vec()),
                (b"term", 1u64.to_be_bytes().to_vec()),
            ],
        ),
    ];
    for (name, kvs) in rest {
        l.begin_bucket(name).unwrap();
        for (k, v) in kvs {
            l.put(k, &v).unwrap();
        }
        l.end_bucket().unwrap();
    }
    l.finish().unwrap();
    gzip_with_trailer(
        &db,
        &store.join(format!("v2/Full-00000000-{:08}-1714000000.gz", m.rev)),
    );
    std::fs::remove_file(&db).unwrap();
    m
}

/// Streams a delta object: gzip of the JSON array of events and its SHA-256, in
/// etcd-backup-restore's encoding (Go encoding/json of the event wrapper, omitempty fields).
struct DeltaWriter {
    gz: flate2::write::GzEncoder<BufWriter<File>>,
    sha: Sha256,
    first: bool,
}

impl DeltaWriter {
    fn create(path: &Path) -> DeltaWriter {
        let out = BufWriter::new(File::create(path).unwrap());
        let mut w = DeltaWriter {
            gz: flate2::write::GzEncoder::new(out, flate2::Compression::fast()),
            sha: Sha256::new(),
            first: true,
        };
        w.text(b"[");
        w
    }

    fn text(&mut self, b: &[u8]) {
        self.sha.update(b);
        self.gz.write_all(b).unwrap();
    }

    fn event(
        &mut self,
        delete: bool,
        key: &[u8],
        create: i64,
        modr: i64,
        version: i64,
        value: &[u8],
    ) {
        use base64::Engine as _;
        let b64 = &base64::engine::general_purpose::STANDARD;
        let mut s = String::with_capacity(200 + (key.len() + value.len()) * 4 / 3);
        if !self.first {
            s.push(',');
        }
        self.first = false;
        s.push_str(r#"{"etcdEvent":{"#);
        if delete {
            s.push_str(r#""type":1,"#);
        }
        s.push_str(r#""kv":{"key":""#);
        s.push_str(&b64.encode(key));
        s.push('"');
        for (name, v) in [
            ("create_revision", create),
            ("mod_revision", modr),
            ("version", version),
        ] {
            if v != 0 {
                s.push_str(&format!(r#","{name}":{v}"#));
            }
        }
        if !value.is_empty() {
            s.push_str(r#","value":""#);
            s.push_str(&b64.encode(value));
            s.push('"');
        }
        s.push_str(&format!(r#"}}}},"time":"{TIME}"}}"#));
        self.text(s.as_bytes());
    }

    fn finish(mut self) {
        self.text(b"]");
        let digest = self.sha.finalize();
        self.gz.write_all(&digest).unwrap();
        self.gz.finish().unwrap().flush().unwrap();
    }
}

/// One delta of about `json_bytes` of JSON: updates of base keys, new keys, deletes, and
/// transactions of several events in one revision. Streamed, so this process stays small and
/// its own peak RSS (which a child inherits as its `ru_maxrss` floor) stays far below the bound.
fn write_delta(store: &Path, m: &mut Model, rng: &mut Rng, json_bytes: usize, created: u64) {
    let start = m.rev + 1;
    let tmp = store.join(format!("v2/.delta-{created}.tmp"));
    let mut w = DeltaWriter::create(&tmp);
    let mut size = 0usize;
    while size < json_bytes {
        m.rev += 1;
        let txn = if rng.below(10) == 0 { 3 } else { 1 };
        let mut in_txn: Vec<Vec<u8>> = Vec::new();
        for sub in 0..txn {
            let r = rng.below(100);
            let pick = m.keys[rng.below(m.keys.len() as u64) as usize].clone();
            let key = if r < 60 && !in_txn.contains(&pick) {
                pick
            } else {
                let k = format!(
                    "/registry/events/ns-{}/ev-{:07}",
                    rng.below(37),
                    m.keys.len()
                )
                .into_bytes();
                m.keys.push(k.clone());
                k
            };
            in_txn.push(key.clone());
            let prev = m.live.get(&key).copied();
            if r < 12 && prev.is_some() {
                m.live.remove(&key);
                let (k, v) = (rev_key(m.rev, sub, true), kv_proto(&key, 0, 0, 0, b""));
                m.record(&k, &v);
                w.event(true, &key, 0, m.rev, 0, b"");
                size += 150;
                continue;
            }
            // Events are mostly small status updates; some carry large objects.
            let len = if rng.below(4) == 0 {
                value_len(rng)
            } else {
                100 + rng.below(2000) as usize
            };
            let seed = rng.next_u64();
            let val = value(seed, len);
            let (create, version) = match prev {
                Some(p) => (p.create, p.version + 1),
                None => (m.rev, 1),
            };
            let (k, v) = (
                rev_key(m.rev, sub, false),
                kv_proto(&key, create, m.rev, version, &val),
            );
            m.record(&k, &v);
            m.live.insert(
                key.clone(),
                Live {
                    create,
                    modr: m.rev,
                    version,
                    seed,
                    len,
                },
            );
            w.event(false, &key, create, m.rev, version, &val);
            size += 150 + (key.len() + len) * 4 / 3;
        }
    }
    w.finish();
    std::fs::rename(
        &tmp,
        store.join(format!("v2/Incr-{start:08}-{:08}-{created}.gz", m.rev)),
    )
    .unwrap();
}

/// Spawns the job (argv[1:]) with its stdout on /dev/null, reaps it with `wait4`, and prints
/// its exit code, its peak RSS and the spawner's own peak (KiB). The job is spawned from this
/// small process, not from the test binary, because a spawned child's `ru_maxrss` starts at
/// its parent's peak (glibc's `posix_spawn` shares the parent's memory until the exec, and the
/// kernel carries that memory's high-water mark into the child's figure): the test binary runs
/// every other test in the same process, so its own peak says nothing about the job.
const SPAWNER: &str = r#"
import os, sys
pid = os.posix_spawn(sys.argv[1], sys.argv[1:], os.environ,
                     file_actions=[(os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0)])
_, status, usage = os.wait4(pid, 0)
# The high-water mark of this process's memory (not its ru_maxrss, which starts at its own
# parent's peak for the same reason).
own = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss, own)
"#;

/// Runs `bin args` through [`SPAWNER`] and returns the job's peak RSS in bytes, as the kernel
/// accounted it, and the spawner's own peak (the least any job can report).
fn peak_rss(what: &str, bin: &str, args: &[&std::ffi::OsStr]) -> (u64, u64) {
    let out = Command::new(PYTHON)
        .arg("-c")
        .arg(SPAWNER)
        .arg(bin)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {PYTHON}: {e}"));
    let err = String::from_utf8_lossy(&out.stderr);
    let line = String::from_utf8_lossy(&out.stdout);
    let fields: Vec<i64> = line
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(i64::MIN))
        .collect();
    let [code, job_kib, own_kib] = fields[..] else {
        panic!("{what}: the spawner said {line:?} ({})\n{err}", out.status);
    };
    assert!(
        out.status.success() && code == 0,
        "{what}: exit code {code} (spawner: {})\n{err}",
        out.status
    );
    // Linux reports ru_maxrss in KiB.
    let (rss, floor) = (job_kib as u64 * 1024, own_kib as u64 * 1024);
    eprintln!("{what}: peak RSS {:.1} MiB", rss as f64 / (1 << 20) as f64);
    (rss, floor)
}

#[test]
fn every_job_stays_within_64_mib_and_etcd_serves_the_restore() {
    let Some(bins) = EtcdBins::get("3.5.1") else {
        return;
    };
    let t0 = std::time::Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    std::fs::create_dir_all(store.join("v2")).unwrap();
    let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15);
    let mut m = write_base(tmp.path(), &store, &mut rng);
    let base_rev = m.rev;
    write_delta(&store, &mut m, &mut rng, 8 << 20, 1714000100);
    // One delta alone as large as the memory limit: etcdbrctl's delta memory limit is
    // 100 MiB by default, so a delta of 64 MiB of JSON is an ordinary one.
    write_delta(&store, &mut m, &mut rng, 64 << 20, 1714000200);
    eprintln!(
        "backup of {} keys, revisions {base_rev} + {} built in {:.1}s",
        m.live.len(),
        m.rev - base_rev,
        t0.elapsed().as_secs_f64()
    );

    let dir = tmp.path().join("restored.etcd");
    let mut jobs: Vec<(String, u64)> = Vec::new();
    // Another build can be measured the same way (e.g. an older release, to see the test fail).
    let bin = std::env::var("ETCD_RESTORE_MEMORY_TEST_BIN").unwrap_or_else(|_| BIN.to_string());
    let mut floor = 0;
    let mut run = |what: &str, args: &[&std::ffi::OsStr]| {
        let (rss, spawner) = peak_rss(what, &bin, args);
        floor = floor.max(spawner);
        jobs.push((what.to_string(), rss));
    };
    let os = |s: &'static str| std::ffi::OsStr::new(s);
    run(
        "restore",
        &[
            os("restore"),
            os("--store"),
            store.as_os_str(),
            os("--data-dir"),
            dir.as_os_str(),
        ],
    );
    run("hashkv", &[os("hashkv"), os("--data-dir"), dir.as_os_str()]);
    run(
        "validate --mode full",
        &[
            os("validate"),
            os("--mode"),
            os("full"),
            os("--data-dir"),
            dir.as_os_str(),
        ],
    );
    let db = dir.join("member/snap/db");
    run("db check", &[os("db"), os("check"), db.as_os_str()]);
    for mode in ["sanity", "auto"] {
        run(
            &format!("validate --mode {mode}"),
            &[
                os("validate"),
                os("--mode"),
                os(mode),
                os("--data-dir"),
                dir.as_os_str(),
            ],
        );
    }
    // One backup into a three-member cluster: replayed once, copied to the other members.
    let template = tmp.path().join("members/{name}.etcd");
    let cluster = "m1=http://127.0.0.1:2380,m2=http://127.0.0.1:2381,m3=http://127.0.0.1:2382";
    run(
        "restore --data-dir-template (3 members)",
        &[
            os("restore"),
            os("--store"),
            store.as_os_str(),
            os("--data-dir-template"),
            template.as_os_str(),
            os("--name"),
            os("m1"),
            os("--initial-cluster"),
            os(cluster),
            os("--initial-advertise-peer-urls"),
            os("http://127.0.0.1:2380"),
        ],
    );
    // Two stores restored at once: each member gets half of the memory budget.
    let second = tmp.path().join("store2");
    testkit::tree::copy_dir(&store, &second).unwrap();
    let batch = tmp.path().join("batch.yaml");
    std::fs::write(
        &batch,
        format!(
            "defaults:\n  store: {}\nmembers:\n  - alias: a\n    prefix: store\n    dataDir: {}\n  - alias: b\n    prefix: store2\n    dataDir: {}\n",
            tmp.path().display(),
            tmp.path().join("batch-a.etcd").display(),
            tmp.path().join("batch-b.etcd").display()
        ),
    )
    .unwrap();
    run(
        "restore --batch --parallel 2",
        &[
            os("restore"),
            os("--batch"),
            batch.as_os_str(),
            os("--parallel"),
            os("2"),
        ],
    );
    std::fs::remove_dir_all(&second).unwrap();
    run(
        "compact",
        &[os("compact"), os("--store"), store.as_os_str()],
    );
    // A job's figure is at least its spawner's peak, so that must be far below the bound for a
    // pass to be the job's own.
    eprintln!(
        "spawner's own peak RSS (the least a job can report): {:.1} MiB",
        floor as f64 / (1 << 20) as f64
    );
    assert!(
        floor < LIMIT_BYTES / 4,
        "the spawner itself peaked at {floor} bytes"
    );
    for (what, rss) in &jobs {
        assert!(
            *rss <= LIMIT_BYTES,
            "{what}: peak RSS {rss} bytes is over the {LIMIT_BYTES}-byte bound"
        );
    }
    let full = std::fs::read_dir(store.join("v2"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("Full-00000000-{:08}-", m.rev))
        })
        .count();
    assert_eq!(
        full, 1,
        "compact uploaded one full snapshot at revision {}",
        m.rev
    );

    let p = EtcdProcess::start(&bins, EtcdConfig::new(&dir)).expect("etcd starts on the restore");
    let h = p.hashkv(Some(m.rev)).unwrap();
    assert_eq!(
        h.hash, m.hash,
        "etcd's HashKV of the restored member vs the model's"
    );
    assert_eq!(p.status().unwrap().revision, m.rev, "etcd's revision");
    let count = p
        .etcdctl_json(&["get", "", "--prefix", "--keys-only"])
        .unwrap()["count"]
        .as_i64()
        .unwrap_or(0);
    assert_eq!(count, m.live.len() as i64, "live keys");
    // A few keys in full: values, revisions and versions.
    for key in m.keys.iter().step_by(m.keys.len() / 7 + 1) {
        let got = p.get(std::str::from_utf8(key).unwrap(), None).unwrap();
        match (m.live.get(key), got) {
            (None, None) => {}
            (Some(want), Some(kv)) => {
                assert_eq!(kv.value, value(want.seed, want.len), "{key:?}");
                assert_eq!(
                    (kv.create_revision, kv.mod_revision, kv.version),
                    (want.create, want.modr, want.version),
                    "{key:?}"
                );
            }
            (want, got) => panic!(
                "{key:?}: want live {}, etcd has {}",
                want.is_some(),
                got.is_some()
            ),
        }
    }
    eprintln!("done in {:.1}s", t0.elapsed().as_secs_f64());
}
