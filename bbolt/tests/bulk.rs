//! Bulk loader: random nested contents loaded bottom-up must read back identically, pass our
//! check and Go's, and dump identically in Go.

mod common;

use bbolt::bulk::{BulkLoader, BulkOptions};
use bbolt::{Db, OpenOptions};
use common::BucketModel;
use proptest::prelude::*;

fn load(b: &mut BulkLoader, m: &BucketModel) {
    let mut names: Vec<(&Vec<u8>, bool)> = m.kv.keys().map(|k| (k, false)).collect();
    names.extend(m.subs.keys().map(|k| (k, true)));
    names.sort();
    for (k, is_bucket) in names {
        if is_bucket {
            let s = &m.subs[k];
            b.begin_bucket(k).unwrap();
            b.set_sequence(s.sequence).unwrap();
            load(b, s);
            b.end_bucket().unwrap();
        } else {
            b.put(k, &m.kv[k]).unwrap();
        }
    }
}

fn roundtrip(root: &BucketModel, opts: BulkOptions) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bulk.db");
    let mut b = BulkLoader::create(&path, opts.clone()).unwrap();
    load(&mut b, root);
    let stats = b.finish().unwrap();
    prop_assert_eq!(std::fs::metadata(&path).unwrap().len(), stats.bytes);
    let db = Db::open(&path, OpenOptions::read_only()).unwrap();
    prop_assert_eq!(
        db.meta().freelist == bbolt::meta::NO_FREELIST,
        !opts.sync_freelist
    );
    let got = common::read_db(&db);
    prop_assert!(&got == root, "read back differs");
    let dump = common::dump_of(&db);
    prop_assert!(dump == root.dump());
    drop(db);
    common::our_check_clean(&path);
    common::go_agrees(&path, &root.dump());
    // The result must stay writable: a write transaction on it keeps it valid.
    let db = Db::open(
        &path,
        OpenOptions {
            sync_freelist: opts.sync_freelist,
            ..Default::default()
        },
    )
    .unwrap();
    let mut expected = root.clone();
    {
        let mut tx = db.begin_write().unwrap();
        let mut bk = tx.create_bucket_if_not_exists(b"zz-added").unwrap();
        bk.put(b"k", b"v").unwrap();
        let e = expected.subs.entry(b"zz-added".to_vec()).or_default();
        e.kv.insert(b"k".to_vec(), b"v".to_vec());
        tx.commit().unwrap();
    }
    drop(db);
    common::our_check_clean(&path);
    common::go_agrees(&path, &expected.dump());
    Ok(())
}

fn model_strategy(depth: u32) -> BoxedStrategy<BucketModel> {
    let kv = proptest::collection::btree_map(
        proptest::collection::vec(any::<u8>(), 1..24),
        prop_oneof![8 => proptest::collection::vec(any::<u8>(), 0..200), 1 => proptest::collection::vec(any::<u8>(), 3000..12000)],
        0..300,
    );
    if depth == 0 {
        (kv, any::<u64>())
            .prop_map(|(kv, sequence)| BucketModel {
                kv,
                subs: Default::default(),
                sequence,
            })
            .boxed()
    } else {
        (
            kv,
            proptest::collection::btree_map(
                proptest::collection::vec(any::<u8>(), 1..8),
                model_strategy(depth - 1),
                0..4,
            ),
            any::<u64>(),
        )
            .prop_map(|(mut kv, subs, sequence)| {
                kv.retain(|k, _| !subs.contains_key(k));
                BucketModel { kv, subs, sequence }
            })
            .boxed()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: common::cases(24), ..ProptestConfig::default() })]

    #[test]
    fn bulk_loaded_files_read_back(
        subs in proptest::collection::btree_map(proptest::collection::vec(any::<u8>(), 1..8), model_strategy(2), 0..5),
        fill in prop_oneof![Just(0.5f64), Just(0.9), Just(1.0), 0.1f64..1.0],
        page_size in prop_oneof![Just(4096u32), Just(1024), Just(512)],
        sync_freelist in any::<bool>(),
    ) {
        let root = BucketModel { subs, ..Default::default() };
        roundtrip(&root, BulkOptions { page_size, fill_percent: fill, sync_freelist, no_sync: true })?;
    }
}

/// One big bucket of revision keys (many levels), like a compacted etcd key bucket.
#[test]
fn many_revision_keys() {
    let mut key = BucketModel::default();
    for rev in 2..60_000u64 {
        let mut k = rev.to_be_bytes().to_vec();
        k.push(b'_');
        k.extend_from_slice(&0u64.to_be_bytes());
        key.kv
            .insert(k, vec![(rev % 251) as u8; (rev % 300) as usize]);
    }
    let mut root = BucketModel::default();
    root.subs.insert(b"key".to_vec(), key);
    root.subs.insert(b"meta".to_vec(), BucketModel::default());
    roundtrip(
        &root,
        BulkOptions {
            no_sync: true,
            ..Default::default()
        },
    )
    .unwrap();
}

#[test]
fn rejects_unsorted_input() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = BulkLoader::create(&dir.path().join("x.db"), BulkOptions::default()).unwrap();
    assert!(b.put(b"a", b"1").is_err(), "put outside a bucket");
    b.begin_bucket(b"b").unwrap();
    b.put(b"k2", b"").unwrap();
    assert!(b.put(b"k1", b"").is_err());
    assert!(b.put(b"k2", b"").is_err());
    b.end_bucket().unwrap();
    assert!(b.begin_bucket(b"a").is_err());
}
