//! `wal verify`: decode every segment of a WAL directory, check the CRC chain, record
//! payloads and index continuity, classify the tail, and check the `.snap` files the
//! way etcd selects one at start-up. The report is a plain struct (plus a JSON
//! rendering) for the CLI.

use std::path::{Path, PathBuf};

use prost::Message;

use crate::decoder::{DecodeEnd, DecodedRecord, Tail, Visitor, decode_buffers, decode_segments};
use crate::error::{Damage, DamageKind, DamageReason, WalError};
use crate::gojson::quote;
use crate::proto::{HardState, Metadata, WalSnapshot, entry_header};
use crate::readall::{bad_payload, corrupt};
use crate::record::{LEGACY_MAX_RECORD_LEN, RecordType};
use crate::segment::{check_contiguous, list_segments};
use crate::segment_id::SegmentId;
use crate::snap::{list_snaps, read_snap};
use crate::storage::Fs;

/// Per-segment findings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SegmentReport {
    pub id: SegmentId,
    /// File size.
    pub size: u64,
    pub records: u64,
    /// Offset after the last good record (the end marker, EOF or the damaged frame).
    pub end_offset: u64,
    /// First non-zero byte after a clean end marker. etcd ignores such bytes (and zeroes
    /// them in the last segment when it opens the WAL for writing).
    pub stale_bytes_at: Option<u64>,
}

/// Overall state of the WAL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WalStatus {
    /// Every segment decodes to a clean end.
    Ok,
    /// A torn write at the end of the last segment: etcd (or `repair`) truncates it.
    Repairable(Damage),
    /// Damage etcd cannot recover from.
    Corrupt(Damage),
}

/// Record counts by type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordCounts {
    pub metadata: u64,
    pub entry: u64,
    pub state: u64,
    pub crc: u64,
    pub snapshot: u64,
}

/// One `.snap` file as etcd would see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapReport {
    pub name: String,
    /// `(term, index, voters)` of a file that loads, or why it does not.
    pub result: Result<(u64, u64, Vec<u64>), String>,
    /// Matches a WAL snapshot record with index ≤ HardState.commit.
    pub matches_wal: bool,
}

/// The result of `wal verify`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    pub wal_dir: PathBuf,
    pub snap_dir: Option<PathBuf>,
    pub segments: Vec<SegmentReport>,
    /// Files etcd ignores in the WAL directory (not `*.wal`, not `*.tmp`).
    pub ignored_files: Vec<String>,
    pub status: WalStatus,
    /// Structural problems besides decoding (missing metadata, segment sequence gap).
    pub errors: Vec<String>,
    /// Things etcd tolerates but that deserve a look.
    pub warnings: Vec<String>,
    pub counts: RecordCounts,
    pub metadata: Option<Metadata>,
    pub first_index: Option<u64>,
    pub last_index: Option<u64>,
    /// Entries that replaced an earlier entry with the same or a higher index.
    pub overwritten_entries: u64,
    pub hard_state: Option<HardState>,
    /// Snapshot records as `(index, term)`, in WAL order.
    pub wal_snapshots: Vec<(u64, u64)>,
    /// Records ≥ 10 MiB that etcd 3.4 and ≤ 3.5.4 refuse: `(segment, offset, length)`.
    pub oversize_records: Vec<(SegmentId, u64, u64)>,
    pub snap_files: Vec<SnapReport>,
    /// The `.snap` etcd would start from (`None`: replay the WAL from the beginning).
    pub selected_snap: Option<String>,
    /// Where decoding ended.
    pub end: Option<DecodeEnd>,
}

impl VerifyReport {
    fn empty(wal_dir: &Path) -> VerifyReport {
        VerifyReport {
            wal_dir: wal_dir.to_path_buf(),
            snap_dir: None,
            segments: Vec::new(),
            ignored_files: Vec::new(),
            status: WalStatus::Ok,
            errors: Vec::new(),
            warnings: Vec::new(),
            counts: RecordCounts::default(),
            metadata: None,
            first_index: None,
            last_index: None,
            overwritten_entries: 0,
            hard_state: None,
            wal_snapshots: Vec::new(),
            oversize_records: Vec::new(),
            snap_files: Vec::new(),
            selected_snap: None,
            end: None,
        }
    }

    /// No damage and no structural error (a repairable tail counts as not OK).
    pub fn is_ok(&self) -> bool {
        self.status == WalStatus::Ok && self.errors.is_empty()
    }

    /// Not corrupt: either OK or only a repairable tail.
    pub fn is_usable(&self) -> bool {
        !matches!(self.status, WalStatus::Corrupt(_)) && self.errors.is_empty()
    }
}

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

fn damage_json(d: &Damage) -> String {
    format!(
        "{{\"kind\":\"{}\",\"segment\":{},\"offset\":{},\"reason\":{}}}",
        match d.kind {
            DamageKind::Torn => "torn",
            DamageKind::Corrupt => "corrupt",
        },
        quote(&d.segment.file_name()),
        d.offset,
        quote(&d.reason.to_string())
    )
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|x| x.to_string()).unwrap_or_else(|| "null".into())
}

fn strings(items: &[String]) -> String {
    let v: Vec<String> = items.iter().map(|s| quote(s)).collect();
    format!("[{}]", v.join(","))
}

impl VerifyReport {
    /// One JSON object (IDs as lower-case hex strings, as etcd prints them).
    pub fn to_json(&self) -> String {
        let status = match &self.status {
            WalStatus::Ok => "\"ok\"".to_string(),
            WalStatus::Repairable(_) => "\"repairable\"".to_string(),
            WalStatus::Corrupt(_) => "\"corrupt\"".to_string(),
        };
        let damage = match &self.status {
            WalStatus::Ok => "null".to_string(),
            WalStatus::Repairable(d) | WalStatus::Corrupt(d) => damage_json(d),
        };
        let segs: Vec<String> = self
            .segments
            .iter()
            .map(|s| {
                format!(
                    "{{\"name\":{},\"seq\":{},\"index\":{},\"size\":{},\"records\":{},\"end_offset\":{},\"stale_bytes_at\":{}}}",
                    quote(&s.id.file_name()),
                    s.id.seq,
                    s.id.index,
                    s.size,
                    s.records,
                    s.end_offset,
                    opt(s.stale_bytes_at)
                )
            })
            .collect();
        let snaps: Vec<String> = self
            .snap_files
            .iter()
            .map(|s| match &s.result {
                Ok((term, index, voters)) => {
                    let v: Vec<String> = voters.iter().map(|id| format!("\"{id:x}\"")).collect();
                    format!(
                        "{{\"name\":{},\"ok\":true,\"term\":{term},\"index\":{index},\"voters\":[{}],\"matches_wal\":{}}}",
                        quote(&s.name),
                        v.join(","),
                        s.matches_wal
                    )
                }
                Err(e) => format!(
                    "{{\"name\":{},\"ok\":false,\"error\":{},\"matches_wal\":false}}",
                    quote(&s.name),
                    quote(e)
                ),
            })
            .collect();
        let hs = self
            .hard_state
            .map(|h| {
                format!(
                    "{{\"term\":{},\"vote\":\"{:x}\",\"commit\":{}}}",
                    h.term, h.vote, h.commit
                )
            })
            .unwrap_or_else(|| "null".into());
        let md = self
            .metadata
            .map(|m| {
                format!(
                    "{{\"node_id\":\"{:x}\",\"cluster_id\":\"{:x}\"}}",
                    m.node_id, m.cluster_id
                )
            })
            .unwrap_or_else(|| "null".into());
        let wsn: Vec<String> = self
            .wal_snapshots
            .iter()
            .map(|(i, t)| format!("{{\"index\":{i},\"term\":{t}}}"))
            .collect();
        let c = &self.counts;
        format!(
            concat!(
                "{{\"ok\":{},\"status\":{},\"damage\":{},\"wal_dir\":{},\"snap_dir\":{},",
                "\"segments\":[{}],\"ignored_files\":{},\"errors\":{},\"warnings\":{},",
                "\"records\":{{\"metadata\":{},\"entry\":{},\"state\":{},\"crc\":{},\"snapshot\":{}}},",
                "\"metadata\":{},\"first_index\":{},\"last_index\":{},\"overwritten_entries\":{},",
                "\"hard_state\":{},\"wal_snapshots\":[{}],\"snap_files\":[{}],\"selected_snap\":{}}}"
            ),
            self.is_ok(),
            status,
            damage,
            quote(&self.wal_dir.to_string_lossy()),
            self.snap_dir
                .as_ref()
                .map(|p| quote(&p.to_string_lossy()))
                .unwrap_or_else(|| "null".into()),
            segs.join(","),
            strings(&self.ignored_files),
            strings(&self.errors),
            strings(&self.warnings),
            c.metadata,
            c.entry,
            c.state,
            c.crc,
            c.snapshot,
            md,
            opt(self.first_index),
            opt(self.last_index),
            self.overwritten_entries,
            hs,
            wsn.join(","),
            snaps.join(","),
            self.selected_snap
                .as_ref()
                .map(|s| quote(s))
                .unwrap_or_else(|| "null".into()),
        )
    }

    /// Human-readable summary, one finding per line.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let status = match &self.status {
            WalStatus::Ok => "OK".to_string(),
            WalStatus::Repairable(d) | WalStatus::Corrupt(d) => d.to_string(),
        };
        out.push_str(&format!("wal dir: {}\n", self.wal_dir.display()));
        out.push_str(&format!("status: {status}\n"));
        for s in &self.segments {
            out.push_str(&format!(
                "segment {}: {} bytes, {} records, end at {}\n",
                s.id, s.size, s.records, s.end_offset
            ));
        }
        let c = &self.counts;
        out.push_str(&format!(
            "records: {} metadata, {} entry, {} state, {} crc, {} snapshot\n",
            c.metadata, c.entry, c.state, c.crc, c.snapshot
        ));
        if let Some(m) = self.metadata {
            out.push_str(&format!(
                "member {:x} cluster {:x}\n",
                m.node_id, m.cluster_id
            ));
        }
        if let (Some(a), Some(b)) = (self.first_index, self.last_index) {
            out.push_str(&format!("entries: index {a}..={b}\n"));
        }
        if let Some(h) = self.hard_state {
            out.push_str(&format!(
                "hard state: term {} vote {:x} commit {}\n",
                h.term, h.vote, h.commit
            ));
        }
        for s in &self.snap_files {
            match &s.result {
                Ok((t, i, _)) => out.push_str(&format!(
                    "snap {}: term {t} index {i}{}\n",
                    s.name,
                    if s.matches_wal {
                        ""
                    } else {
                        " (no matching WAL snapshot record)"
                    }
                )),
                Err(e) => out.push_str(&format!("snap {}: {e}\n", s.name)),
            }
        }
        match &self.selected_snap {
            Some(s) => out.push_str(&format!("etcd would start from {s}\n")),
            None if self.snap_dir.is_some() => {
                out.push_str("etcd would replay the WAL from the beginning (no usable .snap)\n")
            }
            None => {}
        }
        for f in &self.ignored_files {
            out.push_str(&format!("warning: ignored file in WAL directory: {f}\n"));
        }
        for w in &self.warnings {
            out.push_str(&format!("warning: {w}\n"));
        }
        for e in &self.errors {
            out.push_str(&format!("error: {e}\n"));
        }
        out
    }
}
