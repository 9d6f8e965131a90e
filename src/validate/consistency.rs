//! etcd's start-up invariants between the database and the raft log.

use super::report::{Report, Verdict};

/// etcd's start-up invariants between the database and the raft log.
pub(super) fn check_consistency(r: &mut Report) {
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
