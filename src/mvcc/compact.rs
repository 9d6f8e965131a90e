//! etcd's history compaction rule (3.4/3.5 `keyIndex.compact` followed by the backend's
//! `scheduleCompaction`), for a compaction at the last revision of the store.
//!
//! At revision R every record has a revision ≤ R, so for each user key only its latest
//! revision survives, and only if it is a put: a key whose latest record is a tombstone is
//! dropped entirely (etcd's `doCompact` lands on the empty generation after the tombstone, so
//! neither the tombstone nor anything before it is kept). `meta` then gets
//! `scheduledCompactRev` and `finishedCompactRev` = the 17-byte revision key of {R, 0}.

use super::revision::Revision;

/// One record of the `key` bucket, seen by the rule in (user key, revision) order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyRecord<'a> {
    pub key: &'a [u8],
    pub rev: Revision,
    pub tombstone: bool,
}

/// The meta value etcd writes for both `scheduledCompactRev` and `finishedCompactRev`.
pub fn compact_rev_value(rev: i64) -> Vec<u8> {
    Revision::new(rev, 0).to_key(false).as_bytes().to_vec()
}

/// Why the input is not in the order the rule needs.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RuleError {
    #[error("key records out of order: {prev} then {next} for the same key")]
    Order { prev: Revision, next: Revision },
}

/// Streaming form of the rule: feed records sorted by (user key, revision); each call returns
/// the revision to keep for the key that just ended, if any. Call [`Latest::finish`] at the end.
#[derive(Default)]
pub struct Latest {
    key: Vec<u8>,
    last: Option<(Revision, bool)>,
}

impl Latest {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, r: KeyRecord<'_>) -> Result<Option<Revision>, RuleError> {
        match self.last {
            Some((prev, _)) if r.key == self.key.as_slice() => {
                if r.rev <= prev {
                    return Err(RuleError::Order { prev, next: r.rev });
                }
                self.last = Some((r.rev, r.tombstone));
                Ok(None)
            }
            _ => {
                let done = self.finish();
                self.key.clear();
                self.key.extend_from_slice(r.key);
                self.last = Some((r.rev, r.tombstone));
                Ok(done)
            }
        }
    }

    /// The kept revision of the key in progress (and forgets it).
    pub fn finish(&mut self) -> Option<Revision> {
        match self.last.take() {
            Some((rev, false)) => Some(rev),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(recs: &[(&str, i64, i64, bool)]) -> Vec<(i64, i64)> {
        let mut l = Latest::new();
        let mut out = Vec::new();
        for (k, m, s, t) in recs {
            if let Some(r) = l
                .push(KeyRecord {
                    key: k.as_bytes(),
                    rev: Revision::new(*m, *s),
                    tombstone: *t,
                })
                .unwrap()
            {
                out.push((r.main, r.sub));
            }
        }
        if let Some(r) = l.finish() {
            out.push((r.main, r.sub));
        }
        out
    }

    #[test]
    fn keeps_the_latest_put_and_drops_deleted_keys_entirely() {
        let got = run(&[
            ("a", 2, 0, false),
            ("a", 5, 1, false),
            ("b", 3, 0, false),
            ("b", 4, 0, true),
            ("c", 6, 0, false),
            ("c", 7, 0, true),
            ("c", 8, 0, false),
            ("d", 9, 0, true),
        ]);
        assert_eq!(got, vec![(5, 1), (8, 0)]);
    }

    #[test]
    fn refuses_records_out_of_revision_order() {
        let mut l = Latest::new();
        let k = |m| KeyRecord {
            key: b"a",
            rev: Revision::new(m, 0),
            tombstone: false,
        };
        l.push(k(5)).unwrap();
        assert!(l.push(k(5)).is_err());
    }

    #[test]
    fn meta_value_is_the_17_byte_revision_key() {
        let v = compact_rev_value(0x0102);
        assert_eq!(v.len(), 17);
        assert_eq!(&v[..8], &0x0102i64.to_be_bytes());
        assert_eq!(v[8], b'_');
        assert_eq!(&v[9..], &[0u8; 8]);
    }
}
