//! What etcd loads from a member directory at start-up: the newest `.snap` that matches
//! a committed WAL snapshot record, then the WAL read from that snapshot (`ReadAll`).
//! Read-only: a torn tail is reported, not repaired (see [`crate::repair`]).

use std::path::{Path, PathBuf};

use crate::error::WalError;
use crate::proto::{Entry, Snapshot};
use crate::readall::{WalContents, read_all, valid_snapshot_entries};
use crate::snap::{RejectedSnap, load_newest_available};
use crate::storage::Fs;

/// A member's persisted raft state.
#[derive(Debug)]
pub struct MemberState {
    pub wal_dir: PathBuf,
    pub snap_dir: PathBuf,
    /// The `.snap` etcd starts from, if any.
    pub snapshot: Option<(String, Snapshot)>,
    /// `.snap` files that failed to load.
    pub rejected_snaps: Vec<RejectedSnap>,
    /// `.snap` files that load but match no committed WAL snapshot record.
    pub unmatched_snaps: Vec<String>,
    /// (index, term) the WAL is read from: the snapshot's, or (0, 0).
    pub start_index: u64,
    pub start_term: u64,
    pub wal: WalContents,
}

impl MemberState {
    /// HardState.commit.
    pub fn committed_index(&self) -> u64 {
        self.wal.hard_state.commit
    }

    /// Index of the last entry (or the start index when there is none).
    pub fn last_index(&self) -> u64 {
        self.wal
            .entries
            .last()
            .map(|e| e.index)
            .unwrap_or(self.start_index)
    }

    /// raft refuses to start unless `start index ≤ commit ≤ last index`.
    pub fn commit_in_range(&self) -> bool {
        (self.start_index..=self.last_index()).contains(&self.committed_index())
    }

    /// Entries after the snapshot.
    pub fn entries(&self) -> &[Entry] {
        &self.wal.entries
    }

    /// Committed entries after the snapshot (etcd applies these on start).
    pub fn committed_entries(&self) -> impl Iterator<Item = &Entry> {
        self.wal.committed_entries()
    }
}

/// Loads `<data_dir>/member/{wal,snap}`.
pub fn load_member(fs: &dyn Fs, data_dir: &Path) -> Result<MemberState, WalError> {
    let member = data_dir.join("member");
    load_member_dirs(fs, &member.join("wal"), &member.join("snap"))
}

/// Loads a member whose WAL lives in `wal_dir` (etcd's `--wal-dir`) and snapshots in
/// `snap_dir`.
pub fn load_member_dirs(
    fs: &dyn Fs,
    wal_dir: &Path,
    snap_dir: &Path,
) -> Result<MemberState, WalError> {
    let wal_snaps = valid_snapshot_entries(fs, wal_dir)?;
    let sel = load_newest_available(fs, snap_dir, &wal_snaps)?;
    let (start_index, start_term) = sel
        .chosen
        .as_ref()
        .map(|(_, s)| (s.metadata.index, s.metadata.term))
        .unwrap_or((0, 0));
    let wal = read_all(fs, wal_dir, start_index, start_term)?;
    Ok(MemberState {
        wal_dir: wal_dir.to_path_buf(),
        snap_dir: snap_dir.to_path_buf(),
        snapshot: sel.chosen,
        rejected_snaps: sel.rejected,
        unmatched_snaps: sel.unmatched,
        start_index,
        start_term,
        wal,
    })
}
