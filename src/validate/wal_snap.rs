//! The raft log: the WAL's CRC chain and the `.snap` files, what etcd loads from them at
//! start-up, a torn tail repaired when asked, and the committed writes above the database.

use std::path::Path;

use wal::proto::EntryType;
use wal::verify::WalStatus;
use wal::{DamageKind, OsFs, WalError};

use crate::datadir::Layout;

use super::options::Options;
use super::report::{Finding, Mode, Report, Verdict};

fn wal_error_finding(r: &mut Report, wal_dir: &Path, e: &WalError) {
    let (file, offset, verdict) = match e {
        WalError::Damaged { dir, damage } => (
            dir.join(damage.segment.file_name()),
            Some(damage.offset),
            if damage.kind == DamageKind::Torn {
                Verdict::Repairable
            } else {
                Verdict::Corrupt
            },
        ),
        _ => (wal_dir.to_path_buf(), None, Verdict::Corrupt),
    };
    r.add(Finding {
        check: "wal",
        verdict,
        file: Some(file),
        page: None,
        offset,
        reason: e.to_string(),
    });
}

/// Full mode: the whole CRC chain and every `.snap`; both modes: what etcd loads at start-up
/// (newest valid snap, the WAL from there, the committed entries). Repairs a torn tail first
/// when asked.
pub(super) fn check_wal(r: &mut Report, layout: &Layout, opts: &Options) -> bool {
    let wal_dir = layout.wal_dir();
    if opts.mode == Mode::Full || opts.repair {
        let v = match wal::verify_wal_dir(&OsFs, &wal_dir, Some(&layout.snap_dir())) {
            Ok(v) => v,
            Err(e) => {
                wal_error_finding(r, &wal_dir, &e);
                return false;
            }
        };
        let mut torn = None;
        match &v.status {
            WalStatus::Ok => {}
            WalStatus::Repairable(d) => torn = Some(d.clone()),
            WalStatus::Corrupt(d) => r.add(Finding {
                check: "wal",
                verdict: Verdict::Corrupt,
                file: Some(wal_dir.join(d.segment.file_name())),
                page: None,
                offset: Some(d.offset),
                reason: d.to_string(),
            }),
        }
        for e in &v.errors {
            r.problem("wal", Verdict::Corrupt, &wal_dir, e.clone());
        }
        if opts.mode == Mode::Full {
            for s in &v.snap_files {
                if let Err(e) = &s.result {
                    r.problem(
                        "snap",
                        Verdict::Valid,
                        &layout.snap_dir().join(&s.name),
                        format!("{e}; etcd skips it (renames it *.broken) and loads an older one"),
                    );
                }
            }
        }
        if let Some(d) = torn {
            let seg = wal_dir.join(d.segment.file_name());
            if opts.repair {
                match wal::repair(&OsFs, &wal_dir) {
                    Ok(wal::RepairOutcome::Repaired {
                        segment,
                        truncated_to,
                        broken_copy,
                        ..
                    }) => r.repairs.push(format!(
                        "{} truncated to {truncated_to} bytes (copy kept as {})",
                        segment.display(),
                        broken_copy.display()
                    )),
                    Ok(wal::RepairOutcome::Clean) => {}
                    Err(e) => wal_error_finding(r, &wal_dir, &e),
                }
            } else {
                r.add(Finding {
                    check: "wal",
                    verdict: Verdict::Repairable,
                    file: Some(seg),
                    page: None,
                    offset: Some(d.offset),
                    reason: format!("{d}; etcd truncates it at start-up, --repair does the same"),
                });
            }
        }
        if r.verdict >= Verdict::Corrupt {
            return false;
        }
    }
    let m = match wal::load::load_member_dirs(&OsFs, &wal_dir, &layout.snap_dir()) {
        Ok(m) => m,
        Err(e) => {
            wal_error_finding(r, &wal_dir, &e);
            return false;
        }
    };
    if let wal::Tail::Torn(d) = &m.wal.end.tail
        && !r.findings.iter().any(|f| f.verdict == Verdict::Repairable)
        && r.repairs.is_empty()
    {
        r.add(Finding {
            check: "wal",
            verdict: Verdict::Repairable,
            file: Some(wal_dir.join(d.segment.file_name())),
            page: None,
            offset: Some(d.offset),
            reason: format!("{d}; etcd truncates it at start-up, --repair does the same"),
        });
    }
    for s in &m.rejected_snaps {
        if opts.mode == Mode::Sanity {
            r.problem(
                "snap",
                Verdict::Valid,
                &layout.snap_dir().join(&s.name),
                format!("{}; etcd skips it", s.error),
            );
        }
    }
    r.snap_index = Some(m.start_index);
    r.wal_commit = Some(m.committed_index());
    r.wal_last_index = Some(m.last_index());
    if !m.commit_in_range() {
        r.problem(
            "consistency",
            Verdict::Corrupt,
            &wal_dir,
            format!(
                "HardState.commit {} outside [snapshot index {}, last index {}]: raft panics at start-up",
                m.committed_index(),
                m.start_index,
                m.last_index()
            ),
        );
        return false;
    }
    let ci = r.consistent_index.unwrap_or(0);
    let pending = m
        .committed_entries()
        .filter(|e| e.index > ci)
        .filter(|e| e.r#type == EntryType::EntryNormal as i32)
        .filter(|e| e.data.as_deref().is_some_and(may_write))
        .count() as u64;
    r.wal_pending_writes = Some(pending);
    true
}

/// Whether an `InternalRaftRequest` may raise the revision: it carries a put (field 4),
/// delete_range (5), txn (6) or lease_revoke (9, deletes the lease's keys). Unreadable data
/// counts as a write (the bound stays an upper bound). Empty entries (leader no-ops) do not.
fn may_write(data: &[u8]) -> bool {
    crate::wal_ahead::request_has_field(data, &[4, 5, 6, 9])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn may_write_reads_field_numbers() {
        // header (100, length-delimited, empty) only: not a write.
        assert!(!may_write(&[0xa2, 0x06, 0x00]));
        // ID (1, varint) then put (4, length 0).
        assert!(may_write(&[0x08, 0x05, 0x22, 0x00]));
        // range (3): read only.
        assert!(!may_write(&[0x1a, 0x00]));
        // compaction (7): no new revision.
        assert!(!may_write(&[0x3a, 0x00]));
        // truncated length: counted as a write.
        assert!(may_write(&[0x1a, 0x05]));
        assert!(!may_write(&[]));
    }
}
