//! What etcd applies from its WAL when it starts on a data directory: the entries after the
//! database's `consistent_index` (etcd's applier skips the ones at or below it,
//! `server/etcdserver/server.go` `applyEntries` / `shouldApplyV3`). A database whose WAL runs
//! ahead (a copy taken while etcd ran, a member stopped before its backend committed) is not
//! yet the key space etcd will serve: its HashKV differs once those entries are applied.

use std::path::{Path, PathBuf};

use bbolt::{Db, OpenOptions};
use wal::OsFs;
use wal::proto::EntryType;

use crate::datadir::Layout;
use crate::mvcc::buckets::META_BUCKET;

#[derive(Debug, thiserror::Error)]
pub enum WalAheadError {
    #[error("{}: {detail}", path.display())]
    Db { path: PathBuf, detail: String },
    #[error("WAL {}: {source}", path.display())]
    Wal {
        path: PathBuf,
        #[source]
        source: wal::WalError,
    },
}

/// The database's applied index and what the WAL holds past it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct WalAhead {
    pub wal_dir: PathBuf,
    /// `meta/consistent_index`: the last raft index applied to the database.
    pub consistent_index: u64,
    /// `HardState.commit` of the WAL.
    pub wal_commit: u64,
    pub wal_last_index: u64,
    /// Committed entries past `consistent_index` that change what HashKV hashes: puts,
    /// deletes, transactions, lease revocations (they delete the lease's keys) and
    /// compactions. etcd applies them when it starts.
    pub committed_changes: u64,
    /// Such entries the WAL holds past its commit index: applied when this member's log wins
    /// (always in a one-member cluster, whose leader commits its whole log).
    pub uncommitted_changes: u64,
}

impl WalAhead {
    /// Whether etcd, started on this directory, serves exactly the database's key space.
    pub fn in_step(&self) -> bool {
        self.committed_changes == 0 && self.uncommitted_changes == 0
    }
}

/// Reads the database's `consistent_index` and the WAL (`--wal-dir` or `member/wal`); `None`
/// when that WAL directory does not exist.
pub fn wal_ahead(layout: &Layout) -> Result<Option<WalAhead>, WalAheadError> {
    let wal_dir = layout.wal_dir();
    if !wal_dir.is_dir() {
        return Ok(None);
    }
    let consistent_index = consistent_index(&layout.db())?;
    let m = wal::load::load_member_dirs(&OsFs, &wal_dir, &layout.snap_dir()).map_err(|source| {
        WalAheadError::Wal {
            path: wal_dir.clone(),
            source,
        }
    })?;
    let commit = m.committed_index();
    let (mut committed, mut uncommitted) = (0, 0);
    for e in m.entries() {
        if e.index <= consistent_index
            || e.r#type != EntryType::EntryNormal as i32
            || !e.data.as_deref().is_some_and(changes_hashkv)
        {
            continue;
        }
        if e.index <= commit {
            committed += 1;
        } else {
            uncommitted += 1;
        }
    }
    Ok(Some(WalAhead {
        wal_dir,
        consistent_index,
        wal_commit: commit,
        wal_last_index: m.last_index(),
        committed_changes: committed,
        uncommitted_changes: uncommitted,
    }))
}

fn consistent_index(db: &Path) -> Result<u64, WalAheadError> {
    let err = |detail: String| WalAheadError::Db {
        path: db.to_path_buf(),
        detail,
    };
    let db_handle = Db::open(db, OpenOptions::read_only()).map_err(|e| err(e.to_string()))?;
    let tx = db_handle.begin_read();
    let meta = tx.bucket(META_BUCKET).map_err(|e| err(e.to_string()))?;
    let v = match &meta {
        Some(m) => m.get(b"consistent_index").map_err(|e| err(e.to_string()))?,
        None => None,
    };
    match v {
        // etcd treats a missing index as 0 (a database that never applied an entry).
        None => Ok(0),
        Some(v) => <[u8; 8]>::try_from(v).map(u64::from_be_bytes).map_err(|_| {
            err(format!(
                "meta/consistent_index has {} bytes, not 8",
                v.len()
            ))
        }),
    }
}

/// Whether an `InternalRaftRequest` (etcd `api/etcdserverpb/raft_internal.proto`) changes
/// what HashKV hashes: put (field 4), delete_range (5), txn (6), compaction (7),
/// lease_revoke (9). Unreadable data counts as a change.
fn changes_hashkv(data: &[u8]) -> bool {
    request_has_field(data, &[4, 5, 6, 7, 9])
}

/// Whether a protobuf message has a top-level field of one of these numbers (unreadable
/// data: yes, so that callers' counts stay upper bounds).
pub(crate) fn request_has_field(data: &[u8], fields: &[u64]) -> bool {
    let mut p = data;
    while !p.is_empty() {
        let Some((tag, rest)) = varint(p) else {
            return true;
        };
        if fields.contains(&(tag >> 3)) {
            return true;
        }
        p = match tag & 7 {
            0 => match varint(rest) {
                Some((_, r)) => r,
                None => return true,
            },
            1 => match rest.get(8..) {
                Some(r) => r,
                None => return true,
            },
            2 => match varint(rest) {
                Some((len, r)) => match usize::try_from(len).ok().and_then(|l| r.get(l..)) {
                    Some(r) => r,
                    None => return true,
                },
                None => return true,
            },
            5 => match rest.get(4..) {
                Some(r) => r,
                None => return true,
            },
            _ => return true,
        };
    }
    false
}

fn varint(p: &[u8]) -> Option<(u64, &[u8])> {
    let mut v = 0u64;
    for (i, b) in p.iter().enumerate().take(10) {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((v, p.get(i + 1..)?));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_that_change_the_hash() {
        // put {key: "a"}: field 4, length-delimited.
        assert!(changes_hashkv(&[0x22, 0x03, 0x0a, 0x01, b'a']));
        // compaction {revision: 5}: field 7.
        assert!(changes_hashkv(&[0x3a, 0x02, 0x08, 0x05]));
        // header only (field 100, varint-length message) and a lease grant (field 8).
        assert!(!changes_hashkv(&[0xa2, 0x06, 0x02, 0x08, 0x01]));
        assert!(!changes_hashkv(&[0x42, 0x02, 0x08, 0x0a]));
        // Truncated: counted.
        assert!(changes_hashkv(&[0x42, 0x09, 0x08]));
        assert!(!changes_hashkv(&[]));
    }
}
