//! Databases written by real etcd (3.5.1 and 3.4.23): every one opens, our dump equals the Go
//! oracle's byte for byte, both checkers accept it, and appending revisions to it the way a
//! restore does keeps it valid for Go. Uses `testdata/**/*.db` fixtures when present and
//! always generates fresh databases with the installed etcd binaries.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use bbolt::{Db, FreeSpace, OpenOptions};
use testkit::etcd::{EtcdBins, EtcdConfig, EtcdProcess};

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
/// member's live db file after a clean stop.
fn etcd_dbs(version: &str, dir: &Path) -> Option<Vec<PathBuf>> {
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
    Some(vec![snap, live])
}

fn fixture_dbs() -> Vec<PathBuf> {
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "db")
                || p.file_name().is_some_and(|n| n == "db")
            {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&testkit::deps::testdata_dir(), &mut out);
    out.sort();
    out
}

fn our_dump(path: &Path) -> Vec<u8> {
    let db = Db::open(path, OpenOptions::read_only())
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    common::dump_of(&db)
}

fn assert_same_as_go(path: &Path) {
    let ours = our_dump(path);
    assert!(!ours.is_empty());
    common::our_check_clean(path);
    common::go_agrees(path, &ours);
}

#[test]
fn fixtures_dump_like_go() {
    for f in fixture_dbs() {
        // Only real bbolt files: fixtures directories may hold other things named *.db.
        let head = std::fs::read(&f)
            .map(|b| b.get(16..20) == Some(&[0xed, 0xda, 0x0c, 0xed][..]))
            .unwrap_or(false);
        if head {
            assert_same_as_go(&f);
        }
    }
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
    let Some(files) = etcd_dbs(version, dir.path()) else {
        return;
    };
    for f in &files {
        assert_same_as_go(f);
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
