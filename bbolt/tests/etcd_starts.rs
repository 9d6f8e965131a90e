//! A database built from scratch by this crate — once through write transactions, once
//! through the bulk loader — with etcd's buckets and records is restored with
//! `etcdutl snapshot restore --skip-hash-check` and served by a real etcd 3.5.1.

use std::path::Path;

use bbolt::bulk::{BulkLoader, BulkOptions};
use bbolt::{Db, OpenOptions};
use testkit::etcd::{EtcdBins, EtcdConfig, EtcdProcess};
use testkit::mvcc::{kv_proto, rev_key};

struct Expected {
    /// (key, value, create, mod, version) of live keys.
    live: Vec<(String, String, i64, i64, i64)>,
    records: Vec<(Vec<u8>, Vec<u8>)>,
    last_rev: i64,
}

/// etcd records: 2000 keys put at revisions 2.., key 5 updated, key 7 deleted.
fn expected() -> Expected {
    let mut records = Vec::new();
    let mut live = Vec::new();
    let n = 2000i64;
    for i in 0..n {
        let rev = 2 + i;
        let key = format!("/registry/pods/p{i:05}");
        let val = format!("value-{i}-{}", "x".repeat((i % 200) as usize));
        records.push((
            rev_key(rev, 0, false),
            kv_proto(key.as_bytes(), rev, rev, 1, val.as_bytes()),
        ));
        if i != 5 && i != 7 {
            live.push((key, val, rev, rev, 1));
        }
    }
    let r_upd = 2 + n;
    let k5 = "/registry/pods/p00005";
    records.push((
        rev_key(r_upd, 0, false),
        kv_proto(k5.as_bytes(), 7, r_upd, 2, b"updated"),
    ));
    live.push((k5.to_string(), "updated".to_string(), 7, r_upd, 2));
    let r_del = r_upd + 1;
    records.push((
        rev_key(r_del, 0, true),
        kv_proto(b"/registry/pods/p00007", 0, 0, 0, b""),
    ));
    live.sort();
    Expected {
        live,
        records,
        last_rev: r_del,
    }
}

const MEMBER_JSON: &[u8] = br#"{"id":10276657743932975437,"peerURLs":["http://localhost:2380"],"name":"default","clientURLs":["http://localhost:2379"]}"#;

type Records = Vec<(Vec<u8>, Vec<u8>)>;

fn small_buckets() -> Vec<(&'static [u8], Records)> {
    vec![
        (b"alarm", vec![]),
        (b"auth", vec![]),
        (b"authRoles", vec![]),
        (b"authUsers", vec![]),
        (
            b"cluster",
            vec![(b"clusterVersion".to_vec(), b"3.5.0".to_vec())],
        ),
        (b"lease", vec![]),
        (
            b"members",
            vec![(b"8e9e05c52164694d".to_vec(), MEMBER_JSON.to_vec())],
        ),
        (b"members_removed", vec![]),
        (
            b"meta",
            vec![
                (b"consistent_index".to_vec(), 1u64.to_be_bytes().to_vec()),
                (b"term".to_vec(), 1u64.to_be_bytes().to_vec()),
            ],
        ),
    ]
}

fn build_with_transactions(path: &Path, e: &Expected) {
    let db = Db::open(
        path,
        OpenOptions {
            create: true,
            ..Default::default()
        },
    )
    .unwrap();
    for (name, kvs) in small_buckets() {
        let mut tx = db.begin_write().unwrap();
        let mut b = tx.create_bucket(name).unwrap();
        for (k, v) in kvs {
            b.put(&k, &v).unwrap();
        }
        tx.commit().unwrap();
    }
    // The key bucket in bounded batches, like a restore appends.
    for chunk in e.records.chunks(300) {
        let mut tx = db.begin_write().unwrap();
        let mut b = tx.create_bucket_if_not_exists(b"key").unwrap();
        b.set_fill_percent(0.9);
        for (k, v) in chunk {
            b.put(k, v).unwrap();
        }
        tx.commit().unwrap();
    }
}

fn build_with_bulk_loader(path: &Path, e: &Expected) {
    let mut all = small_buckets();
    all.push((b"key", e.records.clone()));
    all.sort_by(|a, b| a.0.cmp(b.0));
    let mut l = BulkLoader::create(path, BulkOptions::default()).unwrap();
    for (name, kvs) in all {
        l.begin_bucket(name).unwrap();
        for (k, v) in kvs {
            l.put(&k, &v).unwrap();
        }
        l.end_bucket().unwrap();
    }
    l.finish().unwrap();
}

fn serve_and_compare(bins: &EtcdBins, db: &Path, dir: &Path, e: &Expected) {
    let check = bbolt::check::check_file(db, &Default::default()).unwrap();
    assert!(check.is_clean(), "{:?}", check.findings);
    let cfg = EtcdConfig::new(dir.join("data"));
    bins.snapshot_restore(db, &cfg, true)
        .expect("etcdutl snapshot restore");
    let p = EtcdProcess::start(bins, cfg).expect("etcd 3.5.1 starts on the restored data");
    let r = p.get_all(None).unwrap();
    assert_eq!(r.revision, e.last_rev, "etcd's current revision");
    let got: Vec<(String, String, i64, i64, i64)> = r
        .kvs
        .iter()
        .map(|kv| {
            (
                String::from_utf8(kv.key.clone()).unwrap(),
                String::from_utf8(kv.value.clone()).unwrap(),
                kv.create_revision,
                kv.mod_revision,
                kv.version,
            )
        })
        .collect();
    assert_eq!(got.len(), e.live.len());
    assert!(got == e.live, "etcd serves different keys");
    // And it keeps working: a new write gets the next revision.
    assert_eq!(p.put("/new", "v").unwrap(), e.last_rev + 1);
}

#[test]
fn etcd_3_5_1_serves_a_db_built_by_write_transactions() {
    let Some(bins) = EtcdBins::get("3.5.1") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let e = expected();
    let db = dir.path().join("tx.db");
    build_with_transactions(&db, &e);
    serve_and_compare(&bins, &db, dir.path(), &e);
}

#[test]
fn etcd_3_5_1_serves_a_db_built_by_the_bulk_loader() {
    let Some(bins) = EtcdBins::get("3.5.1") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let e = expected();
    let db = dir.path().join("bulk.db");
    build_with_bulk_loader(&db, &e);
    serve_and_compare(&bins, &db, dir.path(), &e);
}
