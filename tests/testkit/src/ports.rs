//! Free TCP ports on 127.0.0.1.
//!
//! The port is released before the server binds it, so another process could take it in
//! between; servers started by testkit retry with fresh ports when binding fails. A port is
//! never handed out twice, neither within this test process nor to two live test processes on
//! this machine (two suites at once, in two worktrees): every port handed out is recorded with
//! its holder in one file, `<temp dir>/etcd-restore-ports-<uid>`, read and rewritten under an
//! exclusive lock, and a port stays reserved until its holder has exited.

use std::collections::HashSet;
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    for _ in 0..100 {
        let Ok(l) = TcpListener::bind(("127.0.0.1", 0)) else {
            continue;
        };
        let Ok(addr) = l.local_addr() else {
            continue;
        };
        let port = addr.port();
        let mut guard = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
        if !guard.get_or_insert_with(HashSet::new).insert(port) {
            continue;
        }
        match reserve(&registry(), port) {
            Ok(true) => return port,
            Ok(false) => continue,
            Err(e) => panic!(
                "testkit: cannot reserve port {port} in {}: {e}",
                registry().display()
            ),
        }
    }
    panic!("testkit: no free port on 127.0.0.1 after 100 attempts");
}

/// The machine-wide record of this user's reserved ports: one line `<port> <pid> <start time>`
/// each.
fn registry() -> PathBuf {
    use std::os::unix::fs::MetadataExt as _;
    let uid = std::fs::metadata("/proc/self").map_or(0, |m| m.uid());
    std::env::temp_dir().join(format!("etcd-restore-ports-{uid}"))
}

/// Reserves `port` for this process unless a live process holds it; drops the lines of
/// processes that are gone.
fn reserve(registry: &Path, port: u16) -> std::io::Result<bool> {
    let me = holder(std::process::id()).ok_or_else(|| std::io::Error::other("no /proc/self"))?;
    let mut f = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(registry)?;
    // Released when `f` is closed.
    f.lock()?;
    let mut text = String::new();
    f.read_to_string(&mut text)?;
    let mut kept = String::new();
    let mut taken = false;
    for line in text.lines() {
        let mut w = line.split_whitespace();
        let (Some(p), Some(pid), Some(start)) = (w.next(), w.next(), w.next()) else {
            continue;
        };
        let (Ok(p), Ok(pid)) = (p.parse::<u16>(), pid.parse::<u32>()) else {
            continue;
        };
        if holder(pid).as_deref() != Some(start) {
            continue; // that process has exited (or its PID is someone else's now)
        }
        taken |= p == port;
        kept.push_str(line);
        kept.push('\n');
    }
    if !taken {
        kept.push_str(&format!("{port} {} {me}\n", std::process::id()));
    }
    f.rewind()?;
    f.set_len(0)?;
    f.write_all(kept.as_bytes())?;
    Ok(!taken)
}

/// A live process's start time (field 22 of `/proc/<pid>/stat`), which tells it apart from a
/// later process given the same PID.
fn holder(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.get(stat.rfind(')')? + 1..)?;
    let mut fields = after.split_whitespace();
    let state = fields.next()?;
    if state.starts_with('Z') || state.starts_with('X') {
        return None;
    }
    // `after` starts at field 3; the start time is field 22.
    fields.nth(18).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_held_by_a_live_process_is_refused_and_a_dead_holders_is_taken_over() {
        let tmp = tempfile::tempdir().unwrap();
        let reg = tmp.path().join("ports");
        // Held by this process: refused again.
        assert!(reserve(&reg, 40001).unwrap());
        assert!(!reserve(&reg, 40001).unwrap());
        // Held by another live process (our parent), with its real start time: refused.
        let parent = std::os::unix::process::parent_id();
        let start = holder(parent).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&reg)
            .unwrap()
            .write_all(format!("40002 {parent} {start}\n").as_bytes())
            .unwrap();
        assert!(!reserve(&reg, 40002).unwrap());
        // The same PID with another start time is a process that has exited: its line goes,
        // and so does one of a PID that does not exist.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&reg)
            .unwrap()
            .write_all(format!("40003 {parent} 1{start}\n40004 4194305 1\n").as_bytes())
            .unwrap();
        assert!(reserve(&reg, 40003).unwrap());
        let text = std::fs::read_to_string(&reg).unwrap();
        assert!(!text.contains("4194305"), "{text}");
        let me = std::process::id();
        let ports: Vec<&str> = text.lines().map(|l| l.split(' ').next().unwrap()).collect();
        assert_eq!(ports, ["40001", "40002", "40003"], "{text}");
        assert!(text.contains(&format!("40003 {me} ")), "{text}");
    }
}
