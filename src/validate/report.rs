//! What validation found: each [`Finding`] with its [`Verdict`], and the [`Report`] whose verdict
//! is the worst finding's, as text or JSON.

use std::path::{Path, PathBuf};

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
    pub(super) fn add(&mut self, f: Finding) {
        self.verdict = self.verdict.max(f.verdict);
        self.findings.push(f);
    }
    pub(super) fn problem(
        &mut self,
        check: &'static str,
        verdict: Verdict,
        file: &Path,
        reason: String,
    ) {
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
