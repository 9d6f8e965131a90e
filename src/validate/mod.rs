//! `validate`: is this etcd data directory one that etcd starts on and that serves the data the
//! backups have? The checks of etcd-backup-restore's data validator (sanity and full), done
//! natively — the committed WAL entries that etcdbrctl replays with an embedded etcd are read
//! from the WAL instead — plus the cross-consistency rules etcd itself enforces at start-up.
//! Read-only unless repair is asked for. Rules and exit codes: docs/validate.md.
//!
//! * `report`: findings, verdicts and the report; `options`: what to check;
//! * the checks, in the order they run: `structure` (safe_guard, directories), `db` (meta
//!   pages, open, bbolt check), `wal_snap` (CRC chain, snaps, start-up load, repair),
//!   `consistency` (database against the raft log), `staleness` (against the store).

mod consistency;
mod db;
mod options;
mod report;
mod staleness;
mod structure;
mod wal_snap;

use std::path::Path;

use crate::backend::hash_kv_file;
use crate::datadir::Layout;

pub use options::{Options, auto_mode};
pub use report::{Finding, Mode, Report, Verdict};

use consistency::check_consistency;
use db::{check_db_full, check_db_sanity};
use staleness::check_revision;
use structure::{check_safe_guard, check_structure};
use wal_snap::check_wal;

/// Validates `data_dir`. Every problem, IO errors inside the data directory included, is a
/// finding.
pub fn validate(data_dir: &Path, opts: &Options) -> Report {
    let layout = Layout::new(data_dir).with_wal_dir(opts.wal_dir.clone());
    let mut r = Report {
        data_dir: data_dir.to_path_buf(),
        mode: opts.mode,
        mode_reason: opts.mode_reason.clone(),
        verdict: Verdict::Valid,
        findings: Vec::new(),
        db_revision: None,
        consistent_index: None,
        snap_index: None,
        wal_commit: None,
        wal_last_index: None,
        wal_pending_writes: None,
        max_revision_after_replay: None,
        store_revision: opts.store_revision,
        cluster_size: None,
        hashkv: None,
        repairs: Vec::new(),
    };
    check_safe_guard(&mut r, data_dir, opts.namespace.as_deref());
    if r.verdict == Verdict::WrongVolume || !check_structure(&mut r, &layout) {
        return r;
    }
    let db_ok = check_db_sanity(&mut r, &layout);
    if opts.mode == Mode::Full {
        check_db_full(&mut r, &layout.db());
    }
    let wal_ok = check_wal(&mut r, &layout, opts);
    if db_ok && wal_ok {
        check_consistency(&mut r);
        check_revision(&mut r);
        if opts.mode == Mode::Full && r.verdict <= Verdict::Stale {
            match hash_kv_file(&layout.db(), 0) {
                Ok(h) => r.hashkv = Some(h),
                Err(e) => r.problem("hashkv", Verdict::Corrupt, &layout.db(), e.to_string()),
            }
        }
    }
    r
}
