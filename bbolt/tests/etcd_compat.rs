//! Databases written by real etcd (3.5.1 and 3.4.23): every one opens, our dump equals the Go
//! oracle's byte for byte, both checkers accept it, our stats equal `etcdutl snapshot status`
//! and Go's free-page count, and appending revisions to it the way a restore does keeps it
//! valid for Go. The databases are the full snapshots committed under `testdata/` (compressed
//! `Full-*` objects) and fresh ones generated with the installed etcd binaries.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use bbolt::{Db, FreeSpace, OpenOptions};
use testkit::etcd::{EtcdBins, EtcdConfig, EtcdProcess};
use testkit::kv::{hex, sha256};
use testkit::{Fixture, GoOracle};

/// Runs `etcdctl txn` with `ops` (one `put`/`del` line each) as the success branch.
fn txn(p: &EtcdProcess, ops: &[String]) {
    let mut child = Command::new(&p.bins().etcdctl)
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", p.endpoint()))
        .arg("txn")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("etcdctl runs");
    {
        let mut stdin = child.stdin.take().unwrap();
        let mut text = String::from("\n");
        for o in ops {
            text.push_str(o);
            text.push('\n');
        }
        text.push_str("\n\n");
        stdin.write_all(text.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "etcdctl txn: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Generates databases with etcd `version`: a snapshot (`etcdctl snapshot save`) and the
/// member's live db file after a clean stop; and the last revision written.
fn etcd_dbs(version: &str, dir: &Path) -> Option<(Vec<PathBuf>, i64)> {
    let bins = EtcdBins::get(version)?;
    let data = dir.join(format!("etcd-{version}"));
    let mut p = EtcdProcess::start(&bins, EtcdConfig::new(&data)).expect("etcd starts");
    // ~3000 keys in txns of 100, values from empty to several pages, deletes, overwrites.
    for batch in 0..30 {
        let ops: Vec<String> = (0..100)
            .map(|i| {
                let n = batch * 100 + i;
                let len = match n % 50 {
                    0 => 9000,
                    1 => 2500,
                    _ => n % 400,
                };
                format!("put /registry/k{n:05} {}x", "v".repeat(len))
            })
            .collect();
        txn(&p, &ops);
    }
    for batch in 0..10 {
        let ops: Vec<String> = (0..100)
            .map(|i| format!("del /registry/k{:05}", batch * 300 + i * 3))
            .collect();
        txn(&p, &ops);
    }
    txn(
        &p,
        &(0..50)
            .map(|i| format!("put /registry/k{:05} again", i * 7))
            .collect::<Vec<_>>(),
    );
    let rev = p.put("/last", "1").unwrap();
    p.etcdctl(&["compaction", &(rev / 2).to_string()]).unwrap();
    p.etcdctl(&["lease", "grant", "600"]).unwrap();
    let snap = dir.join(format!("snap-{version}.db"));
    p.etcdctl(&["snapshot", "save", snap.to_str().unwrap()])
        .unwrap();
    p.stop().unwrap();
    let live = dir.join(format!("live-{version}.db"));
    std::fs::copy(data.join("member/snap/db"), &live).unwrap();
    Some((vec![snap, live], rev))
}

fn our_dump(path: &Path) -> Vec<u8> {
    let db = Db::open(path, OpenOptions::read_only())
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    common::dump_of(&db)
}

fn assert_same_as_go(path: &Path) -> Vec<u8> {
    let ours = our_dump(path);
    assert!(!ours.is_empty());
    common::our_check_clean(path);
    common::go_agrees(path, &ours);
    ours
}

/// The newest main revision in the `key` bucket of a dump (0 when it has none).
fn newest_revision(dump: &[u8]) -> i64 {
    use testkit::base64::Engine;
    let mut newest = 0;
    for line in dump.split(|&c| c == b'\n').filter(|l| !l.is_empty()) {
        let v: testkit::serde_json::Value =
            testkit::serde_json::from_slice(line).expect("dump line");
        if v["path"] == testkit::serde_json::json!(["a2V5"]) {
            let k = testkit::base64::engine::general_purpose::STANDARD
                .decode(v["key"].as_str().expect("key"))
                .expect("base64 key");
            newest = newest.max(i64::from_be_bytes(k[..8].try_into().expect("revision key")));
        }
    }
    newest
}

/// Our stats of `path` equal what `snapshot status` of `bins` reports (keys, size) and what
/// Go's bbolt counts (keys, size, and the free pages of the freelist it rebuilds on open).
fn assert_stats_like_etcd_and_go(path: &Path, bins: &EtcdBins) {
    let db = Db::open(path, OpenOptions::read_only()).unwrap();
    let ours = bbolt::stats::stats(&db.begin_read()).unwrap();
    let what = format!("{} (etcd {})", path.display(), bins.version);
    let status = bins
        .snapshot_status(path)
        .unwrap_or_else(|e| panic!("{what}: snapshot status: {e}"));
    assert_eq!(
        (ours.keys, ours.size()),
        (status.total_key as u64, status.total_size as u64),
        "{what}: our (keys, size) vs snapshot status"
    );
    assert!(ours.keys > 0, "{what}: no keys");
    if let Some(go) = GoOracle::get() {
        let g = go.stats(path).expect("bboltoracle stats");
        assert_eq!(g.check_errors, 0, "{what}");
        assert_eq!(
            (ours.keys, ours.size(), ours.free_pages),
            (g.keys, g.size, g.free_pages),
            "{what}: our (keys, size, free pages) vs Go's"
        );
    }
}

/// The committed fixtures' full snapshots (every compression, both versions): the body the
/// generator recorded (its SHA-256 in oracle.json and in the trailer), minus the trailer, is a
/// bbolt file that dumps like Go's, passes both checkers, holds revisions up to the db
/// revision the oracle recorded, and has etcdutl's stats.
#[test]
fn fixture_full_snapshots_dump_like_go() {
    let Some(go) = GoOracle::get() else { return };
    let bins = EtcdBins::get("3.5.1");
    let tmp = tempfile::tempdir().unwrap();
    let (mut listed, mut checked) = (0, 0);
    for fx in Fixture::all().expect("fixtures") {
        listed += fx.oracle.objects.iter().filter(|o| o.is_full()).count();
        for o in fx.oracle.objects.iter().filter(|o| o.is_full()) {
            let what = format!("{}/{}: {}", fx.version, fx.scenario, o.path);
            let body = fx
                .object_body(&go, o)
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            assert!(body.len() > 32, "{what}: {} bytes", body.len());
            let (db, trailer) = body.split_at(body.len() - 32);
            assert_eq!(sha256(db), trailer, "{what}: SHA-256 trailer");
            assert_eq!(
                hex(&sha256(db)),
                o.body_sha256,
                "{what}: oracle body_sha256"
            );
            let path = tmp.path().join(format!("fixture-{checked}.db"));
            std::fs::write(&path, db).unwrap();
            let dump = assert_same_as_go(&path);
            assert_eq!(
                Some(newest_revision(&dump)),
                o.db_revision,
                "{what}: newest revision in the key bucket"
            );
            if let Some(bins) = &bins {
                assert_stats_like_etcd_and_go(&path, bins);
            }
            checked += 1;
        }
    }
    // Every full snapshot the oracles list, and at least the 23 committed with this test
    // (basic 4 + v1 3 + four one-full scenarios, for each version, and the sample).
    assert_eq!(checked, listed, "full snapshots checked");
    assert!(checked >= 23, "only {checked} full snapshots found");
}

/// Appends revisions to an etcd database the way restore does (append-only, bounded
/// batches, NOFREELIST), then Go must accept it and read what we wrote.
fn append_like_restore(src: &Path, dir: &Path) {
    let path = dir.join("appended.db");
    std::fs::copy(src, &path).unwrap();
    let before = common::read_db(&Db::open(&path, OpenOptions::read_only()).unwrap());
    let db = Db::open(
        &path,
        OpenOptions {
            free_space: FreeSpace::AppendOnly,
            ..Default::default()
        },
    )
    .unwrap();
    let last = {
        let tx = db.begin_read();
        let b = tx.bucket(b"key").unwrap().expect("etcd has a key bucket");
        let e = b.cursor().last().unwrap().expect("key bucket is not empty");
        u64::from_be_bytes(e.key[..8].try_into().unwrap())
    };
    let mut expected = before.clone();
    for batch in 0..5u64 {
        let mut tx = db.begin_write().unwrap();
        let mut b = tx.bucket_mut(b"key").unwrap().unwrap();
        b.set_fill_percent(0.9);
        for i in 0..1000u64 {
            let rev = last + 1 + batch * 1000 + i;
            let mut k = rev.to_be_bytes().to_vec();
            k.push(b'_');
            k.extend_from_slice(&0u64.to_be_bytes());
            let v = vec![b'q'; (i % 300) as usize];
            b.put(&k, &v).unwrap();
            expected.subs.get_mut(&b"key"[..]).unwrap().kv.insert(k, v);
        }
        let mut m = tx.bucket_mut(b"meta").unwrap().unwrap();
        let ci = (batch + 7).to_be_bytes();
        m.put(b"consistent_index", &ci).unwrap();
        expected
            .subs
            .get_mut(&b"meta"[..])
            .unwrap()
            .kv
            .insert(b"consistent_index".to_vec(), ci.to_vec());
        tx.commit().unwrap();
    }
    assert_eq!(db.meta().freelist, bbolt::meta::NO_FREELIST);
    let got = common::read_db(&db);
    assert!(
        got == expected,
        "appended contents differ from the expectation"
    );
    drop(db);
    common::our_check_clean(&path);
    common::go_agrees(&path, &expected.dump());
}

fn version_test(version: &str) {
    let dir = tempfile::tempdir().unwrap();
    let Some((files, rev)) = etcd_dbs(version, dir.path()) else {
        return;
    };
    let bins = EtcdBins::get(version).expect("etcd_dbs had the binaries");
    for f in &files {
        let dump = assert_same_as_go(f);
        assert_eq!(
            newest_revision(&dump),
            rev,
            "{}: newest revision",
            f.display()
        );
        assert_stats_like_etcd_and_go(f, &bins);
        let tx_meta = Db::open(f, OpenOptions::read_only()).unwrap().meta();
        // etcd on Linux never syncs a freelist.
        assert_eq!(
            tx_meta.freelist,
            bbolt::meta::NO_FREELIST,
            "{}",
            f.display()
        );
    }
    append_like_restore(&files[1], dir.path());
}

#[test]
fn etcd_3_5_1_dbs() {
    version_test("3.5.1");
}

#[test]
fn etcd_3_4_23_dbs() {
    version_test("3.4.23");
}
