//! `wal verify`: decode every segment of a WAL directory, check the CRC chain, record
//! payloads and index continuity, classify the tail, and check the `.snap` files the
//! way etcd selects one at start-up. The report: [`crate::verify_report`].

use std::path::{Path, PathBuf};

use prost::Message;

use crate::decoder::{DecodeEnd, DecodedRecord, Tail, Visitor, decode_buffers, decode_segments};
use crate::error::{Damage, DamageReason, WalError};
use crate::proto::{HardState, Metadata, WalSnapshot, entry_header};
use crate::readall::{bad_payload, corrupt};
use crate::record::{LEGACY_MAX_RECORD_LEN, RecordType};
use crate::segment::{check_contiguous, list_segments};
use crate::segment_id::SegmentId;
use crate::snap::{list_snaps, read_snap};
use crate::storage::Fs;
pub use crate::verify_report::{RecordCounts, SegmentReport, SnapReport, VerifyReport, WalStatus};

struct VerifyVisitor {
    segments: Vec<SegmentReport>,
    counts: RecordCounts,
    metadata_raw: Option<Vec<u8>>,
    metadata: Option<Metadata>,
    first_index: Option<u64>,
    last_entry: Option<u64>,
    last_snapshot: Option<u64>,
    overwritten: u64,
    gaps: Vec<String>,
    hard_state: Option<HardState>,
    snapshots: Vec<WalSnapshot>,
    oversize: Vec<(SegmentId, u64, u64)>,
}

impl Visitor for VerifyVisitor {
    fn segment_start(&mut self, id: SegmentId, len: u64) {
        self.segments.push(SegmentReport {
            id,
            size: len,
            ..SegmentReport::default()
        });
    }

    fn record(&mut self, rec: &DecodedRecord<'_>) -> Result<(), Damage> {
        if let Some(s) = self.segments.last_mut() {
            s.records += 1;
            s.end_offset = rec.offset + rec.frame_len;
        }
        let pad = rec.frame_len - 8 - rec.rec_len;
        if rec.rec_len >= LEGACY_MAX_RECORD_LEN.saturating_sub(pad) {
            self.oversize.push((rec.segment, rec.offset, rec.rec_len));
        }
        let data = rec.record.data_or_empty();
        match RecordType::from_i64(rec.record.rec_type) {
            Some(RecordType::Entry) => {
                self.counts.entry += 1;
                let (_, _, index, _) =
                    entry_header(data).map_err(|e| bad_payload(rec, RecordType::Entry, e))?;
                match (self.last_entry, self.last_entry.max(self.last_snapshot)) {
                    (Some(l), _) if index <= l => self.overwritten += l - index + 1,
                    (_, Some(p)) if index > p.saturating_add(1) => self.gaps.push(format!(
                        "entry index {index} at {} offset {} follows index {p}",
                        rec.segment, rec.offset
                    )),
                    _ => {}
                }
                self.first_index.get_or_insert(index);
                self.last_entry = Some(index);
            }
            Some(RecordType::State) => {
                self.counts.state += 1;
                self.hard_state = Some(
                    HardState::decode(data).map_err(|e| bad_payload(rec, RecordType::State, e))?,
                );
            }
            Some(RecordType::Metadata) => {
                self.counts.metadata += 1;
                match &self.metadata_raw {
                    Some(m) if m.as_slice() != data => {
                        return Err(corrupt(rec, DamageReason::MetadataConflict));
                    }
                    Some(_) => {}
                    None => {
                        self.metadata = Some(
                            Metadata::decode(data)
                                .map_err(|e| bad_payload(rec, RecordType::Metadata, e))?,
                        );
                        self.metadata_raw = Some(data.to_vec());
                    }
                }
            }
            Some(RecordType::Crc) => self.counts.crc += 1,
            Some(RecordType::Snapshot) => {
                self.counts.snapshot += 1;
                let s = WalSnapshot::decode(data)
                    .map_err(|e| bad_payload(rec, RecordType::Snapshot, e))?;
                self.last_snapshot = Some(self.last_snapshot.unwrap_or(0).max(s.index));
                self.snapshots.push(s);
            }
            None => {
                return Err(corrupt(rec, DamageReason::UnknownType(rec.record.rec_type)));
            }
        }
        Ok(())
    }

    fn wants_stale_scan(&self) -> bool {
        true
    }

    fn segment_end(&mut self, _id: SegmentId, end_offset: u64, stale_at: Option<u64>) {
        if let Some(s) = self.segments.last_mut() {
            s.end_offset = end_offset;
            s.stale_bytes_at = stale_at;
        }
    }
}

/// Verifies a data directory: `<data_dir>/member/wal` and `<data_dir>/member/snap`.
pub fn verify_data_dir(fs: &dyn Fs, data_dir: &Path) -> Result<VerifyReport, WalError> {
    let member = data_dir.join("member");
    verify_wal_dir(fs, &member.join("wal"), Some(&member.join("snap")))
}

/// Verifies a WAL directory and, if given, the `.snap` files of `snap_dir`. Decoding
/// damage is reported in [`VerifyReport::status`]; only IO problems (unreadable
/// directory or segment) and a directory without segments are errors.
pub fn verify_wal_dir(
    fs: &dyn Fs,
    wal_dir: &Path,
    snap_dir: Option<&Path>,
) -> Result<VerifyReport, WalError> {
    let listing = list_segments(fs, wal_dir)?;
    let mut report = verify_inner(wal_dir, &listing.segments, listing.ignored, |v| {
        decode_segments(fs, wal_dir, &listing.segments, v)
    })?;
    if let Some(sd) = snap_dir {
        check_snaps(fs, sd, &mut report)?;
    }
    Ok(report)
}

/// Verifies in-memory segments (given in order), e.g. for fuzzing; no `.snap` checks.
pub fn verify_buffers(segments: &[(SegmentId, &[u8])]) -> VerifyReport {
    let ids: Vec<SegmentId> = segments.iter().map(|(id, _)| *id).collect();
    let dir = Path::new("");
    let r = verify_inner(dir, &ids, Vec::new(), |v| {
        decode_buffers(segments, v).map_err(|damage| WalError::Damaged {
            dir: PathBuf::new(),
            damage,
        })
    });
    match r {
        Ok(report) => report,
        // Only decoding runs here, and its damage is part of the report.
        Err(e) => VerifyReport {
            errors: vec![e.to_string()],
            ..VerifyReport::empty(dir)
        },
    }
}

fn verify_inner(
    wal_dir: &Path,
    segment_ids: &[SegmentId],
    ignored: Vec<String>,
    decode: impl FnOnce(&mut VerifyVisitor) -> Result<DecodeEnd, WalError>,
) -> Result<VerifyReport, WalError> {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    if let Err(e) = check_contiguous(wal_dir, segment_ids) {
        errors.push(e.to_string());
    }
    if let Some(first) = segment_ids.first()
        && first.seq != 0
    {
        warnings.push(format!(
            "WAL starts at segment {first} (older segments were purged); the CRC chain is checked from there"
        ));
    }
    let mut v = VerifyVisitor {
        segments: Vec::new(),
        counts: RecordCounts::default(),
        metadata_raw: None,
        metadata: None,
        first_index: None,
        last_entry: None,
        last_snapshot: None,
        overwritten: 0,
        gaps: Vec::new(),
        hard_state: None,
        snapshots: Vec::new(),
        oversize: Vec::new(),
    };
    let (status, end) = match decode(&mut v) {
        Ok(end) => match &end.tail {
            Tail::Clean => (WalStatus::Ok, Some(end)),
            Tail::Torn(d) => (WalStatus::Repairable(d.clone()), Some(end)),
        },
        Err(WalError::Damaged { damage, .. }) => {
            if let Some(s) = v.segments.iter_mut().find(|s| s.id == damage.segment) {
                s.end_offset = damage.offset;
            }
            (WalStatus::Corrupt(damage), None)
        }
        Err(e) => return Err(e),
    };
    if let WalStatus::Repairable(d) = &status
        && let Some(s) = v.segments.last_mut()
    {
        s.end_offset = d.offset;
    }
    if v.metadata.is_none() && !matches!(status, WalStatus::Corrupt(_)) {
        errors.push("no metadata record".into());
    }
    warnings.extend(v.gaps.iter().cloned());
    for s in &v.segments {
        if let Some(at) = s.stale_bytes_at {
            warnings.push(format!(
                "segment {} has non-zero bytes at offset {at} after its end marker at {}",
                s.id, s.end_offset
            ));
        }
    }
    for (seg, off, len) in &v.oversize {
        warnings.push(format!(
            "record of {len} bytes at {seg} offset {off}: etcd 3.4 and 3.5.0-3.5.4 refuse records of 10 MiB or more"
        ));
    }
    let last_index = match (v.last_entry, v.last_snapshot) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    if let (Some(hs), Some(last)) = (v.hard_state, last_index)
        && hs.commit > last
    {
        warnings.push(format!(
            "HardState commit {} is beyond the last index {last} (raft would refuse to start)",
            hs.commit
        ));
    }
    let mut segments = v.segments;
    // Segments after a corrupt one were not reached; list them with what is known.
    for id in segment_ids.iter().skip(segments.len()) {
        segments.push(SegmentReport {
            id: *id,
            ..SegmentReport::default()
        });
    }
    Ok(VerifyReport {
        wal_dir: wal_dir.to_path_buf(),
        snap_dir: None,
        segments,
        ignored_files: ignored,
        status,
        errors,
        warnings,
        counts: v.counts,
        metadata: v.metadata,
        first_index: v.first_index,
        last_index,
        overwritten_entries: v.overwritten,
        hard_state: v.hard_state,
        wal_snapshots: v.snapshots.iter().map(|s| (s.index, s.term)).collect(),
        oversize_records: v.oversize,
        snap_files: Vec::new(),
        selected_snap: None,
        end,
    })
}

/// Adds etcd's `.snap` selection to a report: newest first, must load and match a WAL
/// snapshot record with index ≤ HardState.commit.
fn check_snaps(fs: &dyn Fs, sd: &Path, report: &mut VerifyReport) -> Result<(), WalError> {
    report.snap_dir = Some(sd.to_path_buf());
    let commit = report.hard_state.map(|h| h.commit).unwrap_or(0);
    for name in list_snaps(fs, sd)? {
        let result = read_snap(fs, &sd.join(&name))
            .map(|s| {
                let m = s.metadata;
                (m.term, m.index, m.conf_state.voters)
            })
            .map_err(|e| e.to_string());
        let matches_wal = match &result {
            Ok((term, index, _)) => report
                .wal_snapshots
                .iter()
                .any(|(i, t)| *i <= commit && i == index && t == term),
            Err(_) => false,
        };
        if matches_wal && report.selected_snap.is_none() {
            report.selected_snap = Some(name.clone());
        }
        report.snap_files.push(SnapReport {
            name,
            result,
            matches_wal,
        });
    }
    Ok(())
}
