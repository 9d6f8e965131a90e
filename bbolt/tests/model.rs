//! Random sequences of puts, deletes and bucket operations over many commits, compared with a
//! BTreeMap model; every resulting file must pass our check and Go's `tx.Check()`, and Go's
//! dump must equal the model's. `BBOLT_PROPTEST_CASES` raises the case count.

mod common;

use bbolt::{Db, FreeSpace, OpenOptions};
use common::BucketModel;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    /// Put into bucket #sel (modulo the number of buckets).
    Put {
        sel: usize,
        key: Vec<u8>,
        value_len: usize,
        seed: u8,
    },
    /// Many ascending small keys (like etcd revisions).
    PutRun {
        sel: usize,
        start: u32,
        count: u16,
        value_len: u16,
    },
    /// Delete an existing key (picked by index) or a random one.
    Delete {
        sel: usize,
        pick: usize,
    },
    /// Delete every `step`-th existing key.
    DeleteRun {
        sel: usize,
        step: u8,
    },
    CreateBucket {
        sel: usize,
        name: Vec<u8>,
    },
    DeleteBucket {
        sel: usize,
    },
    SetSequence {
        sel: usize,
        seq: u64,
    },
    Commit,
    Rollback,
    Reopen,
}

fn key_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 1..6),
        proptest::collection::vec(b'a'..=b'e', 1..4),
        proptest::collection::vec(any::<u8>(), 17..40),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        30 => (any::<usize>(), key_strategy(), prop_oneof![8 => 0usize..64, 2 => 64usize..1500, 1 => 4000usize..20000], any::<u8>())
            .prop_map(|(sel, key, value_len, seed)| Op::Put { sel, key, value_len, seed }),
        4 => (any::<usize>(), any::<u32>(), 1u16..1500, 0u16..400)
            .prop_map(|(sel, start, count, value_len)| Op::PutRun { sel, start, count, value_len }),
        15 => (any::<usize>(), any::<usize>()).prop_map(|(sel, pick)| Op::Delete { sel, pick }),
        3 => (any::<usize>(), 1u8..4).prop_map(|(sel, step)| Op::DeleteRun { sel, step }),
        5 => (any::<usize>(), key_strategy()).prop_map(|(sel, name)| Op::CreateBucket { sel, name }),
        2 => any::<usize>().prop_map(|sel| Op::DeleteBucket { sel }),
        1 => (any::<usize>(), any::<u64>()).prop_map(|(sel, seq)| Op::SetSequence { sel, seq }),
        6 => Just(Op::Commit),
        2 => Just(Op::Rollback),
        1 => Just(Op::Reopen),
    ]
}

fn value(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Buckets (non-root) of the model, by path.
fn bucket_paths(m: &BucketModel) -> Vec<Vec<Vec<u8>>> {
    m.paths().into_iter().filter(|p| !p.is_empty()).collect()
}

fn with_bucket<T>(
    tx: &mut bbolt::WriteTx<'_>,
    path: &[Vec<u8>],
    f: impl FnOnce(&mut bbolt::BucketMut<'_>) -> T,
) -> T {
    let mut b = tx
        .bucket_mut(&path[0])
        .unwrap()
        .expect("top-level bucket exists");
    fn go<T>(
        b: &mut bbolt::BucketMut<'_>,
        rest: &[Vec<u8>],
        f: impl FnOnce(&mut bbolt::BucketMut<'_>) -> T,
    ) -> T {
        match rest.split_first() {
            None => f(b),
            Some((h, t)) => {
                let mut c = b.bucket_mut(h).unwrap().expect("nested bucket exists");
                go(&mut c, t, f)
            }
        }
    }
    go(&mut b, &path[1..], f)
}

fn run(ops: &[Op], opts: &OpenOptions) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.db");
    let mut committed = BucketModel::default();
    let mut model = committed.clone();
    let mut rest = ops;
    let mut first = true;
    loop {
        let o = OpenOptions {
            create: first,
            ..opts.clone()
        };
        first = false;
        let db = Db::open(&path, o).unwrap();
        let done = session(&db, &mut rest, &mut model, &mut committed)?;
        if done {
            let got = common::read_db(&db);
            prop_assert!(got == model, "contents differ from the model");
            let dump = common::dump_of(&db);
            let expected = model.dump();
            prop_assert!(dump == expected, "dump differs from the model's dump");
            drop(db);
            common::our_check_clean(&path);
            common::go_agrees(&path, &expected);
            return Ok(());
        }
    }
}

/// Applies ops until a Reopen (returns false) or the end (commits, returns true).
fn session(
    db: &Db,
    rest: &mut &[Op],
    model: &mut BucketModel,
    committed: &mut BucketModel,
) -> Result<bool, TestCaseError> {
    let mut tx = Some(db.begin_write().unwrap());
    while let Some((op, tail)) = rest.split_first() {
        *rest = tail;
        let t = tx.as_mut().unwrap();
        let paths = bucket_paths(model);
        let pick = |sel: usize| paths.get(sel % paths.len().max(1)).cloned();
        match op {
            Op::Put {
                sel,
                key,
                value_len,
                seed,
            } => {
                let Some(p) = pick(*sel) else { continue };
                let v = value(*value_len, *seed);
                let m = model.at_mut(&p).unwrap();
                let r = with_bucket(t, &p, |b| b.put(key, &v));
                if m.subs.contains_key(key) {
                    prop_assert!(
                        matches!(r, Err(bbolt::Error::IncompatibleValue { .. })),
                        "unexpected result {:?}",
                        r.is_ok()
                    );
                } else {
                    r.unwrap();
                    m.kv.insert(key.clone(), v);
                }
            }
            Op::PutRun {
                sel,
                start,
                count,
                value_len,
            } => {
                let Some(p) = pick(*sel) else { continue };
                let m = model.at_mut(&p).unwrap();
                with_bucket(t, &p, |b| {
                    b.set_fill_percent(0.9);
                    for i in 0..u64::from(*count) {
                        let mut k = (u64::from(*start) + i).to_be_bytes().to_vec();
                        k.extend_from_slice(b"_rev");
                        let v = value(usize::from(*value_len), i as u8);
                        if m.subs.contains_key(&k) {
                            continue;
                        }
                        b.put(&k, &v).unwrap();
                        m.kv.insert(k, v);
                    }
                });
            }
            Op::Delete { sel, pick: which } => {
                let Some(p) = pick(*sel) else { continue };
                let m = model.at_mut(&p).unwrap();
                let key = if m.kv.is_empty() {
                    vec![b'z'; 3]
                } else {
                    m.kv.keys().nth(which % m.kv.len()).unwrap().clone()
                };
                let existed = with_bucket(t, &p, |b| b.delete(&key)).unwrap();
                prop_assert_eq!(existed, m.kv.remove(&key).is_some());
            }
            Op::DeleteRun { sel, step } => {
                let Some(p) = pick(*sel) else { continue };
                let m = model.at_mut(&p).unwrap();
                let keys: Vec<Vec<u8>> = m.kv.keys().step_by(usize::from(*step)).cloned().collect();
                with_bucket(t, &p, |b| {
                    for k in &keys {
                        assert!(b.delete(k).unwrap());
                    }
                });
                for k in keys {
                    m.kv.remove(&k);
                }
            }
            Op::CreateBucket { sel, name } => {
                // sel == 0 (mod n+1) creates at top level.
                let n = paths.len() + 1;
                let parent = if sel % n == 0 {
                    vec![]
                } else {
                    paths[sel % n - 1].clone()
                };
                let m = model.at_mut(&parent).unwrap();
                let r = if parent.is_empty() {
                    t.create_bucket(name).map(|_| ())
                } else {
                    with_bucket(t, &parent, |b| b.create_bucket(name).map(|_| ()))
                };
                if m.subs.contains_key(name) {
                    prop_assert!(
                        matches!(r, Err(bbolt::Error::BucketExists { .. })),
                        "unexpected result {:?}",
                        r.is_ok()
                    );
                } else if m.kv.contains_key(name) {
                    prop_assert!(
                        matches!(r, Err(bbolt::Error::IncompatibleValue { .. })),
                        "unexpected result {:?}",
                        r.is_ok()
                    );
                } else {
                    r.unwrap();
                    m.subs.insert(name.clone(), BucketModel::default());
                }
            }
            Op::DeleteBucket { sel } => {
                let Some(p) = pick(*sel) else { continue };
                let (last, parent) = p.split_last().unwrap();
                if parent.is_empty() {
                    t.delete_bucket(last).unwrap();
                } else {
                    with_bucket(t, parent, |b| b.delete_bucket(last)).unwrap();
                }
                model.at_mut(parent).unwrap().subs.remove(last);
            }
            Op::SetSequence { sel, seq } => {
                let Some(p) = pick(*sel) else { continue };
                with_bucket(t, &p, |b| b.set_sequence(*seq)).unwrap();
                model.at_mut(&p).unwrap().sequence = *seq;
            }
            Op::Commit => {
                tx.take().unwrap().commit().unwrap();
                *committed = model.clone();
                tx = Some(db.begin_write().unwrap());
            }
            Op::Rollback => {
                tx.take().unwrap().rollback();
                *model = committed.clone();
                tx = Some(db.begin_write().unwrap());
            }
            Op::Reopen => {
                tx.take().unwrap().commit().unwrap();
                *committed = model.clone();
                return Ok(false);
            }
        }
    }
    tx.take().unwrap().commit().unwrap();
    *committed = model.clone();
    Ok(true)
}

fn options() -> impl Strategy<Value = OpenOptions> {
    (
        any::<bool>(),
        prop_oneof![Just(FreeSpace::Reuse), Just(FreeSpace::AppendOnly)],
        prop_oneof![Just(4096u32), Just(1024u32)],
    )
        .prop_map(|(sync_freelist, free_space, page_size)| OpenOptions {
            sync_freelist,
            free_space,
            page_size,
            no_sync: true,
            ..Default::default()
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: common::cases(24), max_shrink_iters: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_operations_match_the_model(opts in options(), ops in proptest::collection::vec(op_strategy(), 1..120)) {
        run(&ops, &opts)?;
    }
}

/// Many small keys, 10k+ deletes over several commits, a bucket growing and shrinking between
/// inline and paged, values spanning several pages.
#[test]
fn big_deterministic_workload() {
    for (sync_freelist, free_space) in [
        (true, FreeSpace::Reuse),
        (false, FreeSpace::Reuse),
        (false, FreeSpace::AppendOnly),
    ] {
        let mut ops = vec![Op::CreateBucket {
            sel: 0,
            name: b"key".to_vec(),
        }];
        ops.push(Op::PutRun {
            sel: 0,
            start: 0,
            count: 1500,
            value_len: 30,
        });
        for c in 0..20u32 {
            ops.push(Op::PutRun {
                sel: 0,
                start: 1500 * (c + 1),
                count: 1500,
                value_len: (c * 13 % 300) as u16,
            });
            if c % 4 == 3 {
                ops.push(Op::Commit);
            }
        }
        ops.push(Op::Commit);
        ops.push(Op::CreateBucket {
            sel: 0,
            name: b"meta".to_vec(),
        });
        ops.push(Op::Put {
            sel: 1,
            key: b"big".to_vec(),
            value_len: 20000,
            seed: 1,
        });
        ops.push(Op::Put {
            sel: 1,
            key: b"big2".to_vec(),
            value_len: 9000,
            seed: 2,
        });
        ops.push(Op::Commit);
        // 31500 keys; delete 2 of every 3 over several commits (> 20000 deletes).
        ops.push(Op::DeleteRun { sel: 0, step: 3 });
        ops.push(Op::Commit);
        ops.push(Op::DeleteRun { sel: 0, step: 2 });
        ops.push(Op::Reopen);
        ops.push(Op::DeleteRun { sel: 0, step: 1 });
        ops.push(Op::Put {
            sel: 0,
            key: b"last".to_vec(),
            value_len: 5,
            seed: 3,
        });
        ops.push(Op::Commit);
        // meta shrinks back to an inline bucket
        ops.push(Op::Delete { sel: 1, pick: 0 });
        ops.push(Op::Delete { sel: 1, pick: 0 });
        let opts = OpenOptions {
            sync_freelist,
            free_space,
            no_sync: true,
            ..Default::default()
        };
        run(&ops, &opts).unwrap();
    }
}
