//! A batch that passed every check: its members, each with its own store and targets.

use std::fmt;
use std::path::PathBuf;

use crate::restore::MemberFlags;
use crate::snapstore::{Compression, PlanOptions, StoreConfig};

/// What the batch is for: restore and validate need data directories, compact does not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    Restore,
    Compact,
    Validate,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Restore => "restore",
            Purpose::Compact => "compact",
            Purpose::Validate => "validate",
        }
    }

    pub(super) fn needs_data_dirs(self) -> bool {
        !matches!(self, Purpose::Compact)
    }
}

/// A batch file that passed every check.
#[derive(Clone, Debug)]
pub struct Batch {
    pub path: PathBuf,
    pub purpose: Purpose,
    /// Run the members one after the other in listed order (else in parallel).
    pub maintain_order: bool,
    /// `defaults.parallel`, if given.
    pub parallel: Option<usize>,
    pub members: Vec<Member>,
}

/// One target of the batch, with its own store.
#[derive(Clone, Debug)]
pub struct Member {
    pub alias: String,
    pub store: StoreConfig,
    /// The store's identity (what must be unique across members), e.g. `s3://bucket/prefix`.
    pub store_key: String,
    pub targets: MemberTargets,
    pub plan: PlanOptions,
    /// Compact's output codec (None: the last delta's).
    pub compression: Option<Compression>,
}

/// Where a member is restored (or which directories are validated).
#[derive(Clone, Debug)]
pub enum MemberTargets {
    /// Compact only: no data directory.
    None,
    /// A single-member cluster with etcdbrctl's default member flags.
    One(PathBuf),
    /// A multi-member cluster restored from the one backup: one directory per member.
    Set {
        flags: MemberFlags,
        dirs: Vec<(String, PathBuf)>,
    },
}

impl MemberTargets {
    /// Every data directory, in listed order.
    pub fn dirs(&self) -> Vec<PathBuf> {
        match self {
            MemberTargets::None => Vec::new(),
            MemberTargets::One(d) => vec![d.clone()],
            MemberTargets::Set { dirs, .. } => dirs.iter().map(|(_, d)| d.clone()).collect(),
        }
    }
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.alias, self.store_key)
    }
}
