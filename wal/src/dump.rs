//! `wal dump`: every record with its segment, offset, type and decoded content.

use std::fmt::Write as _;
use std::path::Path;

use prost::Message;

use crate::decoder::{DecodeEnd, Tail, WalIter, WalRecord};
use crate::error::WalError;
use crate::proto::{
    ConfChange, ConfChangeType, Entry, EntryType, HardState, Metadata, WalSnapshot,
};
use crate::record::RecordType;
use crate::segment::list_segments;
use crate::storage::Fs;

/// A record's payload, decoded by type.
#[derive(Clone, Debug, PartialEq)]
pub enum RecordContent {
    Metadata(Metadata),
    Entry {
        entry: Entry,
        /// The ConfChange carried by an `EntryConfChange` entry.
        conf_change: Option<ConfChange>,
    },
    State(HardState),
    Crc,
    Snapshot(WalSnapshot),
    /// A type etcd does not know, or data that does not decode.
    Undecodable {
        rec_type: i64,
        error: String,
    },
}

/// Decodes a record's data according to its type.
pub fn decode_content(rec_type: i64, data: &[u8]) -> RecordContent {
    let bad = |e: prost::DecodeError| RecordContent::Undecodable {
        rec_type,
        error: e.to_string(),
    };
    match RecordType::from_i64(rec_type) {
        Some(RecordType::Metadata) => {
            Metadata::decode(data).map_or_else(bad, RecordContent::Metadata)
        }
        Some(RecordType::Entry) => match Entry::decode(data) {
            Ok(entry) => {
                let conf_change = (entry.r#type == EntryType::EntryConfChange as i32)
                    .then(|| ConfChange::decode(entry.data.as_deref().unwrap_or_default()).ok())
                    .flatten();
                RecordContent::Entry { entry, conf_change }
            }
            Err(e) => bad(e),
        },
        Some(RecordType::State) => HardState::decode(data).map_or_else(bad, RecordContent::State),
        Some(RecordType::Crc) => RecordContent::Crc,
        Some(RecordType::Snapshot) => {
            WalSnapshot::decode(data).map_or_else(bad, RecordContent::Snapshot)
        }
        None => RecordContent::Undecodable {
            rec_type,
            error: "unknown record type".into(),
        },
    }
}

fn ids(v: &[u64]) -> String {
    let s: Vec<String> = v.iter().map(|id| format!("{id:x}")).collect();
    format!("[{}]", s.join(","))
}

/// Printable text with non-printable bytes escaped (`\xNN`), cut at `max` bytes.
fn printable(b: &[u8], max: usize) -> String {
    let mut s = String::new();
    for &c in b.iter().take(max) {
        match c {
            b'"' | b'\\' => {
                s.push('\\');
                s.push(c as char);
            }
            0x20..=0x7e => s.push(c as char),
            _ => {
                let _ = write!(s, "\\x{c:02x}");
            }
        }
    }
    if b.len() > max {
        s.push_str("...");
    }
    s
}

/// One line describing a record: `<segment> <offset> <type> crc=<crc> <content>`.
pub fn describe(rec: &WalRecord) -> String {
    let type_name = RecordType::from_i64(rec.rec_type)
        .map(|t| t.name().to_string())
        .unwrap_or_else(|| format!("type{}", rec.rec_type));
    let mut s = format!(
        "{} {:#010x} {:<8} crc={:08x}",
        rec.segment, rec.offset, type_name, rec.crc
    );
    let data = rec.data.as_deref().unwrap_or_default();
    match decode_content(rec.rec_type, data) {
        RecordContent::Metadata(m) => {
            let _ = write!(s, " node_id={:x} cluster_id={:x}", m.node_id, m.cluster_id);
        }
        RecordContent::Entry { entry, conf_change } => {
            let t = EntryType::try_from(entry.r#type)
                .map(|t| format!("{t:?}"))
                .unwrap_or_else(|_| entry.r#type.to_string());
            let _ = write!(
                s,
                " term={} index={} type={} data_len={}",
                entry.term,
                entry.index,
                t.trim_start_matches("Entry"),
                entry.data.as_ref().map_or(0, Vec::len)
            );
            if let Some(cc) = conf_change {
                let ct = ConfChangeType::try_from(cc.r#type)
                    .map(|t| format!("{t:?}"))
                    .unwrap_or_else(|_| cc.r#type.to_string());
                let _ = write!(
                    s,
                    " conf_change={{id={} type={} node_id={:x} context=\"{}\"}}",
                    cc.id,
                    ct.trim_start_matches("ConfChange"),
                    cc.node_id,
                    printable(cc.context.as_deref().unwrap_or_default(), 512)
                );
            }
        }
        RecordContent::State(h) => {
            let _ = write!(s, " term={} vote={:x} commit={}", h.term, h.vote, h.commit);
        }
        RecordContent::Crc => {}
        RecordContent::Snapshot(w) => {
            let _ = write!(s, " index={} term={}", w.index, w.term);
            if let Some(cs) = w.conf_state {
                let _ = write!(
                    s,
                    " conf_state={{voters={} learners={} voters_outgoing={} learners_next={} auto_leave={}}}",
                    ids(&cs.voters),
                    ids(&cs.learners),
                    ids(&cs.voters_outgoing),
                    ids(&cs.learners_next),
                    cs.auto_leave
                );
            }
        }
        RecordContent::Undecodable { error, .. } => {
            let _ = write!(s, " undecodable data_len={} error={error:?}", data.len());
        }
    }
    s
}

/// Iterates over all records of `wal_dir`, in segment order.
pub fn records<'f>(fs: &'f dyn Fs, wal_dir: &Path) -> Result<WalIter<'f>, WalError> {
    let listing = list_segments(fs, wal_dir)?;
    Ok(WalIter::new(fs, wal_dir, listing.segments))
}

/// Writes one [`describe`] line per record, then a line telling how the WAL ends.
/// Returns how decoding ended; corruption is written as a final line and returned as
/// the error.
pub fn dump(
    fs: &dyn Fs,
    wal_dir: &Path,
    out: &mut dyn std::io::Write,
) -> Result<DecodeEnd, WalError> {
    let io = |e| WalError::io("<output>", e);
    let mut it = records(fs, wal_dir)?;
    for r in &mut it {
        match r {
            Ok(rec) => writeln!(out, "{}", describe(&rec)).map_err(io)?,
            Err(e) => {
                writeln!(out, "error: {e}").map_err(io)?;
                return Err(e);
            }
        }
    }
    let end = it.end().cloned().ok_or_else(|| WalError::NoSegments {
        dir: wal_dir.to_path_buf(),
    })?;
    match &end.tail {
        Tail::Clean => writeln!(
            out,
            "end: clean at {} offset {}",
            end.last_segment, end.last_valid_offset
        ),
        Tail::Torn(d) => writeln!(out, "end: {d}"),
    }
    .map_err(io)?;
    Ok(end)
}
