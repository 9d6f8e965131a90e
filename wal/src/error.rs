//! Typed errors. Every variant names the file (segment, `.snap`, directory) and, for
//! decoding problems, the byte offset of the frame.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::segment_id::SegmentId;

/// Whether etcd would repair a decoding problem itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DamageKind {
    /// A torn write at the end of the last segment (etcd's `io.ErrUnexpectedEOF`): etcd
    /// truncates the segment after the last good record and keeps a `.broken` copy.
    Torn,
    /// Damage etcd refuses to start with ("failed to read WAL, cannot be repaired").
    Corrupt,
}

/// What was wrong with a frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DamageReason {
    /// 1–7 bytes where a length word should be.
    ShortLengthWord { available: u64 },
    /// The length word promises more bytes than the file holds.
    ShortRecord { needed: u64, available: u64 },
    /// The frame payload is not a `walpb.Record`.
    Unmarshal(String),
    /// The record's CRC field does not match the rolling CRC-32C over its data.
    CrcMismatch { stored: u32, computed: u32 },
    /// A `crc` record (segment start) disagrees with the CRC carried from the previous
    /// records.
    CrcRecordMismatch { stored: u32, running: u32 },
    /// `walpb.Record.type` outside 1..=5 ("unexpected block type").
    UnknownType(i64),
    /// The record's data does not decode as the message its type announces (etcd panics
    /// in `mustUnmarshal*`).
    BadPayload {
        rec_type: &'static str,
        message: String,
    },
    /// A metadata record differs from the first one ("conflicting metadata found").
    MetadataConflict,
    /// An entry's index leaves a gap after the entries read so far
    /// (`ErrSliceOutOfRange`).
    IndexGap { index: u64, expected_at_most: u64 },
    /// A snapshot record with the start index but another term (`ErrSnapshotMismatch`).
    SnapshotMismatch {
        index: u64,
        expected_term: u64,
        found_term: u64,
    },
}

impl fmt::Display for DamageReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DamageReason::ShortLengthWord { available } => {
                write!(f, "length word cut short ({available} of 8 bytes)")
            }
            DamageReason::ShortRecord { needed, available } => write!(
                f,
                "record needs {needed} bytes after its length word, file has {available}"
            ),
            DamageReason::Unmarshal(m) => write!(f, "record does not decode: {m}"),
            DamageReason::CrcMismatch { stored, computed } => write!(
                f,
                "crc mismatch: record has {stored:08x}, data gives {computed:08x}"
            ),
            DamageReason::CrcRecordMismatch { stored, running } => write!(
                f,
                "crc record {stored:08x} does not continue the chain ({running:08x})"
            ),
            DamageReason::UnknownType(t) => write!(f, "unexpected record type {t}"),
            DamageReason::BadPayload { rec_type, message } => {
                write!(f, "{rec_type} record data does not decode: {message}")
            }
            DamageReason::MetadataConflict => write!(f, "conflicting metadata record"),
            DamageReason::IndexGap {
                index,
                expected_at_most,
            } => write!(
                f,
                "entry index {index} leaves a gap (next index at most {expected_at_most})"
            ),
            DamageReason::SnapshotMismatch {
                index,
                expected_term,
                found_term,
            } => write!(
                f,
                "snapshot record at index {index} has term {found_term}, expected {expected_term}"
            ),
        }
    }
}

/// A decoding problem located in a segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damage {
    pub segment: SegmentId,
    /// File offset of the frame (its length word).
    pub offset: u64,
    pub kind: DamageKind,
    pub reason: DamageReason,
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            DamageKind::Torn => "torn write (repairable)",
            DamageKind::Corrupt => "corrupt",
        };
        write!(
            f,
            "{kind}: segment {} offset {} (0x{:x}): {}",
            self.segment, self.offset, self.offset, self.reason
        )
    }
}

/// Errors of the `wal` crate.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: no WAL segment (*.wal)", dir.display())]
    NoSegments { dir: PathBuf },
    #[error("{}: no WAL segment starts at or before index {index}", dir.display())]
    NoSegmentForIndex { dir: PathBuf, index: u64 },
    #[error("{}: WAL segments not contiguous: {before} then {after}", dir.display())]
    SequenceGap {
        dir: PathBuf,
        before: SegmentId,
        after: SegmentId,
    },
    #[error("{}: {damage}", dir.display())]
    Damaged { dir: PathBuf, damage: Damage },
    #[error("{}: no snapshot record with index {index} and term {term}", dir.display())]
    SnapshotNotFound { dir: PathBuf, index: u64, term: u64 },
    #[error("{}: WAL has no metadata record", dir.display())]
    NoMetadata { dir: PathBuf },
    #[error("{}: already exists", path.display())]
    Exists { path: PathBuf },
    #[error("{}: {kind}", path.display())]
    Snap { path: PathBuf, kind: SnapErrorKind },
    #[error("{}: no usable .snap file", dir.display())]
    NoSnapshot { dir: PathBuf },
    #[error("invalid membership: {0}")]
    Membership(String),
    #[error("{}: {what}", path.display())]
    Invalid { path: PathBuf, what: String },
}

/// Why a `.snap` file was rejected (etcd: `ErrEmptySnapshot`, `ErrCRCMismatch`, decode
/// errors).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SnapErrorKind {
    #[error("empty snapshot (no data or crc 0)")]
    Empty,
    #[error("crc mismatch: file says {stored:08x}, data gives {computed:08x}")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("does not decode: {0}")]
    Decode(String),
    #[error("file name {name} does not match metadata term {term} index {index}")]
    NameMismatch { name: String, term: u64, index: u64 },
}

impl WalError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        WalError::Io {
            path: path.into(),
            source,
        }
    }

    /// The decoding damage, if this error is one.
    pub fn damage(&self) -> Option<&Damage> {
        match self {
            WalError::Damaged { damage, .. } => Some(damage),
            _ => None,
        }
    }
}
