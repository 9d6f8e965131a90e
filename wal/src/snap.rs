//! `.snap` files (`%016x-%016x.snap` = term, index): `snappb.snapshot{crc, data}` where
//! `data` is a marshalled `raftpb.Snapshot` and `crc` its CRC-32C. Reading follows etcd's
//! `snap.Read`; selection follows `LoadNewestAvailable`.

use std::path::{Path, PathBuf};

use prost::Message;

use crate::error::{SnapErrorKind, WalError};
use crate::proto::{SnapFile, Snapshot, WalSnapshot};
use crate::segment_id::parse_hex16;
use crate::storage::Fs;

/// Permission bits of a `.snap` file. etcd asks for 0666 and lets the umask narrow it; we
/// write 0600 like every other file of the data directory, so that a permissive umask never
/// makes the membership snapshot world-writable (etcd only needs the owner to read it).
pub const SNAP_FILE_MODE: u32 = 0o600;

pub fn snap_name(term: u64, index: u64) -> String {
    format!("{term:016x}-{index:016x}.snap")
}

/// `(term, index)` from a canonical `.snap` name.
pub fn parse_snap_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(".snap")?;
    let (a, b) = stem.split_once('-')?;
    Some((parse_hex16(a)?, parse_hex16(b)?))
}

/// The bytes of a `.snap` file for `snapshot`.
pub fn encode_snap(snapshot: &Snapshot) -> Vec<u8> {
    let data = snapshot.encode_to_vec();
    let file = SnapFile {
        crc: crc32c::crc32c(&data),
        data: Some(data),
    };
    file.encode_to_vec()
}

/// Decodes `.snap` file bytes with etcd's checks: empty file, empty data or crc 0 ⇒
/// empty snapshot; CRC-32C of data must match; data must be a `raftpb.Snapshot`.
pub fn decode_snap(bytes: &[u8]) -> Result<Snapshot, SnapErrorKind> {
    if bytes.is_empty() {
        return Err(SnapErrorKind::Empty);
    }
    let file = SnapFile::decode(bytes).map_err(|e| SnapErrorKind::Decode(e.to_string()))?;
    let data = file.data.unwrap_or_default();
    if data.is_empty() || file.crc == 0 {
        return Err(SnapErrorKind::Empty);
    }
    let computed = crc32c::crc32c(&data);
    if computed != file.crc {
        return Err(SnapErrorKind::CrcMismatch {
            stored: file.crc,
            computed,
        });
    }
    Snapshot::decode(data.as_slice()).map_err(|e| SnapErrorKind::Decode(e.to_string()))
}

/// Reads and checks one `.snap` file.
pub fn read_snap(fs: &dyn Fs, path: &Path) -> Result<Snapshot, WalError> {
    let bytes = fs.read_file(path).map_err(|e| WalError::io(path, e))?;
    decode_snap(&bytes).map_err(|kind| WalError::Snap {
        path: path.to_path_buf(),
        kind,
    })
}

/// Names ending in `.snap` in `snap_dir`, newest first (descending name order, as etcd
/// tries them). A missing directory has no snapshots.
pub fn list_snaps(fs: &dyn Fs, snap_dir: &Path) -> Result<Vec<String>, WalError> {
    let names = match fs.read_dir(snap_dir) {
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(WalError::io(snap_dir, e)),
    };
    let mut snaps: Vec<String> = names.into_iter().filter(|n| n.ends_with(".snap")).collect();
    snaps.sort_by(|a, b| b.cmp(a));
    Ok(snaps)
}

/// A `.snap` file etcd would skip, and why.
#[derive(Debug)]
pub struct RejectedSnap {
    pub name: String,
    pub error: WalError,
}

/// The outcome of etcd's snapshot selection.
#[derive(Debug, Default)]
pub struct SnapSelection {
    /// The chosen file and its snapshot; `None` = etcd replays the WAL from scratch.
    pub chosen: Option<(String, Snapshot)>,
    /// Files that failed to load (etcd renames these to `.broken` at start-up).
    pub rejected: Vec<RejectedSnap>,
    /// Files that loaded but match no usable WAL snapshot record.
    pub unmatched: Vec<String>,
}

/// etcd's `LoadNewestAvailable`: the newest `.snap` that loads and whose (term, index)
/// equals one of `wal_snaps` (from [`crate::valid_snapshot_entries`]). Read-only.
pub fn load_newest_available(
    fs: &dyn Fs,
    snap_dir: &Path,
    wal_snaps: &[WalSnapshot],
) -> Result<SnapSelection, WalError> {
    let mut sel = SnapSelection::default();
    for name in list_snaps(fs, snap_dir)? {
        let path = snap_dir.join(&name);
        match read_snap(fs, &path) {
            Ok(s) => {
                let m = &s.metadata;
                if wal_snaps
                    .iter()
                    .any(|w| w.term == m.term && w.index == m.index)
                {
                    sel.chosen = Some((name, s));
                    return Ok(sel);
                }
                sel.unmatched.push(name);
            }
            Err(error) => sel.rejected.push(RejectedSnap { name, error }),
        }
    }
    Ok(sel)
}

/// Writes `snapshot` as `<snap_dir>/<term>-<index>.snap`: temp file, fsync, rename,
/// fsync of the directory. Refuses to overwrite an existing file.
pub fn write_snap(fs: &dyn Fs, snap_dir: &Path, snapshot: &Snapshot) -> Result<PathBuf, WalError> {
    let name = snap_name(snapshot.metadata.term, snapshot.metadata.index);
    let path = snap_dir.join(&name);
    if fs.exists(&path).map_err(|e| WalError::io(&path, e))? {
        return Err(WalError::Exists { path });
    }
    // etcd deletes `tmp*` files in the snap directory at start-up, so a leftover from a
    // crash here is cleaned up by etcd itself.
    let tmp = snap_dir.join(format!("tmp-{name}.part"));
    let bytes = encode_snap(snapshot);
    let result = (|| {
        let _ = fs.remove_file(&tmp);
        let mut f = fs
            .create_new(&tmp, SNAP_FILE_MODE)
            .map_err(|e| WalError::io(&tmp, e))?;
        f.write_all_at(&bytes, 0)
            .map_err(|e| WalError::io(&tmp, e))?;
        f.sync().map_err(|e| WalError::io(&tmp, e))?;
        drop(f);
        fs.rename(&tmp, &path).map_err(|e| WalError::io(&path, e))?;
        fs.sync_dir(snap_dir).map_err(|e| WalError::io(snap_dir, e))
    })();
    if result.is_err() {
        let _ = fs.remove_file(&tmp);
    }
    result.map(|()| path)
}
