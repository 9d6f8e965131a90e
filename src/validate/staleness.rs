//! Staleness: the revision etcd serves after replaying the WAL against the backups' latest.

use super::report::{Report, Verdict};

pub(super) fn check_revision(r: &mut Report) {
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
