//! etcd's view of a bbolt file ("the backend"): its buckets, the current revision, the leases,
//! scans of the `key` bucket and the offline HashKV.

use std::collections::HashSet;
use std::path::Path;

use bbolt::{Db, OpenOptions};

use crate::mvcc::hashkv::{HashKv, HashKvError, HashKvMeta, hash_kv};
use crate::mvcc::kv::Lease;
use crate::mvcc::revision::parse_rev_key;

pub use crate::mvcc::buckets::{KEY_BUCKET, LEASE_BUCKET, META_BUCKET};

/// What a replay needs to know about its base database.
#[derive(Clone, Debug, Default)]
pub struct BaseState {
    /// etcd's rule: the last key's main revision, raised to the compaction revisions in `meta`.
    pub revision: i64,
    /// The IDs in the `lease` bucket.
    pub leases: HashSet<i64>,
    /// The longest TTL among them.
    pub max_lease_ttl: Option<i64>,
}

/// Why a base database's [`BaseState`] cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum BaseStateError {
    #[error("base snapshot {object}: {source}")]
    Db {
        object: String,
        #[source]
        source: bbolt::Error,
    },
    #[error("base snapshot {object}: last key of the key bucket: {detail}")]
    Revision { object: String, detail: String },
}

/// Reads the base's [`BaseState`].
pub fn read_base_state(db: &Db, object: &str) -> Result<BaseState, BaseStateError> {
    let base_db = |source| BaseStateError::Db {
        object: object.to_string(),
        source,
    };
    let tx = db.begin_read();
    let mut rev = 1;
    if let Some(b) = tx.bucket(KEY_BUCKET).map_err(base_db)?
        && let Some(e) = b.cursor().last().map_err(base_db)?
    {
        let p = parse_rev_key(e.key).map_err(|e| BaseStateError::Revision {
            object: object.to_string(),
            detail: e.to_string(),
        })?;
        rev = p.rev.main;
    }
    if let Some(m) = tx.bucket(META_BUCKET).map_err(base_db)? {
        for name in [&b"finishedCompactRev"[..], b"scheduledCompactRev"] {
            if let Some(v) = m.get(name).map_err(base_db)?
                && let Ok(p) = parse_rev_key(v)
            {
                rev = rev.max(p.rev.main);
            }
        }
    }
    let mut leases = HashSet::new();
    let mut max_lease_ttl = None;
    if let Some(b) = tx.bucket(LEASE_BUCKET).map_err(base_db)? {
        let mut c = b.cursor();
        let mut e = c.first().map_err(base_db)?;
        while let Some(entry) = e {
            if let Ok(k) = <[u8; 8]>::try_from(entry.key) {
                leases.insert(i64::from_be_bytes(k));
            }
            // A record etcd could not decode either is left to etcd to report at start-up.
            if let Ok(l) = Lease::decode(entry.value) {
                max_lease_ttl = max_lease_ttl.max(Some(l.ttl));
            }
            e = c.next().map_err(base_db)?;
        }
    }
    Ok(BaseState {
        revision: rev,
        leases,
        max_lease_ttl,
    })
}

/// A bucket's entries in key order as an iterator.
pub struct BucketScan<'a> {
    cursor: bbolt::Cursor<'a>,
    started: bool,
    done: bool,
}

impl<'a> BucketScan<'a> {
    pub fn new(cursor: bbolt::Cursor<'a>) -> Self {
        Self {
            cursor,
            started: false,
            done: false,
        }
    }
}

impl<'a> Iterator for BucketScan<'a> {
    type Item = Result<(&'a [u8], &'a [u8]), bbolt::Error>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let r = if self.started {
            self.cursor.next()
        } else {
            self.started = true;
            self.cursor.first()
        };
        match r {
            Ok(Some(e)) => Some(Ok((e.key, e.value))),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("{path}: {source}")]
    Db {
        path: String,
        #[source]
        source: bbolt::Error,
    },
    #[error("{path}: {source}")]
    HashKv {
        path: String,
        #[source]
        source: HashKvError,
    },
}

/// The compaction revisions in `meta` and the last key of `key`, as HashKV needs them.
pub fn hashkv_meta(db: &Db) -> Result<HashKvMeta, bbolt::Error> {
    let tx = db.begin_read();
    let mut meta = HashKvMeta::default();
    if let Some(m) = tx.bucket(META_BUCKET)? {
        let rev = |v: Option<&[u8]>| v.and_then(|v| parse_rev_key(v).ok()).map(|p| p.rev.main);
        meta.finished_compact_rev = rev(m.get(b"finishedCompactRev")?);
        meta.scheduled_compact_rev = rev(m.get(b"scheduledCompactRev")?);
    }
    if let Some(b) = tx.bucket(KEY_BUCKET)?
        && let Some(e) = b.cursor().last()?
    {
        meta.last_main = crate::mvcc::revision::main_of(e.key);
    }
    Ok(meta)
}

/// etcd's HashKV of a database file at `rev` (0 = current), without etcd.
pub fn hash_kv_file(path: &Path, rev: i64) -> Result<HashKv, BackendError> {
    let p = path.display().to_string();
    let db_err = |source| BackendError::Db {
        path: p.clone(),
        source,
    };
    let db = Db::open(path, OpenOptions::read_only()).map_err(db_err)?;
    let meta = hashkv_meta(&db).map_err(db_err)?;
    let tx = db.begin_read();
    let bucket = tx.bucket(KEY_BUCKET).map_err(db_err)?;
    hash_kv(meta, rev, || {
        bucket
            .as_ref()
            .map(|b| BucketScan::new(b.cursor()))
            .into_iter()
            .flatten()
    })
    .map_err(|source| BackendError::HashKv {
        path: p.clone(),
        source,
    })
}
