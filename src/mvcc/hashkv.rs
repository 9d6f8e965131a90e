//! etcd's `HashKV`, computed offline from the `key` bucket.
//!
//! The hash is CRC-32C over `"key"` followed by every (revision key, stored value) pair of the
//! `key` bucket with main revision ≤ the requested revision — except records at or below the
//! compaction revision that are no longer the latest revision of their key as of the requested
//! revision (etcd's `kvindex.Keep(rev)` filter), and, since etcd 3.4.34/3.5.16, a tombstone at
//! exactly the compaction revision (so databases compacted by old and new versions hash alike).
//! Upstream: 3.4 `mvcc/kvstore.go HashByRev`, 3.5 `server/mvcc/hash.go`.
//!
//! `Keep(rev)` is "each key's latest revision ≤ rev, unless that is a tombstone". Only records at
//! or below the compaction revision are ever filtered, so the index kept here has one entry per
//! distinct key (a 128-bit hash of the key, not the key itself).

use crate::show::hex;

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use super::kv::{KeyValue, ProtoError};
use super::revision::{ParsedRevKey, RevKeyError, Revision, parse_rev_key};

/// What `etcdctl endpoint hashkv` reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct HashKv {
    pub hash: u32,
    /// The compaction revision, −1 when the store was never compacted.
    pub compact_revision: i64,
    /// The revision the hash covers.
    pub hash_revision: i64,
    /// The store's current revision.
    pub current_revision: i64,
}

/// Inputs read from the `meta` bucket and the `key` bucket's last key.
#[derive(Clone, Copy, Debug, Default)]
pub struct HashKvMeta {
    /// `meta/finishedCompactRev` (main revision), if present.
    pub finished_compact_rev: Option<i64>,
    /// `meta/scheduledCompactRev` (main revision), if present.
    pub scheduled_compact_rev: Option<i64>,
    /// Main revision of the last key in the `key` bucket, if the bucket is not empty.
    pub last_main: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum HashKvError {
    #[error("revision {requested} is in the future (current revision {current})")]
    FutureRev { requested: i64, current: i64 },
    #[error("revision {requested} has been compacted (compact revision {compact})")]
    Compacted { requested: i64, compact: i64 },
    #[error("key bucket record {rev_key}: {source}")]
    BadRecordKey {
        rev_key: String,
        #[source]
        source: RevKeyError,
    },
    #[error("key bucket record {rev_key}: bad KeyValue: {source}")]
    BadRecordValue {
        rev_key: String,
        #[source]
        source: ProtoError,
    },
    #[error("reading the key bucket: {0}")]
    Read(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl HashKvMeta {
    /// The effective compaction revision: a scheduled but unfinished compaction is finished by
    /// etcd at start-up, so it counts.
    pub fn compact_rev(&self) -> i64 {
        match (self.finished_compact_rev, self.scheduled_compact_rev) {
            (Some(f), Some(s)) => f.max(s),
            (Some(f), None) => f,
            (None, Some(s)) => s,
            (None, None) => -1,
        }
    }

    pub fn current_rev(&self) -> i64 {
        self.last_main
            .unwrap_or(1)
            .max(self.finished_compact_rev.unwrap_or(i64::MIN))
            .max(self.scheduled_compact_rev.unwrap_or(i64::MIN))
    }
}

type KeyId = (u64, u64);

fn key_id(k: &[u8]) -> KeyId {
    let mut a = DefaultHasher::new();
    0u8.hash(&mut a);
    k.hash(&mut a);
    let mut b = DefaultHasher::new();
    1u8.hash(&mut b);
    k.hash(&mut b);
    (a.finish(), b.finish())
}

/// Computes HashKV at `rev` (0 = the current revision). `scan` must yield the whole `key`
/// bucket in key order; it is called twice.
pub fn hash_kv<F, I, K, V, E>(
    meta: HashKvMeta,
    rev: i64,
    mut scan: F,
) -> Result<HashKv, HashKvError>
where
    F: FnMut() -> I,
    I: Iterator<Item = Result<(K, V), E>>,
    K: AsRef<[u8]>,
    V: AsRef<[u8]>,
    E: std::error::Error + Send + Sync + 'static,
{
    let current = meta.current_rev();
    let compact = meta.compact_rev();
    let rev = if rev == 0 { current } else { rev };
    if rev > current {
        return Err(HashKvError::FutureRev {
            requested: rev,
            current,
        });
    }
    if rev < compact {
        return Err(HashKvError::Compacted {
            requested: rev,
            compact,
        });
    }

    let decode = |k: &[u8], v: &[u8]| -> Result<(ParsedRevKey, KeyId), HashKvError> {
        let p = parse_rev_key(k).map_err(|source| HashKvError::BadRecordKey {
            rev_key: hex(k),
            source,
        })?;
        let kv = KeyValue::decode(v).map_err(|source| HashKvError::BadRecordValue {
            rev_key: hex(k),
            source,
        })?;
        Ok((p, key_id(kv.key)))
    };

    // Pass 1: each key's latest revision ≤ rev. Needed only when something can be filtered.
    let mut latest: HashMap<KeyId, (Revision, bool)> = HashMap::new();
    if compact >= 0 {
        for item in scan() {
            let (k, v) = item.map_err(|e| HashKvError::Read(Box::new(e)))?;
            let (p, id) = decode(k.as_ref(), v.as_ref())?;
            if p.rev.main > rev {
                break;
            }
            latest.insert(id, (p.rev, p.tombstone));
        }
    }
    let keep_nonempty = latest.values().any(|&(_, tomb)| !tomb);

    // Pass 2: the hash.
    let mut h = crc32c::crc32c(b"key");
    for item in scan() {
        let (k, v) = item.map_err(|e| HashKvError::Read(Box::new(e)))?;
        let (k, v) = (k.as_ref(), v.as_ref());
        let p = parse_rev_key(k).map_err(|source| HashKvError::BadRecordKey {
            rev_key: hex(k),
            source,
        })?;
        if p.rev.main > rev {
            break;
        }
        if p.rev.main <= compact {
            if keep_nonempty {
                let (_, id) = decode(k, v)?;
                let kept = matches!(latest.get(&id), Some(&(r, false)) if r == p.rev);
                if !kept {
                    continue;
                }
            }
            if p.rev.main == compact && p.tombstone {
                continue;
            }
        }
        h = crc32c::crc32c_append(h, k);
        h = crc32c::crc32c_append(h, v);
    }
    Ok(HashKv {
        hash: h,
        compact_revision: compact,
        hash_revision: rev,
        current_revision: current,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    type Rec = (Vec<u8>, Vec<u8>);

    fn rec(main: i64, sub: i64, tomb: bool, key: &[u8], lease: i64) -> Rec {
        let mut v = Vec::new();
        KeyValue {
            key,
            create_revision: if tomb { 0 } else { main },
            mod_revision: if tomb { 0 } else { main },
            version: if tomb { 0 } else { 1 },
            value: if tomb { b"" } else { b"x" },
            lease,
        }
        .encode(&mut v);
        (Revision::new(main, sub).to_key(tomb).as_bytes().to_vec(), v)
    }

    fn run(recs: &[Rec], meta: HashKvMeta, rev: i64) -> Result<HashKv, HashKvError> {
        hash_kv(meta, rev, || {
            recs.iter()
                .map(|(k, v)| Ok::<_, Infallible>((k.as_slice(), v.as_slice())))
        })
    }

    fn naive(recs: &[Rec], upto: i64) -> u32 {
        let mut h = crc32c::crc32c(b"key");
        for (k, v) in recs {
            if parse_rev_key(k).unwrap().rev.main <= upto {
                h = crc32c::crc32c_append(h, k);
                h = crc32c::crc32c_append(h, v);
            }
        }
        h
    }

    #[test]
    fn uncompacted_store_hashes_every_record_up_to_rev() {
        let recs = vec![
            rec(2, 0, false, b"a", 0),
            rec(3, 0, false, b"b", 0),
            rec(4, 0, true, b"a", 0),
        ];
        let meta = HashKvMeta {
            last_main: Some(4),
            ..Default::default()
        };
        let h = run(&recs, meta, 0).unwrap();
        assert_eq!(
            (h.hash, h.compact_revision, h.hash_revision),
            (naive(&recs, 4), -1, 4)
        );
        assert_eq!(run(&recs, meta, 3).unwrap().hash, naive(&recs, 3));
        assert!(matches!(
            run(&recs, meta, 5),
            Err(HashKvError::FutureRev { .. })
        ));
    }

    #[test]
    fn survivors_superseded_after_the_compaction_are_filtered() {
        // Compacted at 5: survivors a@4 and c@5; later a@6.
        let recs = vec![
            rec(4, 0, false, b"a", 0),
            rec(5, 0, false, b"c", 0),
            rec(6, 0, false, b"a", 0),
        ];
        let meta = HashKvMeta {
            finished_compact_rev: Some(5),
            last_main: Some(6),
            ..Default::default()
        };
        // At 6, a@4 is not the latest revision of "a": it is skipped.
        let expect = {
            let mut h = crc32c::crc32c(b"key");
            for r in [&recs[1], &recs[2]] {
                h = crc32c::crc32c_append(h, &r.0);
                h = crc32c::crc32c_append(h, &r.1);
            }
            h
        };
        assert_eq!(run(&recs, meta, 6).unwrap().hash, expect);
        // At 5 everything below is still the latest.
        assert_eq!(run(&recs, meta, 5).unwrap().hash, naive(&recs, 5));
        assert!(matches!(
            run(&recs, meta, 4),
            Err(HashKvError::Compacted { .. })
        ));
    }

    #[test]
    fn tombstone_at_the_compaction_revision_is_not_hashed() {
        let recs = vec![
            rec(3, 0, false, b"a", 0),
            rec(5, 0, true, b"b", 0),
            rec(6, 0, false, b"c", 0),
        ];
        let meta = HashKvMeta {
            finished_compact_rev: Some(5),
            last_main: Some(6),
            ..Default::default()
        };
        let expect = {
            let mut h = crc32c::crc32c(b"key");
            for r in [&recs[0], &recs[2]] {
                h = crc32c::crc32c_append(h, &r.0);
                h = crc32c::crc32c_append(h, &r.1);
            }
            h
        };
        assert_eq!(run(&recs, meta, 0).unwrap().hash, expect);
    }
}
