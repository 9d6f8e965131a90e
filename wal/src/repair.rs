//! Repairing a torn tail as etcd's `wal.Repair` does: decode the last segment on its
//! own; if it ends in a torn write, keep a copy as `<segment>.broken`, truncate the
//! segment after its last good record and fsync. Anything else is left untouched.

use std::path::{Path, PathBuf};

use crate::decoder::{DecodedRecord, Tail, Visitor, decode_segments};
use crate::error::{Damage, WalError};
use crate::segment::list_segments;
use crate::storage::Fs;

/// What [`repair`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RepairOutcome {
    /// The last segment ends cleanly; nothing was changed.
    Clean,
    /// The torn tail was cut off.
    Repaired {
        segment: PathBuf,
        /// New length of the segment (offset after the last good record).
        truncated_to: u64,
        /// The copy of the segment as it was.
        broken_copy: PathBuf,
        damage: Damage,
    },
}

struct Nothing;

impl Visitor for Nothing {
    fn record(&mut self, _rec: &DecodedRecord<'_>) -> Result<(), Damage> {
        Ok(())
    }
}

/// Repairs the last segment of `wal_dir`. Corruption (not a torn tail) is returned as
/// [`WalError::Damaged`] and nothing is written. If `<segment>.broken` exists already
/// (an earlier repair), the copy gets a numbered name instead of overwriting it.
pub fn repair(fs: &dyn Fs, wal_dir: &Path) -> Result<RepairOutcome, WalError> {
    let listing = list_segments(fs, wal_dir)?;
    let Some(&last) = listing.segments.last() else {
        return Err(WalError::NoSegments {
            dir: wal_dir.to_path_buf(),
        });
    };
    let path = wal_dir.join(last.file_name());
    // Like etcd, the last segment is decoded on its own (its crc record starts the chain).
    let end = decode_segments(fs, wal_dir, &[last], &mut Nothing)?;
    let Tail::Torn(damage) = end.tail else {
        return Ok(RepairOutcome::Clean);
    };
    let broken = free_broken_name(fs, &path)?;
    copy_file(fs, &path, &broken)?;
    fs.sync_dir(wal_dir).map_err(|e| WalError::io(wal_dir, e))?;
    let mut f = fs.open_rw(&path).map_err(|e| WalError::io(&path, e))?;
    f.set_len(end.last_valid_offset)
        .map_err(|e| WalError::io(&path, e))?;
    f.sync().map_err(|e| WalError::io(&path, e))?;
    Ok(RepairOutcome::Repaired {
        segment: path,
        truncated_to: end.last_valid_offset,
        broken_copy: broken,
        damage,
    })
}

fn free_broken_name(fs: &dyn Fs, segment: &Path) -> Result<PathBuf, WalError> {
    let base = segment.as_os_str().to_owned();
    for i in 0..1000u32 {
        let mut name = base.clone();
        if i == 0 {
            name.push(".broken");
        } else {
            name.push(format!(".broken.{i}"));
        }
        let p = PathBuf::from(name);
        if !fs.exists(&p).map_err(|e| WalError::io(&p, e))? {
            return Ok(p);
        }
    }
    Err(WalError::Exists {
        path: segment.with_extension("wal.broken"),
    })
}

/// Copies `from` to a new file `to` in chunks and fsyncs it.
fn copy_file(fs: &dyn Fs, from: &Path, to: &Path) -> Result<(), WalError> {
    let src = fs.open_read(from).map_err(|e| WalError::io(from, e))?;
    let len = src.len().map_err(|e| WalError::io(from, e))?;
    let mut dst = fs.create_new(to, 0o600).map_err(|e| WalError::io(to, e))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut off = 0u64;
    while off < len {
        let n = buf.len().min((len - off) as usize);
        let chunk = buf.get_mut(..n).unwrap_or_default();
        src.read_exact_at(chunk, off)
            .map_err(|e| WalError::io(from, e))?;
        dst.write_all_at(chunk, off)
            .map_err(|e| WalError::io(to, e))?;
        off += n as u64;
    }
    dst.sync().map_err(|e| WalError::io(to, e))
}
