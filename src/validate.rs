//! `validate`: is this etcd data directory one that etcd starts on and that serves the data the
//! backups have? The checks of etcd-backup-restore's data validator (sanity and full), done
//! natively — the committed WAL entries that etcdbrctl replays with an embedded etcd are read
//! from the WAL instead — plus the cross-consistency rules etcd itself enforces at start-up.
//! Read-only unless repair is asked for. Rules and exit codes: docs/validate.md.

use std::fs;
use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use bbolt::check::{CheckOptions, FindingKind, check_file};
use bbolt::{Db, OpenOptions};
use wal::proto::EntryType;
use wal::verify::WalStatus;
use wal::{DamageKind, OsFs, WalError};

use crate::backend::{KEY_BUCKET, META_BUCKET, hash_kv_file, read_base_state};
use crate::datadir::Layout;
use crate::mvcc::hashkv::HashKv;

/// How much to check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Sanity,
    Full,
}

/// The outcome, ordered by severity (the report's verdict is the worst finding's).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Valid,
    /// Only a torn WAL tail, which etcd cuts off at start-up (and `--repair` does).
    Repairable,
    /// Intact, but behind the backups' latest revision.
    Stale,
    Corrupt,
    /// The `safe_guard` file names another namespace.
    WrongVolume,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Valid => "valid",
            Verdict::Repairable => "repairable",
            Verdict::Stale => "stale",
            Verdict::Corrupt => "corrupt",
            Verdict::WrongVolume => "wrong_volume",
        }
    }
}

/// One observation. `verdict: Valid` marks a warning: worth a look, etcd starts anyway.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Finding {
    pub check: &'static str,
    pub verdict: Verdict,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    pub reason: String,
}

/// What to check.
#[derive(Clone, Debug)]
pub struct Options {
    pub mode: Mode,
    /// Why this mode (auto-selection explains itself).
    pub mode_reason: String,
    /// The pod namespace the `safe_guard` file must name (etcdbrctl's `POD_NAMESPACE`).
    pub namespace: Option<String>,
    /// The latest revision in the backup store (`None`: no store, or it holds no snapshot).
    pub store_revision: Option<i64>,
    /// Cut a torn WAL tail off (keeping a `.broken` copy of the segment).
    pub repair: bool,
    /// etcd's `--wal-dir`: the WAL is there instead of `member/wal`.
    pub wal_dir: Option<PathBuf>,
}

/// The validation report.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Report {
    pub data_dir: PathBuf,
    pub mode: Mode,
    pub mode_reason: String,
    pub verdict: Verdict,
    pub findings: Vec<Finding>,
    /// The database's current revision (last key of `key`, raised to the compaction revisions).
    pub db_revision: Option<i64>,
    /// `consistent_index` in `meta`: the last raft index applied to the database.
    pub consistent_index: Option<u64>,
    /// The index of the `.snap` etcd starts from (0: none).
    pub snap_index: Option<u64>,
    /// HardState.commit of the WAL.
    pub wal_commit: Option<u64>,
    pub wal_last_index: Option<u64>,
    /// Committed entries above `consistent_index` that may write (put, delete, txn, lease
    /// revoke): each raises the revision by at most one when etcd replays it.
    pub wal_pending_writes: Option<u64>,
    /// Upper bound of the revision etcd serves after replaying the WAL.
    pub max_revision_after_replay: Option<i64>,
    pub store_revision: Option<i64>,
    /// Members in the database's `members` bucket; above one, staleness is not judged.
    pub cluster_size: Option<u64>,
    /// Offline HashKV of the database (full mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hashkv: Option<HashKv>,
    /// What `--repair` changed.
    pub repairs: Vec<String>,
}

impl Report {
    fn add(&mut self, f: Finding) {
        self.verdict = self.verdict.max(f.verdict);
        self.findings.push(f);
    }
    fn problem(&mut self, check: &'static str, verdict: Verdict, file: &Path, reason: String) {
        self.add(Finding {
            check,
            verdict,
            file: Some(file.to_path_buf()),
            page: None,
            offset: None,
            reason,
        });
    }

    /// A human summary, one line per finding.
    pub fn to_text(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        for f in &self.findings {
            let sev = if f.verdict == Verdict::Valid {
                "warning"
            } else {
                f.verdict.as_str()
            };
            let _ = write!(s, "{sev}: [{}] ", f.check);
            if let Some(p) = &f.file {
                let _ = write!(s, "{}", p.display());
            }
            if let Some(p) = f.page {
                let _ = write!(s, " page {p}");
            }
            if let Some(o) = f.offset {
                let _ = write!(s, " offset {o}");
            }
            let _ = writeln!(s, ": {}", f.reason);
        }
        for r in &self.repairs {
            let _ = writeln!(s, "repaired: {r}");
        }
        let opt = |v: Option<i64>| v.map_or("-".to_string(), |v| v.to_string());
        let optu = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
        let _ = writeln!(
            s,
            "db revision {}, consistent_index {}, snap index {}, WAL commit {}, pending writes {}, store revision {}",
            opt(self.db_revision),
            optu(self.consistent_index),
            optu(self.snap_index),
            optu(self.wal_commit),
            optu(self.wal_pending_writes),
            opt(self.store_revision),
        );
        if let Some(h) = &self.hashkv {
            let _ = writeln!(
                s,
                "hashkv {} (revision {}, compact revision {})",
                h.hash, h.hash_revision, h.compact_revision
            );
        }
        let _ = writeln!(
            s,
            "{}: {} ({} mode: {})",
            self.data_dir.display(),
            self.verdict.as_str().to_uppercase(),
            match self.mode {
                Mode::Sanity => "sanity",
                Mode::Full => "full",
            },
            self.mode_reason
        );
        s
    }
}

/// etcd-wrapper's choice: sanity after a clean stop (`exit_code` says `terminated` or
/// `interrupt`), full otherwise. The file is looked for in the data directory and, for
/// gardener's layout (`/var/etcd/data/new.etcd` next to `/var/etcd/data/exit_code`), its parent.
pub fn auto_mode(data_dir: &Path) -> (Mode, String) {
    let mut candidates = vec![data_dir.join("exit_code")];
    if let Some(parent) = data_dir.parent() {
        candidates.push(parent.join("exit_code"));
    }
    for p in candidates {
        if let Ok(s) = fs::read_to_string(&p) {
            let t = s.trim();
            return if t == "terminated" || t == "interrupt" {
                (Mode::Sanity, format!("{} says {t:?}", p.display()))
            } else {
                (Mode::Full, format!("{} says {t:?}", p.display()))
            };
        }
    }
    (Mode::Full, "no exit_code file".to_string())
}

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

fn check_safe_guard(r: &mut Report, data_dir: &Path, namespace: Option<&str>) {
    let Some(ns) = namespace else { return };
    let Some(parent) = data_dir.parent() else {
        return;
    };
    let p = parent.join("safe_guard");
    match fs::read_to_string(&p) {
        Ok(s) if s == ns => {}
        Ok(s) => r.problem(
            "safe_guard",
            Verdict::WrongVolume,
            &p,
            format!("names namespace {s:?}, this pod runs in {ns:?}: wrong volume mounted"),
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => r.problem(
            "safe_guard",
            Verdict::Valid,
            &p,
            "missing (etcdbrctl creates it on first use; validate never writes)".to_string(),
        ),
        Err(e) => r.problem("safe_guard", Verdict::Corrupt, &p, e.to_string()),
    }
}

/// The directories etcd needs; false when checking further makes no sense.
fn check_structure(r: &mut Report, layout: &Layout) -> bool {
    let dirs = [
        layout.root.clone(),
        layout.member(),
        layout.snap_dir(),
        layout.wal_dir(),
    ];
    for d in &dirs {
        match fs::metadata(d) {
            Ok(m) if m.is_dir() => {
                let mode = m.permissions().mode() & 0o777;
                if d == &layout.root && mode & 0o077 != 0 {
                    r.problem(
                        "permissions",
                        Verdict::Valid,
                        d,
                        format!("mode {mode:o}; etcd recommends 700 (and warns)"),
                    );
                }
            }
            Ok(_) => {
                r.problem("structure", Verdict::Corrupt, d, "not a directory".into());
                return false;
            }
            Err(e) => {
                r.problem("structure", Verdict::Corrupt, d, e.to_string());
                return false;
            }
        }
    }
    true
}

/// Both meta pages, then the database opens and yields its revision and consistent index.
fn check_db_sanity(r: &mut Report, layout: &Layout) -> bool {
    let path = layout.db();
    let mut head = Vec::new();
    // Two metas of the largest page size bbolt accepts.
    let read = fs::File::open(&path).and_then(|f| f.take(2 * 65536).read_to_end(&mut head));
    if let Err(e) = read {
        r.problem("db_open", Verdict::Corrupt, &path, e.to_string());
        return false;
    }
    let (ps, m0, m1) = bbolt::meta::load(&head);
    for (i, m) in [(0u64, &m0), (1, &m1)] {
        if let Err(e) = m {
            let usable = if i == 0 { m1.is_ok() } else { m0.is_ok() };
            r.add(Finding {
                check: "meta",
                verdict: if usable {
                    Verdict::Valid
                } else {
                    Verdict::Corrupt
                },
                file: Some(path.clone()),
                page: Some(i),
                offset: Some(i * u64::from(ps)),
                reason: if usable {
                    format!("meta page {i}: {e}; bbolt uses the other one")
                } else {
                    format!("meta page {i}: {e}")
                },
            });
        }
    }
    if m0.is_err() && m1.is_err() {
        return false;
    }
    let db = match Db::open(&path, OpenOptions::read_only()) {
        Ok(db) => db,
        Err(e) => {
            r.problem("db_open", Verdict::Corrupt, &path, e.to_string());
            return false;
        }
    };
    let tx = db.begin_read();
    match tx.bucket(KEY_BUCKET) {
        Ok(Some(_)) => {}
        Ok(None) => {
            r.problem("db_open", Verdict::Corrupt, &path, "no bucket `key`".into());
            return false;
        }
        Err(e) => {
            r.problem("db_open", Verdict::Corrupt, &path, e.to_string());
            return false;
        }
    }
    let ci = match tx.bucket(META_BUCKET) {
        Ok(Some(m)) => m.get(b"consistent_index"),
        Ok(None) => Ok(None),
        Err(e) => Err(e),
    };
    match ci {
        Ok(Some(v)) => match <[u8; 8]>::try_from(v) {
            Ok(b) => r.consistent_index = Some(u64::from_be_bytes(b)),
            Err(_) => {
                r.problem(
                    "db_open",
                    Verdict::Corrupt,
                    &path,
                    format!("meta/consistent_index has {} bytes, not 8", v.len()),
                );
                return false;
            }
        },
        // etcd treats a missing index as 0 (a database that never applied an entry).
        Ok(None) => r.consistent_index = Some(0),
        Err(e) => {
            r.problem("db_open", Verdict::Corrupt, &path, e.to_string());
            return false;
        }
    }
    // etcdbrctl skips the revision comparison in a multi-member cluster: such a member
    // catches up from the leader, so being behind the backups is not a reason to restore it.
    let members = match tx.bucket(crate::restore::MEMBERS_BUCKET) {
        Ok(Some(b)) => count_entries(&b),
        _ => Ok(0),
    };
    match members {
        Ok(n) => r.cluster_size = Some(n),
        Err(e) => {
            r.problem("db_open", Verdict::Corrupt, &path, e.to_string());
            return false;
        }
    }
    drop(tx);
    match read_base_state(&db, &path.display().to_string()) {
        Ok(base) => r.db_revision = Some(base.revision),
        Err(e) => {
            r.problem("db_revision", Verdict::Corrupt, &path, e.to_string());
            return false;
        }
    }
    true
}

/// The complete structural check of the bbolt file (what `tx.Check()` does, and more).
fn check_db_full(r: &mut Report, path: &Path) {
    match check_file(path, &CheckOptions::default()) {
        Ok(c) => {
            for f in &c.findings {
                // A single bad meta page was reported by the sanity check already; bbolt
                // falls back to the other one.
                if f.kind == FindingKind::MetaInvalid {
                    continue;
                }
                r.add(Finding {
                    check: "bbolt",
                    verdict: Verdict::Corrupt,
                    file: Some(path.to_path_buf()),
                    page: f.page,
                    offset: f.page.map(|p| p.saturating_mul(u64::from(c.page_size))),
                    reason: format!("{}: {}", f.kind.as_str(), f.message),
                });
            }
            if c.suppressed > 0 {
                r.problem(
                    "bbolt",
                    Verdict::Corrupt,
                    path,
                    format!("{} more findings not listed", c.suppressed),
                );
            }
        }
        Err(e) => r.problem("bbolt", Verdict::Corrupt, path, e.to_string()),
    }
}

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
fn check_wal(r: &mut Report, layout: &Layout, opts: &Options) -> bool {
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
    let mut p = data;
    while !p.is_empty() {
        let Some((tag, rest)) = varint(p) else {
            return true;
        };
        let field = tag >> 3;
        if matches!(field, 4 | 5 | 6 | 9) {
            return true;
        }
        p = match tag & 7 {
            0 => match varint(rest) {
                Some((_, r)) => r,
                None => return true,
            },
            1 => match rest.get(8..) {
                Some(r) => r,
                None => return true,
            },
            2 => match varint(rest) {
                Some((len, r)) => match usize::try_from(len).ok().and_then(|l| r.get(l..)) {
                    Some(r) => r,
                    None => return true,
                },
                None => return true,
            },
            5 => match rest.get(4..) {
                Some(r) => r,
                None => return true,
            },
            _ => return true,
        };
    }
    false
}

fn varint(p: &[u8]) -> Option<(u64, &[u8])> {
    let mut v = 0u64;
    for (i, b) in p.iter().enumerate().take(10) {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((v, p.get(i + 1..)?));
        }
    }
    None
}

/// etcd's start-up invariants between the database and the raft log.
fn check_consistency(r: &mut Report) {
    let (Some(ci), Some(snap), Some(commit)) = (r.consistent_index, r.snap_index, r.wal_commit)
    else {
        return;
    };
    let file = r.data_dir.join("member");
    if ci < snap {
        r.problem(
            "consistency",
            Verdict::Corrupt,
            &file,
            format!(
                "consistent_index {ci} < snap index {snap}: etcd looks for {snap:016x}.snap.db and fails"
            ),
        );
    }
    if ci > commit {
        r.problem(
            "consistency",
            Verdict::Corrupt,
            &file,
            format!(
                "consistent_index {ci} > WAL commit {commit}: etcd skips new entries up to {ci} as applied (writes hang or are lost)"
            ),
        );
    }
}

fn count_entries(b: &bbolt::Bucket<'_>) -> Result<u64, bbolt::Error> {
    let mut c = b.cursor();
    let mut n = 0;
    let mut e = c.first()?;
    while e.is_some() {
        n += 1;
        e = c.next()?;
    }
    Ok(n)
}

fn check_revision(r: &mut Report) {
    let (Some(db_rev), Some(pending)) = (r.db_revision, r.wal_pending_writes) else {
        return;
    };
    let max = db_rev.saturating_add(i64::try_from(pending).unwrap_or(i64::MAX));
    r.max_revision_after_replay = Some(max);
    let Some(store) = r.store_revision else {
        return;
    };
    let file = r.data_dir.join("member/snap/db");
    if let Some(n) = r.cluster_size.filter(|n| *n > 1) {
        if max < store {
            r.problem(
                "revision",
                Verdict::Valid,
                &file,
                format!(
                    "revision {db_rev} (at most {max}) < store revision {store}, but this member is one of {n}: it catches up from the leader (not compared, like etcdbrctl)"
                ),
            );
        }
        return;
    }
    if max < store {
        r.problem(
            "revision",
            Verdict::Stale,
            &file,
            format!(
                "revision {db_rev} (at most {max} after replaying {pending} committed WAL writes) < store revision {store}"
            ),
        );
    } else if db_rev < store {
        r.problem(
            "revision",
            Verdict::Valid,
            &file,
            format!(
                "db revision {db_rev} < store revision {store}; the {pending} committed WAL writes may close the gap (upper bound {max})"
            ),
        );
    }
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
