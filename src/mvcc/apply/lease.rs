//! Leases on applied keys: stripped (as `etcdbrctl restore` does), kept, or kept and granted
//! when the base snapshot does not have them.

use std::collections::HashSet;

use super::{Applier, ApplyError, Event};
use crate::mvcc::keyindex::Liveness;

/// What a restore does with a lease the base snapshot does not have (one granted after it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UnknownLeases {
    /// Keep the key's lease ID and grant the lease: the caller writes a lease record for each
    /// of [`Applier::unknown_leases`], so the key expires when that lease does.
    #[default]
    Grant,
    /// Keep the ID and grant nothing (the key records equal the source's, but etcd logs
    /// "failed to attach lease" for such keys at start-up and they never expire).
    KeepId,
}

/// How leases on applied keys are treated.
#[derive(Clone, Debug, Default)]
pub struct LeasePolicy {
    /// Lease IDs present in the base DB's `lease` bucket.
    pub known: HashSet<i64>,
    /// Strip every lease, like `etcdbrctl restore` (which never re-attaches leases).
    pub strip_all: bool,
    pub unknown: UnknownLeases,
}

impl Applier {
    /// The lease a PUT's record carries.
    pub(super) fn lease_of(&self, ev: &Event<'_>) -> i64 {
        if self.leases.strip_all { 0 } else { ev.lease }
    }

    /// Leases that live keys written by the deltas carry and the base does not have: the
    /// ones to grant. Call after the last event.
    pub fn unknown_leases(&mut self) -> Result<std::collections::BTreeSet<i64>, ApplyError> {
        let mut out = std::collections::BTreeSet::new();
        let known = &self.leases.known;
        self.keys.for_each(|_, st| {
            if matches!(st.now, Liveness::Live { .. })
                && st.lease != 0
                && !known.contains(&st.lease)
            {
                out.insert(st.lease);
            }
            Ok::<(), ApplyError>(())
        })?;
        Ok(out)
    }
}
