//! Applying watch events to an etcd backend as MVCC records, the way etcd's own write path
//! would have stored them.
//!
//! etcd-backup-restore replays each source revision as one client transaction against an
//! embedded etcd. We write the records that transaction would have produced directly:
//!
//! * PUT at `{main: mod_revision, sub: i}` (i = the event's index within its revision) →
//!   `key[revbytes] = mvccpb.KeyValue{key, create_revision, mod_revision, version, value, lease}`;
//! * DELETE → `key[revbytes + 't'] = mvccpb.KeyValue{key}` (etcd's tombstone).
//!
//! Every event carries its own create_revision and version; we recompute both from the key's
//! history and refuse the backup when they disagree, because a disagreement means a lost or
//! duplicated event. Keys whose history starts in the base DB are checked against the base in
//! one sequential pass at the end ([`Applier::verify_base`]). The per-key state lives in a
//! [`KeyIndex`] that spills to a scratch file past its budget, so memory grows neither with the
//! size of the base nor with the number of keys the deltas touch.
//!
//! Leases: a key keeps the lease ID its event carries; [`Applier::unknown_leases`] names the
//! leases live keys hold that the base does not have, which the caller grants.
//!
//! Nothing here reads the wall clock: no lease can expire during a restore (upstream
//! etcd-backup-restore issues 1045/1046).
//!
//! Files: this one holds the record model and the write path ([`Applier::apply`]);
//! `history.rs` the checks of each event against the key's history, `base.rs` the checks
//! against the base snapshot, `lease.rs` the lease policy, `error.rs` the errors.

mod base;
mod error;
mod history;
mod lease;
#[cfg(test)]
mod tests;

pub use self::error::{ApplyError, BaseRecordError};
pub use self::lease::{LeasePolicy, UnknownLeases};
pub use crate::snapstore::delta::{Event, EventKind};

use crate::show::key as show_key;

use super::keyindex::KeyIndex;
use super::kv::KeyValue;
use super::revision::Revision;

/// Where the applier writes records. Implemented over a bbolt write transaction by restore,
/// and over plain vectors in tests.
pub trait RecordSink {
    type Error: std::error::Error + Send + Sync + 'static;
    /// Stores `key[rev_key] = value` in the `key` bucket. Keys arrive in increasing order.
    fn put(&mut self, rev_key: &[u8], value: &[u8]) -> Result<(), Self::Error>;
    /// Called after the last record of a source revision; a good place to commit a batch.
    fn end_revision(&mut self, main: i64) -> Result<(), Self::Error>;
}

/// Read access to the base DB's `key` bucket by exact revision key.
pub trait BaseLookup {
    type Error: std::error::Error + Send + Sync + 'static;
    fn get(&mut self, rev_key: &[u8]) -> Result<Option<Vec<u8>>, Self::Error>;
}

/// Counters for the report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ApplyStats {
    /// Events written as new records.
    pub events_applied: u64,
    /// Events at or below the base revision that matched the base and were skipped.
    pub events_skipped: u64,
    /// Source revisions written.
    pub revisions_applied: u64,
    /// PUTs whose lease was removed (`strip_all`).
    pub leases_stripped: u64,
    /// Leases granted because live keys carry them and the base does not have them.
    pub leases_granted: u64,
    /// Keys whose history was checked against the base at the end.
    pub keys_verified_against_base: u64,
}

/// Applies events in order. Holds one small entry per distinct key the deltas touch, in a
/// [`KeyIndex`] that spills to a scratch file past its budget.
pub struct Applier {
    base_rev: i64,
    /// Highest revision written (or the base revision before the first write).
    current: i64,
    /// Number of events already seen in `current` (the next event's sub revision).
    next_sub: i64,
    /// Sub index within the revision of the last skipped (covered) event.
    covered: Option<(i64, i64)>,
    keys: KeyIndex,
    leases: LeasePolicy,
    stats: ApplyStats,
    buf: Vec<u8>,
}

impl Applier {
    /// `base_rev` is the highest main revision in the base DB's `key` bucket (not the revision
    /// in the snapshot's name, which can be lower: upstream issue 1044).
    pub fn new(base_rev: i64, leases: LeasePolicy) -> Self {
        Self {
            base_rev,
            current: base_rev,
            next_sub: 0,
            covered: None,
            keys: KeyIndex::in_memory(),
            leases,
            stats: ApplyStats::default(),
            buf: Vec::with_capacity(4096),
        }
    }

    /// Keeps the per-key state within about `budget` bytes of memory, spilling the rest to a
    /// scratch file in `dir`.
    pub fn bound_memory(mut self, budget: usize, dir: &std::path::Path) -> Self {
        self.keys = KeyIndex::bounded(budget, dir);
        self
    }

    /// Whether the per-key state outgrew its memory budget.
    pub fn spilled(&self) -> bool {
        self.keys.spilled()
    }

    pub fn stats(&self) -> ApplyStats {
        self.stats
    }

    /// The highest revision written so far (the base revision before any write).
    pub fn current_revision(&self) -> i64 {
        self.current
    }

    /// Applies one event. Events must come in watch order.
    /// `db` receives the new records and answers lookups of the base's records.
    pub fn apply<S: RecordSink + BaseLookup>(
        &mut self,
        ev: &Event<'_>,
        db: &mut S,
    ) -> Result<(), ApplyError> {
        let rev = ev.mod_revision;
        if rev < 1 {
            return Err(ApplyError::BadRevision(rev));
        }
        if rev <= self.base_rev {
            if self.current > self.base_rev {
                return Err(ApplyError::OutOfOrder {
                    key: show_key(ev.key),
                    got: rev,
                    current: self.current,
                });
            }
            return self.check_covered(ev, db);
        }
        let continues = rev == self.current && self.current > self.base_rev;
        if !continues && rev != self.current + 1 {
            return Err(if rev <= self.current {
                ApplyError::OutOfOrder {
                    key: show_key(ev.key),
                    got: rev,
                    current: self.current,
                }
            } else {
                ApplyError::Gap {
                    from: self.current + 1,
                    to: rev - 1,
                    key: show_key(ev.key),
                }
            });
        }
        let at = Revision::new(rev, if continues { self.next_sub } else { 0 });
        // Check before changing any state, so an error leaves the applier where it was.
        match ev.kind {
            EventKind::Put => self.check_put(ev, at)?,
            EventKind::Delete => self.check_delete(ev, at)?,
        }
        if !continues {
            if self.current > self.base_rev {
                RecordSink::end_revision(db, self.current)
                    .map_err(|e| ApplyError::Sink(Box::new(e)))?;
            }
            self.stats.revisions_applied += 1;
        }
        self.current = rev;
        self.next_sub = at.sub + 1;

        self.buf.clear();
        match ev.kind {
            EventKind::Put => {
                let lease = self.lease_of(ev);
                if lease != ev.lease {
                    self.stats.leases_stripped += 1;
                }
                KeyValue {
                    key: ev.key,
                    create_revision: ev.create_revision,
                    mod_revision: rev,
                    version: ev.version,
                    value: ev.value,
                    lease,
                }
                .encode(&mut self.buf);
                RecordSink::put(db, at.to_key(false).as_bytes(), &self.buf)
                    .map_err(|e| ApplyError::Sink(Box::new(e)))?;
            }
            EventKind::Delete => {
                KeyValue {
                    key: ev.key,
                    ..Default::default()
                }
                .encode(&mut self.buf);
                RecordSink::put(db, at.to_key(true).as_bytes(), &self.buf)
                    .map_err(|e| ApplyError::Sink(Box::new(e)))?;
            }
        }
        self.stats.events_applied += 1;
        Ok(())
    }

    /// Closes the last revision. Call once after the last event.
    pub fn finish<S: RecordSink>(&mut self, sink: &mut S) -> Result<(), ApplyError> {
        if self.current > self.base_rev {
            sink.end_revision(self.current)
                .map_err(|e| ApplyError::Sink(Box::new(e)))?;
        }
        Ok(())
    }
}
