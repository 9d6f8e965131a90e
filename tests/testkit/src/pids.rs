//! The PID registry: every server a test starts is the file `<registry>/<pid>` (content: what
//! it is) until the test stops it.
//!
//! The registry belongs to one run, so concurrent runs (two worktrees, a developer beside CI)
//! never see, let alone kill, each other's servers:
//! * under `scripts/test` it is `$ETCD_RESTORE_RUN_DIR/pids`, the run's private directory
//!   (`mktemp -d` under `.deps/run/`); at the end `scripts/test` kills whatever registered
//!   process is still alive, fails the run, and removes the directory;
//! * under plain `cargo test` each test process has its own, `.deps/run/proc-<pid>`, removed
//!   when its last entry is (and a dead process's directory whose processes are all gone is
//!   removed by the next process that registers one).

use std::path::PathBuf;
use std::sync::Mutex;

use crate::deps::deps_dir;
use crate::error::{Error, Result};

/// The directory `scripts/test` makes for one run and passes to every test process.
pub const RUN_DIR_ENV: &str = "ETCD_RESTORE_RUN_DIR";

/// Serialises this process's registers and unregisters, so that removing an emptied
/// per-process directory cannot race a register into it.
static LOCK: Mutex<()> = Mutex::new(());

/// Where this process registers: `$ETCD_RESTORE_RUN_DIR/pids`, else `.deps/run/proc-<pid>`.
pub fn registry_dir() -> PathBuf {
    match run_dir() {
        Some(run) => run.join("pids"),
        None => own_dir(std::process::id()),
    }
}

fn run_dir() -> Option<PathBuf> {
    std::env::var_os(RUN_DIR_ENV)
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
}

fn own_dir(pid: u32) -> PathBuf {
    deps_dir().join("run").join(format!("proc-{pid}"))
}

pub fn register(pid: u32, what: &str) -> Result<()> {
    let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let dir = registry_dir();
    if run_dir().is_none() && !dir.exists() {
        sweep_dead_processes_dirs();
    }
    std::fs::create_dir_all(&dir).map_err(|e| Error::io("create PID registry", &dir, e))?;
    let file = dir.join(pid.to_string());
    std::fs::write(&file, format!("{what}\n")).map_err(|e| Error::io("register PID", &file, e))
}

/// Removes the entry; a missing entry is not an error (stop may run twice: `stop()` then `Drop`).
/// A per-process directory goes with its last entry.
pub fn unregister(pid: u32) {
    let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let dir = registry_dir();
    let _ = std::fs::remove_file(dir.join(pid.to_string()));
    if run_dir().is_none() {
        // Fails while other entries remain, as it should.
        let _ = std::fs::remove_dir(&dir);
    }
}

/// PIDs currently registered by this process's run (whatever their state).
pub fn registered() -> Vec<u32> {
    entries(&registry_dir())
}

fn entries(dir: &std::path::Path) -> Vec<u32> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// Removes the per-process directories of test processes that are gone, when every process
/// they name is gone too. One that still names a live process stays: that is a leaked server,
/// and its PID may by now belong to someone else, so nothing here kills it.
fn sweep_dead_processes_dirs() {
    let Ok(rd) = std::fs::read_dir(deps_dir().join("run")) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(owner) = name
            .to_str()
            .and_then(|n| n.strip_prefix("proc-"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if is_alive(owner) || entries(&e.path()).into_iter().any(is_alive) {
            continue;
        }
        let _ = std::fs::remove_dir_all(e.path());
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Above Linux's largest `pid_max`: no process has it.
    const NO_SUCH_PID: u32 = 4_194_305;

    #[test]
    fn an_entry_stays_in_this_runs_registry_until_unregistered() {
        register(NO_SUCH_PID, "test entry").unwrap();
        let dir = registry_dir();
        match run_dir() {
            Some(run) => assert_eq!(dir, run.join("pids")),
            None => assert_eq!(dir, own_dir(std::process::id())),
        }
        assert!(registered().contains(&NO_SUCH_PID));
        assert_eq!(
            std::fs::read_to_string(dir.join(NO_SUCH_PID.to_string())).unwrap(),
            "test entry\n"
        );
        unregister(NO_SUCH_PID);
        assert!(!registered().contains(&NO_SUCH_PID));
        if run_dir().is_none() {
            // Nothing else in this binary registers: the per-process directory went with it.
            assert!(!dir.exists(), "{} is left", dir.display());
        }
    }

    #[test]
    fn a_gone_processes_directory_is_swept_unless_it_names_a_live_process() {
        // As register does: a sweep by the test beside this one must not catch these
        // directories half-made.
        let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let gone = own_dir(NO_SUCH_PID);
        let leaked = own_dir(NO_SUCH_PID + 1);
        for (dir, entry) in [(&gone, NO_SUCH_PID + 2), (&leaked, std::process::id())] {
            std::fs::create_dir_all(dir).unwrap();
            std::fs::write(dir.join(entry.to_string()), "x\n").unwrap();
        }
        sweep_dead_processes_dirs();
        let left = (gone.exists(), leaked.exists());
        let _ = std::fs::remove_dir_all(&leaked);
        assert_eq!(left, (false, true), "(gone swept, leaked kept)");
    }
}
