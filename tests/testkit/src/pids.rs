//! The PID registry: every server a test starts is the file `$ETCD_RESTORE_DEPS/run/pids/<pid>`
//! (content: what it is) until the test stops it. `scripts/test` fails the run when a registered
//! process is still alive afterwards.

use std::path::PathBuf;

use crate::deps::deps_dir;
use crate::error::{Error, Result};

/// `$ETCD_RESTORE_DEPS/run/pids`.
pub fn registry_dir() -> PathBuf {
    deps_dir().join("run").join("pids")
}

pub fn register(pid: u32, what: &str) -> Result<()> {
    let dir = registry_dir();
    std::fs::create_dir_all(&dir).map_err(|e| Error::io("create PID registry", &dir, e))?;
    let file = dir.join(pid.to_string());
    std::fs::write(&file, format!("{what}\n")).map_err(|e| Error::io("register PID", &file, e))
}

/// Removes the entry; a missing entry is not an error (stop may run twice: `stop()` then `Drop`).
pub fn unregister(pid: u32) {
    let _ = std::fs::remove_file(registry_dir().join(pid.to_string()));
}

/// PIDs currently registered (whatever their state).
pub fn registered() -> Vec<u32> {
    let Ok(rd) = std::fs::read_dir(registry_dir()) else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// Whether `pid` is a live (not zombie) process. Linux `/proc` based.
pub fn is_alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // Field 3 (after the parenthesised command name, which may contain spaces) is the state.
    match stat.rfind(')') {
        Some(i) => {
            !matches!(stat.get(i + 1..).map(str::trim_start), Some(s) if s.starts_with('Z') || s.starts_with('X'))
        }
        None => true,
    }
}
