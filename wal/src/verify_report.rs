//! The report of `wal verify` (a plain struct for the CLI) and its renderings: one JSON
//! object, or text with one finding per line.

use std::path::{Path, PathBuf};

use crate::decoder::DecodeEnd;
use crate::error::{Damage, DamageKind};
use crate::gojson::quote;
use crate::proto::{HardState, Metadata};
use crate::segment_id::SegmentId;

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
    pub(crate) fn empty(wal_dir: &Path) -> VerifyReport {
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
