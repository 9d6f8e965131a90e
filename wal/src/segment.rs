//! A WAL directory's segments: the listing and selection rules of etcd's `readWALNames` /
//! `selectWALFiles`. Segment names: [`crate::segment_id`].

use std::path::Path;

use crate::error::WalError;
use crate::segment_id::SegmentId;
use crate::storage::Fs;

/// etcd's `SegmentSizeBytes`: the cut threshold and preallocation size (decimal MB).
pub const SEGMENT_SIZE_BYTES: u64 = 64 * 1000 * 1000;

/// What a WAL directory holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WalListing {
    /// Segments sorted by name (= by sequence number).
    pub segments: Vec<SegmentId>,
    /// Names etcd ignores with a warning ("ignored file in WAL directory").
    pub ignored: Vec<String>,
    /// `*.tmp` names (preallocated next segments) etcd ignores silently.
    pub tmp: Vec<String>,
}

/// Lists `wal_dir`. Fails with [`WalError::NoSegments`] when there is no `*.wal` file
/// (etcd then treats the member as new and bootstraps a fresh cluster).
pub fn list_segments(fs: &dyn Fs, wal_dir: &Path) -> Result<WalListing, WalError> {
    let names = fs.read_dir(wal_dir).map_err(|e| WalError::io(wal_dir, e))?;
    let mut out = WalListing::default();
    for name in names {
        if let Some(id) = SegmentId::parse(&name) {
            out.segments.push(id);
        } else if name.ends_with(".tmp") {
            out.tmp.push(name);
        } else {
            out.ignored.push(name);
        }
    }
    out.segments.sort();
    out.ignored.sort();
    out.tmp.sort();
    if out.segments.is_empty() {
        return Err(WalError::NoSegments {
            dir: wal_dir.to_path_buf(),
        });
    }
    Ok(out)
}

/// Position of the last segment whose first index is ≤ `index` (etcd's `searchIndex`).
pub fn search_index(segments: &[SegmentId], index: u64) -> Option<usize> {
    segments.iter().rposition(|s| index >= s.index)
}

/// The segments etcd opens to read from a snapshot at `index`: the last one starting at
/// or before it and all later ones, whose sequence numbers must be contiguous.
pub fn select_segments(
    wal_dir: &Path,
    segments: &[SegmentId],
    index: u64,
) -> Result<Vec<SegmentId>, WalError> {
    let start = search_index(segments, index).ok_or_else(|| WalError::NoSegmentForIndex {
        dir: wal_dir.to_path_buf(),
        index,
    })?;
    let chosen = segments.get(start..).unwrap_or_default();
    check_contiguous(wal_dir, chosen)?;
    Ok(chosen.to_vec())
}

/// etcd's `isValidSeq`.
pub fn check_contiguous(wal_dir: &Path, segments: &[SegmentId]) -> Result<(), WalError> {
    for w in segments.windows(2) {
        if let [a, b] = w
            && a.seq.checked_add(1) != Some(b.seq)
        {
            return Err(WalError::SequenceGap {
                dir: wal_dir.to_path_buf(),
                before: *a,
                after: *b,
            });
        }
    }
    Ok(())
}
