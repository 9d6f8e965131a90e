//! Helpers shared by the wal integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use testkit::{EtcdBins, EtcdConfig, EtcdProcess};

/// Runs a command; panics with its stderr on failure.
pub fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A snapshot saved (with `etcdctl snapshot save`) from a real etcd 3.5.1 holding a few
/// keys; made once per test binary. `None` when etcd 3.5.1 is not installed (SKIP).
pub fn snapshot_db() -> Option<PathBuf> {
    static SNAP: OnceLock<PathBuf> = OnceLock::new();
    let bins = EtcdBins::get("3.5.1")?;
    Some(
        SNAP.get_or_init(|| {
            let dir = tempfile::tempdir().expect("tempdir").keep();
            let mut etcd = EtcdProcess::start(&bins, EtcdConfig::new(dir.join("data")))
                .expect("start etcd 3.5.1");
            for i in 0..5 {
                etcd.put(&format!("k{i}"), &format!("v{i}")).expect("put");
            }
            let out = dir.join("snap.db");
            etcd.etcdctl(&["snapshot", "save", out.to_str().expect("utf-8 path")])
                .expect("snapshot save");
            etcd.stop().expect("stop etcd");
            out
        })
        .clone(),
    )
}

/// Files of a directory, sorted, as (name, bytes).
pub fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| {
            let e = e.expect("dir entry");
            let name = e.file_name().to_string_lossy().into_owned();
            let bytes = std::fs::read(e.path()).expect("read file");
            (name, bytes)
        })
        .collect();
    v.sort();
    v
}

/// First differing offset of two byte strings, for assertion messages.
pub fn first_diff(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .or((a.len() != b.len()).then(|| a.len().min(b.len())))
}
