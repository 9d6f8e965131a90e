//! What to check: the [`Options`], and etcd-wrapper's choice of mode.

use std::fs;
use std::path::{Path, PathBuf};

use super::report::Mode;

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
