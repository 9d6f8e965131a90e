//! A multi-member etcd cluster on 127.0.0.1 for tests that restore one backup into several
//! members: [`ClusterSpec`] fixes names, free ports, data dirs, the initial cluster and token
//! (what the restore must be told), then [`ClusterSpec::start`] runs every member.
//!
//! ```no_run
//! use testkit::{ClusterSpec, EtcdBins};
//! let Some(bins) = EtcdBins::get("3.5.1") else { return };
//! let dir = tempfile::tempdir().unwrap();
//! let spec = ClusterSpec::new(dir.path(), &["m1", "m2", "m3"], "restored");
//! // ... restore into spec.members[i].data_dir with spec.initial_cluster() and spec.token ...
//! let procs = spec.start(&bins).unwrap();
//! testkit::cluster::assert_members_agree(&procs);
//! ```

use std::path::Path;
use std::time::Duration;

use crate::error::Result;
use crate::etcd::{EtcdBins, EtcdConfig, EtcdProcess, HEALTH_TIMEOUT};

/// Members of one cluster: member `name` has data dir `<dir>/<name>.etcd` and free ports.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    pub members: Vec<EtcdConfig>,
    pub token: String,
}

impl ClusterSpec {
    pub fn new(dir: &Path, names: &[&str], token: &str) -> ClusterSpec {
        let mut members: Vec<EtcdConfig> = names
            .iter()
            .map(|n| EtcdConfig::new(dir.join(format!("{n}.etcd"))).with_name(n))
            .collect();
        let spec = ClusterSpec {
            members: members.clone(),
            token: token.to_string(),
        };
        let initial = spec.initial_cluster();
        for m in &mut members {
            m.initial_cluster = Some(initial.clone());
            m.initial_cluster_token = token.to_string();
        }
        ClusterSpec {
            members,
            token: token.to_string(),
        }
    }

    /// `name=peerURL,...` of every member.
    pub fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .map(|c| format!("{}={}", c.name, c.peer_url()))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Spawns every member (none is healthy before a quorum runs), then waits for each.
    pub fn start(&self, bins: &EtcdBins) -> Result<Vec<EtcdProcess>> {
        let mut procs = Vec::with_capacity(self.members.len());
        for cfg in &self.members {
            procs.push(EtcdProcess::spawn(bins, cfg.clone())?);
        }
        for p in &mut procs {
            p.wait_healthy(HEALTH_TIMEOUT)?;
        }
        Ok(procs)
    }
}

/// Every member sees every other, and all serve the same data (equal HashKV at the same
/// revision). Panics with the differences otherwise.
pub fn assert_members_agree(procs: &[EtcdProcess]) {
    let first = procs.first().expect("at least one member");
    let list = first.member_list().expect("member list");
    assert_eq!(list.len(), procs.len(), "member list: {list:?}");
    // A member may lag the leader for a moment after start; give it a bounded while.
    let mut last = Vec::new();
    for _ in 0..50 {
        last = procs
            .iter()
            .map(|p| p.hashkv(None).map(|h| (h.header_revision, h.hash)))
            .collect::<Result<Vec<_>>>()
            .expect("hashkv");
        if last.windows(2).all(|w| w.first() == w.get(1)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("members differ (revision, hashkv): {last:?}");
}
