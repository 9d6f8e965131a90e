//! Commits that fail (ENOSPC, EIO, short writes, failed fsync, power loss after N bytes) or
//! transactions that are dropped leave the file as it was: reopening shows the last
//! committed state (or, for a crash after the meta page reached the disk, the new one), and
//! both checkers accept the file.

mod common;

use std::path::Path;
use std::sync::Arc;

use bbolt::file::{Fault, FaultyStorage, Storage};
use bbolt::{Db, FreeSpace, OpenOptions};
use common::BucketModel;

fn base(path: &Path, opts: &OpenOptions) -> BucketModel {
    let db = Db::open(
        path,
        OpenOptions {
            create: true,
            ..opts.clone()
        },
    )
    .unwrap();
    let mut m = BucketModel::default();
    let mut tx = db.begin_write().unwrap();
    let mut b = tx.create_bucket(b"key").unwrap();
    let mut km = BucketModel::default();
    for i in 0..3000u32 {
        let k = i.to_be_bytes().to_vec();
        let v = vec![b'a'; (i % 100) as usize];
        b.put(&k, &v).unwrap();
        km.kv.insert(k, v);
    }
    m.subs.insert(b"key".to_vec(), km);
    tx.commit().unwrap();
    m
}

/// The change every faulty commit tries to make.
fn change(db: &Db) -> bbolt::Result<()> {
    let mut tx = db.begin_write()?;
    let mut b = tx.bucket_mut(b"key")?.unwrap();
    for i in 0..3000u32 {
        if i % 2 == 0 {
            b.delete(&i.to_be_bytes())?;
        }
    }
    for i in 3000..4000u32 {
        b.put(&i.to_be_bytes(), &[b'z'; 250])?;
    }
    let mut n = tx.create_bucket(b"new")?;
    n.put(b"x", b"y")?;
    tx.commit()?;
    Ok(())
}

fn changed(m: &BucketModel) -> BucketModel {
    let mut m = m.clone();
    let k = m.subs.get_mut(&b"key"[..]).unwrap();
    for i in 0..3000u32 {
        if i % 2 == 0 {
            k.kv.remove(&i.to_be_bytes()[..]);
        }
    }
    for i in 3000..4000u32 {
        k.kv.insert(i.to_be_bytes().to_vec(), vec![b'z'; 250]);
    }
    let mut n = BucketModel::default();
    n.kv.insert(b"x".to_vec(), b"y".to_vec());
    m.subs.insert(b"new".to_vec(), n);
    m
}

fn verify(path: &Path, opts: &OpenOptions, allowed: &[&BucketModel]) -> BucketModel {
    let db = Db::open(path, opts.clone()).unwrap();
    let got = common::read_db(&db);
    assert!(
        allowed.iter().any(|m| **m == got),
        "state after the failure is neither allowed state"
    );
    drop(db);
    common::our_check_clean(path);
    common::go_agrees(path, &got.dump());
    got
}

fn all_opts() -> Vec<OpenOptions> {
    vec![
        OpenOptions {
            sync_freelist: true,
            ..Default::default()
        },
        OpenOptions::default(),
        OpenOptions {
            free_space: FreeSpace::AppendOnly,
            ..Default::default()
        },
    ]
}

#[test]
fn failed_commits_leave_the_last_committed_state() {
    let faults = [
        Fault::NoSpace { after_writes: 0 },
        Fault::NoSpace { after_writes: 1 },
        Fault::WriteEio { after_writes: 1 },
        Fault::ShortWrite { nth: 0 },
        Fault::ShortWrite { nth: 1 },
        Fault::SyncFails { nth: 0 },
    ];
    for opts in all_opts() {
        for fault in &faults {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("f.db");
            let before = base(&path, &opts);
            {
                let f = fault.clone();
                let db = Db::open_with(&path, opts.clone(), move |s| {
                    Arc::new(FaultyStorage::new(s, f)) as Arc<dyn Storage>
                })
                .unwrap();
                assert!(change(&db).is_err(), "{fault:?} must fail the commit");
                // The handle still shows the old state, and (unless poisoned) works again.
                assert!(common::read_db(&db) == before);
            }
            eprintln!("{fault:?} {:?}", opts.free_space);
            // A short write of the meta page may still carry the whole new meta (it sits in the
            // first 80 bytes); every other failure leaves the old state.
            let after = changed(&before);
            let allowed: Vec<&BucketModel> = match fault {
                Fault::ShortWrite { .. } => vec![&before, &after],
                _ => vec![&before],
            };
            let got = verify(&path, &opts, &allowed);
            if got != before {
                continue;
            }
            // A healthy handle can commit the change afterwards.
            let db = Db::open(&path, opts.clone()).unwrap();
            change(&db).unwrap();
            drop(db);
            verify(&path, &opts, &[&changed(&before)]);
        }
    }
}

#[test]
fn power_loss_at_any_point_leaves_old_or_new_state() {
    for opts in all_opts() {
        // Find how many bytes the commit writes, then cut it at many points.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("size.db");
        base(&path, &opts);
        let len0 = std::fs::metadata(&path).unwrap().len();
        let db = Db::open(&path, opts.clone()).unwrap();
        change(&db).unwrap();
        drop(db);
        let total = std::fs::metadata(&path).unwrap().len().saturating_sub(len0) + 8 * 4096;
        let mut saw_new = false;
        for cut in (0..total)
            .step_by((total / 23).max(1) as usize)
            .chain([total + 4096 * 4])
        {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("crash.db");
            let before = base(&path, &opts);
            let after = changed(&before);
            {
                let db = Db::open_with(&path, opts.clone(), move |s| {
                    Arc::new(FaultyStorage::new(s, Fault::CrashAfterBytes { bytes: cut }))
                        as Arc<dyn Storage>
                })
                .unwrap();
                let _ = change(&db);
            }
            let got = verify(&path, &opts, &[&before, &after]);
            saw_new |= got == after;
        }
        assert!(
            saw_new,
            "a cut after the whole commit must show the new state"
        );
    }
}

#[test]
fn dropped_transactions_change_nothing() {
    for opts in all_opts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.db");
        let before = base(&path, &opts);
        let bytes = std::fs::read(&path).unwrap();
        let db = Db::open(&path, opts.clone()).unwrap();
        {
            let mut tx = db.begin_write().unwrap();
            let mut b = tx.bucket_mut(b"key").unwrap().unwrap();
            for i in 0..3000u32 {
                b.delete(&i.to_be_bytes()).unwrap();
            }
            tx.delete_bucket(b"key").unwrap();
            // dropped here
        }
        assert!(common::read_db(&db) == before);
        drop(db);
        assert_eq!(
            std::fs::read(&path).unwrap(),
            bytes,
            "a dropped transaction writes nothing"
        );
        verify(&path, &opts, &[&before]);
    }
}
