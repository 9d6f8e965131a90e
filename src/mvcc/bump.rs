//! `restore --bump-revision N --mark-compacted`: etcdutl's `snapshot restore` flags (3.5.10+,
//! 3.6) that keep revisions from going backwards after a restore to an older point.
//!
//! Upstream (etcd `etcdutl/snapshot/v3_snapshot.go`, `modifyLatestRevision`, identical in
//! v3.5.x and release-3.6): the latest revision is the largest key of the `key` bucket
//! (`{0, 0}` when it is empty); an empty record is put at `{latest.main + N, 0}`, and
//! `meta/scheduledCompactRev` is set to that main revision. etcd, starting on it, takes the
//! empty record's revision as its current revision (`restoreIntoIndex`), finishes the
//! "scheduled" compaction at start-up, and so answers every watch or read below it with
//! "required revision has been compacted": Kubernetes informers and watch caches re-list
//! instead of waiting for revisions they have already seen.
//!
//! The flag rule is etcdutl's (`etcdutl/etcdutl/snapshot_command.go`): `--mark-compacted` is
//! required when `--bump-revision` > 0 and refused otherwise.

use bbolt::WriteTx;

use super::revision::{Revision, parse_rev_key};
use crate::mvcc::buckets::{KEY_BUCKET, META_BUCKET};

/// `meta` key of a compaction etcd has scheduled but not finished (etcd `mvcc/util.go`).
pub const SCHEDULED_COMPACT_KEY: &[u8] = b"scheduledCompactRev";

#[derive(Debug, thiserror::Error)]
pub enum BumpError {
    /// etcdutl's message, word for word (it names the flag `--revision-bump`).
    #[error(
        "--mark-compacted required if --revision-bump > 0 (give both --bump-revision N with N > 0 and --mark-compacted, or neither)"
    )]
    Flags,
    #[error(
        "--bump-revision {amount}: the latest revision {latest} plus {amount} is beyond etcd's largest revision {max}",
        max = i64::MAX
    )]
    Overflow { latest: i64, amount: u64 },
    #[error("key bucket: its last key {key:02x?} is not a revision key: {detail}")]
    BadKey { key: Vec<u8>, detail: String },
    #[error(transparent)]
    Db(#[from] bbolt::Error),
}

/// A bump to apply: `--bump-revision N --mark-compacted`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bump {
    pub amount: u64,
}

impl Bump {
    /// etcdutl's rule: `None` for neither flag (or `--bump-revision 0` alone).
    pub fn from_flags(bump_revision: u64, mark_compacted: bool) -> Result<Option<Bump>, BumpError> {
        match (bump_revision, mark_compacted) {
            (0, false) => Ok(None),
            (amount, true) if amount > 0 => Ok(Some(Bump { amount })),
            _ => Err(BumpError::Flags),
        }
    }
}

/// What the bump wrote, for the report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Bumped {
    /// The largest main revision in the `key` bucket before the bump.
    pub latest_revision: i64,
    pub amount: u64,
    /// `latest_revision + amount`: etcd's current and compacted revision once it starts.
    pub revision: i64,
}

/// Applies `bump` inside `tx` (the caller commits).
pub fn bump_revision(tx: &mut WriteTx<'_>, bump: Bump) -> Result<Bumped, BumpError> {
    let mut keys = tx.create_bucket_if_not_exists(KEY_BUCKET)?;
    let latest = match keys.cursor()?.last()? {
        Some(e) => {
            parse_rev_key(e.key)
                .map_err(|err| BumpError::BadKey {
                    key: e.key.to_vec(),
                    detail: err.to_string(),
                })?
                .rev
                .main
        }
        None => 0,
    };
    let revision = i64::try_from(bump.amount)
        .ok()
        .and_then(|a| latest.checked_add(a))
        .ok_or(BumpError::Overflow {
            latest,
            amount: bump.amount,
        })?;
    let key = Revision::new(revision, 0).to_key(false);
    keys.put(key.as_bytes(), &[])?;
    let mut meta = tx.create_bucket_if_not_exists(META_BUCKET)?;
    meta.put(SCHEDULED_COMPACT_KEY, key.as_bytes())?;
    tracing::info!(
        latest_revision = latest,
        amount = bump.amount,
        revision,
        "bumped the latest revision and marked it compacted"
    );
    Ok(Bumped {
        latest_revision: latest,
        amount: bump.amount,
        revision,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bbolt::Db;

    #[test]
    fn flags_follow_etcdutl() {
        assert_eq!(Bump::from_flags(0, false).unwrap(), None);
        assert_eq!(
            Bump::from_flags(1000, true).unwrap(),
            Some(Bump { amount: 1000 })
        );
        for (n, m) in [(0, true), (5, false)] {
            let e = Bump::from_flags(n, m).unwrap_err();
            assert!(
                e.to_string()
                    .starts_with("--mark-compacted required if --revision-bump > 0"),
                "{e}"
            );
        }
    }

    fn db_with(keys: &[Revision]) -> (tempfile::TempDir, Db) {
        let t = tempfile::tempdir().unwrap();
        let db = Db::create(t.path().join("db")).unwrap();
        let mut tx = db.begin_write().unwrap();
        let mut b = tx.create_bucket(KEY_BUCKET).unwrap();
        for r in keys {
            b.put(r.to_key(false).as_bytes(), b"v").unwrap();
        }
        tx.commit().unwrap();
        (t, db)
    }

    #[test]
    fn puts_an_empty_record_after_the_latest_revision_and_schedules_its_compaction() {
        let (_t, db) = db_with(&[Revision::new(3, 0), Revision::new(7, 2)]);
        let mut tx = db.begin_write().unwrap();
        let b = bump_revision(&mut tx, Bump { amount: 1000 }).unwrap();
        tx.commit().unwrap();
        assert_eq!(
            b,
            Bumped {
                latest_revision: 7,
                amount: 1000,
                revision: 1007
            }
        );
        let tx = db.begin_read();
        let keys = tx.bucket(KEY_BUCKET).unwrap().unwrap();
        let last = keys.cursor().last().unwrap().unwrap();
        assert_eq!(last.key, Revision::new(1007, 0).to_key(false).as_bytes());
        assert_eq!(last.value, b"");
        let meta = tx.bucket(META_BUCKET).unwrap().unwrap();
        assert_eq!(
            meta.get(SCHEDULED_COMPACT_KEY).unwrap().unwrap(),
            Revision::new(1007, 0).to_key(false).as_bytes()
        );
    }

    #[test]
    fn an_empty_key_bucket_counts_as_revision_zero_and_overflow_is_refused() {
        let (_t, db) = db_with(&[]);
        let mut tx = db.begin_write().unwrap();
        assert_eq!(
            bump_revision(&mut tx, Bump { amount: 5 }).unwrap().revision,
            5
        );
        tx.rollback();
        let (_t, db) = db_with(&[Revision::new(9, 0)]);
        let mut tx = db.begin_write().unwrap();
        let e = bump_revision(&mut tx, Bump { amount: u64::MAX }).unwrap_err();
        assert!(matches!(e, BumpError::Overflow { latest: 9, .. }), "{e}");
        let e = bump_revision(
            &mut tx,
            Bump {
                amount: i64::MAX as u64,
            },
        )
        .unwrap_err();
        assert!(matches!(e, BumpError::Overflow { .. }), "{e}");
    }
}
