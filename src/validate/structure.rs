//! The volume and the directories: the `safe_guard` file names this pod's namespace, and the
//! directories etcd needs exist.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use crate::datadir::Layout;

use super::report::{Report, Verdict};

pub(super) fn check_safe_guard(r: &mut Report, data_dir: &Path, namespace: Option<&str>) {
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
pub(super) fn check_structure(r: &mut Report, layout: &Layout) -> bool {
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
