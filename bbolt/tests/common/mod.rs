//! Shared test helpers: a model of bucket contents, its expected dump, and Go oracle checks.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

use bbolt::{Bucket, Db, OpenOptions};

/// Expected contents of a bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BucketModel {
    pub kv: BTreeMap<Vec<u8>, Vec<u8>>,
    pub subs: BTreeMap<Vec<u8>, BucketModel>,
    pub sequence: u64,
}

impl BucketModel {
    pub fn at(&self, path: &[Vec<u8>]) -> Option<&BucketModel> {
        match path.split_first() {
            None => Some(self),
            Some((h, t)) => self.subs.get(h)?.at(t),
        }
    }

    pub fn at_mut(&mut self, path: &[Vec<u8>]) -> Option<&mut BucketModel> {
        match path.split_first() {
            None => Some(self),
            Some((h, t)) => self.subs.get_mut(h)?.at_mut(t),
        }
    }

    /// Every bucket path (depth first, the root first as the empty path).
    pub fn paths(&self) -> Vec<Vec<Vec<u8>>> {
        let mut out = vec![vec![]];
        for (k, b) in &self.subs {
            for mut p in b.paths() {
                p.insert(0, k.clone());
                out.push(p);
            }
        }
        out
    }

    /// The dump format of docs/testing.md for a model of the root bucket.
    pub fn dump(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.dump_into(&mut Vec::new(), &mut out);
        out
    }

    fn dump_into(&self, path: &mut Vec<Vec<u8>>, out: &mut Vec<u8>) {
        // Keys and bucket names share one key space, walked in byte order.
        let mut names: Vec<(&Vec<u8>, bool)> = self.kv.keys().map(|k| (k, false)).collect();
        names.extend(self.subs.keys().map(|k| (k, true)));
        names.sort();
        for (k, is_bucket) in names {
            let p: Vec<String> = path.iter().map(|x| format!("\"{}\"", b64(x))).collect();
            let head = format!("{{\"path\":[{}]", p.join(","));
            if is_bucket {
                let b = &self.subs[k];
                out.extend_from_slice(
                    format!(
                        "{head},\"bucket\":\"{}\",\"sequence\":{}}}\n",
                        b64(k),
                        b.sequence
                    )
                    .as_bytes(),
                );
                path.push(k.clone());
                b.dump_into(path, out);
                path.pop();
            } else {
                out.extend_from_slice(
                    format!(
                        "{head},\"key\":\"{}\",\"value\":\"{}\"}}\n",
                        b64(k),
                        b64(&self.kv[k])
                    )
                    .as_bytes(),
                );
            }
        }
    }
}

pub fn b64(b: &[u8]) -> String {
    let mut v = Vec::new();
    bbolt::dump::base64_into(&mut v, b);
    String::from_utf8(v).unwrap()
}

/// Reads a bucket back into a model with our cursor (forward), and checks backward iteration
/// and point lookups agree.
pub fn read_model(b: &Bucket<'_>) -> BucketModel {
    let mut m = BucketModel {
        sequence: b.sequence(),
        ..Default::default()
    };
    let mut c = b.cursor();
    let mut e = c.first().unwrap();
    let mut forward = Vec::new();
    while let Some(x) = e {
        forward.push(x.key.to_vec());
        if x.is_bucket() {
            let child = b.bucket(x.key).unwrap().expect("bucket entry opens");
            m.subs.insert(x.key.to_vec(), read_model(&child));
        } else {
            assert_eq!(b.get(x.key).unwrap(), Some(x.value));
            m.kv.insert(x.key.to_vec(), x.value.to_vec());
        }
        e = c.next().unwrap();
    }
    let mut backward = Vec::new();
    let mut e = c.last().unwrap();
    while let Some(x) = e {
        backward.push(x.key.to_vec());
        e = c.prev().unwrap();
    }
    backward.reverse();
    assert_eq!(forward, backward, "prev() walk differs from next() walk");
    m
}

pub fn read_db(db: &Db) -> BucketModel {
    let tx = db.begin_read();
    let mut m = read_model(&tx.root());
    m.sequence = 0;
    m
}

/// Go's `tx.Check()` must pass and Go's dump must equal `expected`. Skips (per the deps rule)
/// when the oracle is not installed.
pub fn go_agrees(path: &Path, expected_dump: &[u8]) {
    let Some(o) = testkit::gooracle::GoOracle::get() else {
        return;
    };
    let r = o.check(path).expect("oracle check runs");
    assert!(r.ok, "Go check of {} failed:\n{}", path.display(), r.output);
    let d = o.dump(path).expect("oracle dump runs");
    if d != expected_dump {
        let a = String::from_utf8_lossy(&d);
        let b = String::from_utf8_lossy(expected_dump);
        let first = a.lines().zip(b.lines()).position(|(x, y)| x != y);
        panic!(
            "{}: Go dump differs from the expected dump ({} vs {} lines), first difference at line {:?}",
            path.display(),
            a.lines().count(),
            b.lines().count(),
            first
        );
    }
}

/// Our own check must report nothing.
pub fn our_check_clean(path: &Path) {
    let r =
        bbolt::check::check_file(path, &bbolt::check::CheckOptions::default()).expect("check runs");
    assert!(
        r.findings.is_empty(),
        "our check of {}: {:#?}",
        path.display(),
        &r.findings[..r.findings.len().min(20)]
    );
}

pub fn dump_of(db: &Db) -> Vec<u8> {
    let mut v = Vec::new();
    bbolt::dump::write_dump(db, &mut v).unwrap();
    v
}

pub fn opts_create() -> OpenOptions {
    OpenOptions {
        create: true,
        ..Default::default()
    }
}

/// Number of proptest cases: `BBOLT_PROPTEST_CASES` or `default`.
pub fn cases(default: u32) -> u32 {
    std::env::var("BBOLT_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
