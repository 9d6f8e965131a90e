//! etcd's WAL read paths with their semantics: `ReadAll` (entries after a snapshot, the
//! last HardState, equal metadata, the snapshot record found) and
//! `ValidSnapshotEntries` (snapshot records covered by the commit index).

use std::path::Path;

use prost::Message;

use crate::decoder::{DecodeEnd, DecodedRecord, Visitor, decode_segments};
use crate::error::{Damage, DamageKind, DamageReason, WalError};
use crate::proto::{Entry, HardState, Metadata, WalSnapshot};
use crate::record::RecordType;
use crate::segment::{list_segments, select_segments};
use crate::segment_id::SegmentId;
use crate::storage::Fs;

/// What `ReadAll` returns, plus where decoding ended.
#[derive(Clone, Debug)]
pub struct WalContents {
    /// The segments that were read.
    pub segments: Vec<SegmentId>,
    /// Raw metadata record data (all metadata records are byte-equal).
    pub metadata_raw: Vec<u8>,
    pub metadata: Metadata,
    /// The last HardState record (zero if none).
    pub hard_state: HardState,
    /// Entries with index > the start index, later records overriding earlier ones
    /// with the same index (uncommitted entries replaced after a leader change).
    pub entries: Vec<Entry>,
    /// Clean end or a torn tail (etcd would repair it; its record is not included).
    pub end: DecodeEnd,
}

impl WalContents {
    /// HardState.commit: the last index the cluster committed.
    pub fn committed_index(&self) -> u64 {
        self.hard_state.commit
    }

    /// Entries with index ≤ the commit index (what etcd applies after start).
    pub fn committed_entries(&self) -> impl Iterator<Item = &Entry> {
        let commit = self.hard_state.commit;
        self.entries.iter().filter(move |e| e.index <= commit)
    }
}

pub(crate) fn bad_payload(
    rec: &DecodedRecord<'_>,
    t: RecordType,
    e: impl std::fmt::Display,
) -> Damage {
    Damage {
        segment: rec.segment,
        offset: rec.offset,
        kind: DamageKind::Corrupt,
        reason: DamageReason::BadPayload {
            rec_type: t.name(),
            message: e.to_string(),
        },
    }
}

pub(crate) fn corrupt(rec: &DecodedRecord<'_>, reason: DamageReason) -> Damage {
    Damage {
        segment: rec.segment,
        offset: rec.offset,
        kind: DamageKind::Corrupt,
        reason,
    }
}

struct ReadAllVisitor {
    start: WalSnapshot,
    metadata: Option<Vec<u8>>,
    state: HardState,
    entries: Vec<Entry>,
    found: bool,
}

impl Visitor for ReadAllVisitor {
    fn record(&mut self, rec: &DecodedRecord<'_>) -> Result<(), Damage> {
        let data = rec.record.data_or_empty();
        match RecordType::from_i64(rec.record.rec_type) {
            Some(RecordType::Entry) => {
                let e = Entry::decode(data).map_err(|e| bad_payload(rec, RecordType::Entry, e))?;
                if e.index > self.start.index {
                    let up = e.index - self.start.index - 1;
                    if up > self.entries.len() as u64 {
                        return Err(corrupt(
                            rec,
                            DamageReason::IndexGap {
                                index: e.index,
                                expected_at_most: self.start.index + self.entries.len() as u64 + 1,
                            },
                        ));
                    }
                    self.entries.truncate(up as usize);
                    self.entries.push(e);
                }
            }
            Some(RecordType::State) => {
                self.state =
                    HardState::decode(data).map_err(|e| bad_payload(rec, RecordType::State, e))?;
            }
            Some(RecordType::Metadata) => {
                if let Some(m) = &self.metadata
                    && m.as_slice() != data
                {
                    return Err(corrupt(rec, DamageReason::MetadataConflict));
                }
                self.metadata = Some(data.to_vec());
            }
            Some(RecordType::Crc) => {}
            Some(RecordType::Snapshot) => {
                let s = WalSnapshot::decode(data)
                    .map_err(|e| bad_payload(rec, RecordType::Snapshot, e))?;
                if s.index == self.start.index {
                    if s.term != self.start.term {
                        return Err(corrupt(
                            rec,
                            DamageReason::SnapshotMismatch {
                                index: s.index,
                                expected_term: self.start.term,
                                found_term: s.term,
                            },
                        ));
                    }
                    self.found = true;
                }
            }
            None => {
                return Err(corrupt(rec, DamageReason::UnknownType(rec.record.rec_type)));
            }
        }
        Ok(())
    }
}

/// etcd's `Open(snap)` + `ReadAll()`: reads the segments needed for a start at
/// (`index`, `term`) (`{0, 0}` = from the beginning). A torn tail is not an error here:
/// it is reported in [`WalContents::end`] and its record is left out, exactly what etcd
/// reads after repairing.
pub fn read_all(
    fs: &dyn Fs,
    wal_dir: &Path,
    index: u64,
    term: u64,
) -> Result<WalContents, WalError> {
    let listing = list_segments(fs, wal_dir)?;
    let segments = select_segments(wal_dir, &listing.segments, index)?;
    let mut v = ReadAllVisitor {
        start: WalSnapshot {
            index,
            term,
            conf_state: None,
        },
        metadata: None,
        state: HardState::default(),
        entries: Vec::new(),
        found: false,
    };
    let end = decode_segments(fs, wal_dir, &segments, &mut v)?;
    if !v.found {
        return Err(WalError::SnapshotNotFound {
            dir: wal_dir.to_path_buf(),
            index,
            term,
        });
    }
    let metadata_raw = v.metadata.ok_or_else(|| WalError::NoMetadata {
        dir: wal_dir.to_path_buf(),
    })?;
    let metadata = Metadata::decode(metadata_raw.as_slice()).map_err(|e| WalError::Invalid {
        path: wal_dir.to_path_buf(),
        what: format!("metadata record does not decode: {e}"),
    })?;
    Ok(WalContents {
        segments,
        metadata_raw,
        metadata,
        hard_state: v.state,
        entries: v.entries,
        end,
    })
}

struct SnapshotsVisitor {
    snaps: Vec<WalSnapshot>,
    state: HardState,
}

impl Visitor for SnapshotsVisitor {
    fn record(&mut self, rec: &DecodedRecord<'_>) -> Result<(), Damage> {
        let data = rec.record.data_or_empty();
        match RecordType::from_i64(rec.record.rec_type) {
            Some(RecordType::Snapshot) => self.snaps.push(
                WalSnapshot::decode(data).map_err(|e| bad_payload(rec, RecordType::Snapshot, e))?,
            ),
            Some(RecordType::State) => {
                self.state =
                    HardState::decode(data).map_err(|e| bad_payload(rec, RecordType::State, e))?
            }
            _ => {}
        }
        Ok(())
    }
}

/// etcd's `ValidSnapshotEntries`: every snapshot record in all segments whose index is
/// ≤ the last HardState's commit, in WAL order. A torn tail is tolerated.
pub fn valid_snapshot_entries(fs: &dyn Fs, wal_dir: &Path) -> Result<Vec<WalSnapshot>, WalError> {
    let listing = list_segments(fs, wal_dir)?;
    let mut v = SnapshotsVisitor {
        snaps: Vec::new(),
        state: HardState::default(),
    };
    decode_segments(fs, wal_dir, &listing.segments, &mut v)?;
    let commit = v.state.commit;
    v.snaps.retain(|s| s.index <= commit);
    Ok(v.snaps)
}
