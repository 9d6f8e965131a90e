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

use crate::show::{hex, key as show_key};

use std::collections::HashSet;

use super::keyindex::{KeyIndex, KeyIndexError, KeyState, Liveness};
use super::kv::{KeyValue, ProtoError};
use super::revision::{Revision, parse_rev_key};
pub use crate::snapstore::delta::{Event, EventKind};

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

/// Why an event stream cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(
        "event for key {key} at revision {got} comes after revision {current}: revisions must not go back"
    )]
    OutOfOrder { key: String, got: i64, current: i64 },
    #[error(
        "revisions {from}..={to} are missing between two events (key {key}); the backup has a gap"
    )]
    Gap { from: i64, to: i64, key: String },
    #[error(
        "event for key {key} at revision {rev}: {field} is {got} in the backup but {expected} from the key's history"
    )]
    Inconsistent {
        key: String,
        rev: Revision,
        field: &'static str,
        expected: i64,
        got: i64,
    },
    #[error("DELETE of key {key} at revision {rev}, but the key does not exist at that point")]
    DeleteOfMissingKey { key: String, rev: Revision },
    #[error(
        "event for key {key} at revision {rev} is covered by the base snapshot but disagrees with it: {reason}"
    )]
    BaseDisagrees {
        key: String,
        rev: Revision,
        reason: String,
    },
    #[error(
        "key {key}: the deltas assume {expected} in the base snapshot, but the base has {found}"
    )]
    BaseState {
        key: String,
        expected: String,
        found: String,
    },
    #[error("base snapshot record {rev_key}: {source}")]
    BaseRecord {
        rev_key: String,
        #[source]
        source: BaseRecordError,
    },
    #[error("event has an invalid revision {0} (revisions start at 1)")]
    BadRevision(i64),
    #[error("writing the record: {0}")]
    Sink(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("reading the base snapshot: {0}")]
    Base(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error(transparent)]
    KeyIndex(#[from] KeyIndexError),
}

/// A base record that cannot be decoded.
#[derive(Debug, thiserror::Error)]
pub enum BaseRecordError {
    #[error("bad revision key: {0}")]
    Key(#[from] super::revision::RevKeyError),
    #[error("bad KeyValue: {0}")]
    Value(#[from] ProtoError),
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

    /// The lease a PUT's record carries.
    fn lease_of(&self, ev: &Event<'_>) -> i64 {
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

    fn check_put(&mut self, ev: &Event<'_>, at: Revision) -> Result<(), ApplyError> {
        let implied = if ev.version == 1 {
            if ev.create_revision != at.main {
                return Err(inconsistent(
                    ev,
                    at,
                    "create_revision",
                    at.main,
                    ev.create_revision,
                ));
            }
            Liveness::Absent
        } else if ev.version > 1 && ev.create_revision >= 1 && ev.create_revision < at.main {
            Liveness::Live {
                create: ev.create_revision,
                version: ev.version - 1,
            }
        } else if ev.version < 1 {
            return Err(inconsistent(ev, at, "version", 1, ev.version));
        } else {
            return Err(inconsistent(
                ev,
                at,
                "create_revision",
                at.main - 1,
                ev.create_revision,
            ));
        };
        match self.keys.get(ev.key)? {
            Some(mut st) => {
                match (st.now, implied) {
                    (Liveness::Live { create, version }, _) => {
                        if create != ev.create_revision {
                            return Err(inconsistent(
                                ev,
                                at,
                                "create_revision",
                                create,
                                ev.create_revision,
                            ));
                        }
                        if version + 1 != ev.version {
                            return Err(inconsistent(ev, at, "version", version + 1, ev.version));
                        }
                    }
                    (Liveness::Absent, Liveness::Absent) => {}
                    (Liveness::Absent, Liveness::Live { .. }) => {
                        return Err(inconsistent(ev, at, "version", 1, ev.version));
                    }
                }
                st.now = Liveness::Live {
                    create: ev.create_revision,
                    version: ev.version,
                };
                st.lease = self.lease_of(ev);
                self.keys.put(ev.key, st)?;
            }
            None => {
                self.keys.put(
                    ev.key,
                    KeyState {
                        now: Liveness::Live {
                            create: ev.create_revision,
                            version: ev.version,
                        },
                        base_expect: Some(implied),
                        base_found: None,
                        lease: self.lease_of(ev),
                    },
                )?;
            }
        }
        Ok(())
    }

    fn check_delete(&mut self, ev: &Event<'_>, at: Revision) -> Result<(), ApplyError> {
        match self.keys.get(ev.key)? {
            Some(mut st) => {
                if st.now == Liveness::Absent {
                    return Err(ApplyError::DeleteOfMissingKey {
                        key: show_key(ev.key),
                        rev: at,
                    });
                }
                st.now = Liveness::Absent;
                st.lease = 0;
                self.keys.put(ev.key, st)?;
            }
            None => {
                // The key must be live in the base; its create/version are unknown until the
                // base is scanned, so any live state is accepted there.
                self.keys.put(
                    ev.key,
                    KeyState {
                        now: Liveness::Absent,
                        base_expect: Some(Liveness::Live {
                            create: 0,
                            version: 0,
                        }),
                        base_found: None,
                        lease: 0,
                    },
                )?;
            }
        }
        Ok(())
    }

    fn check_covered<B: BaseLookup>(
        &mut self,
        ev: &Event<'_>,
        base: &mut B,
    ) -> Result<(), ApplyError> {
        let rev = ev.mod_revision;
        let sub = match self.covered {
            Some((r, s)) if r == rev => s + 1,
            Some((r, _)) if r > rev => {
                return Err(ApplyError::OutOfOrder {
                    key: show_key(ev.key),
                    got: rev,
                    current: r,
                });
            }
            _ => 0,
        };
        self.covered = Some((rev, sub));
        let at = Revision::new(rev, sub);
        let tomb = ev.kind == EventKind::Delete;
        let disagree = |reason: String| ApplyError::BaseDisagrees {
            key: show_key(ev.key),
            rev: at,
            reason,
        };
        let stored = BaseLookup::get(base, at.to_key(tomb).as_bytes())
            .map_err(|e| ApplyError::Base(Box::new(e)))?
            .ok_or_else(|| {
                disagree(format!(
                    "the base has no {} record at that revision",
                    if tomb { "tombstone" } else { "PUT" }
                ))
            })?;
        let kv = KeyValue::decode(&stored).map_err(|e| disagree(format!("stored value: {e}")))?;
        if kv.key != ev.key {
            return Err(disagree(format!(
                "the base record is for key {}",
                show_key(kv.key)
            )));
        }
        if !tomb
            && (kv.value != ev.value
                || kv.create_revision != ev.create_revision
                || kv.version != ev.version
                || kv.lease != ev.lease)
        {
            return Err(disagree(format!(
                "value/create_revision/version/lease differ (base: create {} version {} lease {})",
                kv.create_revision, kv.version, kv.lease
            )));
        }
        self.stats.events_skipped += 1;
        Ok(())
    }

    /// Checks what the deltas assumed about keys that existed before them against the base.
    /// `records` yields the base's `key` bucket in key order.
    pub fn verify_base<I, K, V, E>(&mut self, records: I) -> Result<(), ApplyError>
    where
        I: IntoIterator<Item = Result<(K, V), E>>,
        K: AsRef<[u8]>,
        V: AsRef<[u8]>,
        E: std::error::Error + Send + Sync + 'static,
    {
        if self.keys.is_empty() {
            return Ok(());
        }
        for item in records {
            let (k, v) = item.map_err(|e| ApplyError::Base(Box::new(e)))?;
            let (k, v) = (k.as_ref(), v.as_ref());
            let bad = |source: BaseRecordError| ApplyError::BaseRecord {
                rev_key: hex(k),
                source,
            };
            let parsed = parse_rev_key(k).map_err(|e| bad(e.into()))?;
            if parsed.rev.main > self.base_rev {
                break;
            }
            let kv = KeyValue::decode(v).map_err(|e| bad(e.into()))?;
            // Records come in revision order: the last one seen is the key's state at the base.
            if let Some(mut st) = self.keys.get(kv.key)?
                && st.base_expect.is_some()
            {
                st.base_found = Some(if parsed.tombstone {
                    Liveness::Absent
                } else {
                    Liveness::Live {
                        create: kv.create_revision,
                        version: kv.version,
                    }
                });
                self.keys.put(kv.key, st)?;
            }
        }
        let mut verified = 0;
        self.keys.for_each(|key, st| {
            let Some(expect) = st.base_expect else {
                return Ok(());
            };
            let found = st.base_found.unwrap_or(Liveness::Absent);
            let ok = match (expect, found) {
                (Liveness::Absent, Liveness::Absent) => true,
                // A DELETE only needs the key to be live (create/version 0 = any).
                (
                    Liveness::Live {
                        create: 0,
                        version: 0,
                    },
                    Liveness::Live { .. },
                ) => true,
                (a, b) => a == b,
            };
            if !ok {
                return Err(ApplyError::BaseState {
                    key: show_key(key),
                    expected: if expect
                        == (Liveness::Live {
                            create: 0,
                            version: 0,
                        }) {
                        "a live key".to_string()
                    } else {
                        expect.describe()
                    },
                    found: found.describe(),
                });
            }
            verified += 1;
            Ok(())
        })?;
        self.stats.keys_verified_against_base = verified;
        Ok(())
    }
}

fn inconsistent(
    ev: &Event<'_>,
    at: Revision,
    field: &'static str,
    expected: i64,
    got: i64,
) -> ApplyError {
    ApplyError::Inconsistent {
        key: show_key(ev.key),
        rev: at,
        field,
        expected,
        got,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::convert::Infallible;

    #[derive(Default)]
    struct MapSink {
        records: BTreeMap<Vec<u8>, Vec<u8>>,
        ends: Vec<i64>,
    }
    impl RecordSink for MapSink {
        type Error = Infallible;
        fn put(&mut self, k: &[u8], v: &[u8]) -> Result<(), Infallible> {
            self.records.insert(k.to_vec(), v.to_vec());
            Ok(())
        }
        fn end_revision(&mut self, main: i64) -> Result<(), Infallible> {
            self.ends.push(main);
            Ok(())
        }
    }
    impl BaseLookup for MapSink {
        type Error = Infallible;
        fn get(&mut self, k: &[u8]) -> Result<Option<Vec<u8>>, Infallible> {
            Ok(self.records.get(k).cloned())
        }
    }

    fn put(key: &'static [u8], create: i64, rev: i64, version: i64) -> Event<'static> {
        Event {
            kind: EventKind::Put,
            key,
            value: b"v",
            create_revision: create,
            mod_revision: rev,
            version,
            lease: 0,
            time: "",
        }
    }
    fn del(key: &'static [u8], rev: i64) -> Event<'static> {
        Event {
            kind: EventKind::Delete,
            key,
            value: b"",
            create_revision: 0,
            mod_revision: rev,
            version: 0,
            lease: 0,
            time: "",
        }
    }

    /// Builds a base by applying events from revision 1 (an empty store).
    fn base_of(events: &[Event<'static>]) -> (MapSink, i64) {
        let mut sink = MapSink::default();
        let mut a = Applier::new(1, LeasePolicy::default());
        for e in events {
            a.apply(e, &mut sink).unwrap();
        }
        a.finish(&mut sink).unwrap();
        let rev = a.current_revision();
        (sink, rev)
    }

    type Record = Result<(Vec<u8>, Vec<u8>), Infallible>;

    fn records(s: &MapSink) -> Vec<Record> {
        s.records
            .iter()
            .map(|(k, v)| Ok((k.clone(), v.clone())))
            .collect()
    }

    #[test]
    fn writes_puts_tombstones_and_sub_revisions_like_etcd() {
        let (sink, rev) = base_of(&[
            put(b"a", 2, 2, 1),
            put(b"b", 3, 3, 1),
            put(b"c", 3, 3, 1), // same txn: sub 1
            put(b"a", 2, 4, 2),
            del(b"b", 5),
        ]);
        assert_eq!(rev, 5);
        assert_eq!(sink.ends, vec![2, 3, 4, 5]);
        let keys: Vec<String> = sink.records.keys().map(|k| hex(k)).collect();
        assert_eq!(
            keys,
            vec![
                "00000000000000025f0000000000000000",
                "00000000000000035f0000000000000000",
                "00000000000000035f0000000000000001",
                "00000000000000045f0000000000000000",
                "00000000000000055f000000000000000074",
            ]
        );
        let kv =
            KeyValue::decode(&sink.records[&Revision::new(4, 0).to_key(false).as_bytes().to_vec()])
                .unwrap();
        assert_eq!(
            (kv.key, kv.create_revision, kv.mod_revision, kv.version),
            (&b"a"[..], 2, 4, 2)
        );
        let t = &sink.records[&Revision::new(5, 0).to_key(true).as_bytes().to_vec()];
        assert_eq!(t, &vec![0x0a, 0x01, b'b']);
    }

    #[test]
    fn detects_wrong_versions_gaps_and_double_deletes() {
        let mut s = MapSink::default();
        let mut a = Applier::new(1, LeasePolicy::default());
        a.apply(&put(b"a", 2, 2, 1), &mut s).unwrap();
        let e = a.apply(&put(b"a", 2, 3, 3), &mut s).unwrap_err();
        assert!(
            matches!(
                e,
                ApplyError::Inconsistent {
                    field: "version",
                    expected: 2,
                    got: 3,
                    ..
                }
            ),
            "{e}"
        );
        let e = a.apply(&put(b"x", 5, 5, 1), &mut s).unwrap_err();
        assert!(matches!(e, ApplyError::Gap { from: 3, to: 4, .. }), "{e}");
        a.apply(&del(b"a", 3), &mut s).unwrap();
        let e = a.apply(&del(b"a", 4), &mut s).unwrap_err();
        assert!(matches!(e, ApplyError::DeleteOfMissingKey { .. }), "{e}");
        let e = a.apply(&put(b"q", 2, 2, 1), &mut s).unwrap_err();
        assert!(
            matches!(e, ApplyError::OutOfOrder { .. })
                || matches!(e, ApplyError::BaseDisagrees { .. }),
            "{e}"
        );
    }

    #[test]
    fn events_covered_by_the_base_are_checked_and_skipped() {
        let (base, base_rev) =
            base_of(&[put(b"a", 2, 2, 1), put(b"b", 3, 3, 1), put(b"a", 2, 4, 2)]);
        let mut lookup = MapSink {
            records: base.records.clone(),
            ends: vec![],
        };
        let mut a = Applier::new(base_rev, LeasePolicy::default());
        // A delta that starts before the base's revision (upstream 1044): the overlap is skipped.
        a.apply(&put(b"b", 3, 3, 1), &mut lookup).unwrap();
        a.apply(&put(b"a", 2, 4, 2), &mut lookup).unwrap();
        a.apply(&put(b"a", 2, 5, 3), &mut lookup).unwrap();
        a.finish(&mut lookup).unwrap();
        assert_eq!(a.stats().events_skipped, 2);
        assert_eq!(a.stats().events_applied, 1);
        a.verify_base(records(&base)).unwrap();
        assert_eq!(a.stats().keys_verified_against_base, 1);

        // A covered event that disagrees with the base is refused.
        let mut a = Applier::new(base_rev, LeasePolicy::default());
        let mut wrong = put(b"b", 3, 3, 1);
        wrong.value = b"other";
        let e = a.apply(&wrong, &mut lookup).unwrap_err();
        assert!(matches!(e, ApplyError::BaseDisagrees { .. }), "{e}");
    }

    #[test]
    fn base_state_assumed_by_the_deltas_is_verified() {
        let (base, base_rev) = base_of(&[put(b"a", 2, 2, 1), put(b"b", 3, 3, 1), del(b"b", 4)]);
        let lookup = MapSink {
            records: base.records.clone(),
            ends: vec![],
        };
        let run = |events: &[Event<'static>]| {
            let mut lookup = MapSink {
                records: lookup.records.clone(),
                ends: vec![],
            };
            let mut a = Applier::new(base_rev, LeasePolicy::default());
            for e in events {
                a.apply(e, &mut lookup)?;
            }
            a.verify_base(records(&base))
        };
        // Correct: "a" continues at version 2, "b" is re-created, "a" then deleted.
        run(&[put(b"a", 2, 5, 2), put(b"b", 6, 6, 1), del(b"a", 7)]).unwrap();
        // Wrong: the delta claims "a" was created at 3.
        assert!(matches!(
            run(&[put(b"a", 3, 5, 2)]),
            Err(ApplyError::BaseState { .. })
        ));
        // Wrong: "b" is not live in the base, yet the delta deletes it.
        assert!(matches!(
            run(&[del(b"b", 5)]),
            Err(ApplyError::BaseState { .. })
        ));
        // Wrong: "a" is live in the base, yet the delta creates it anew.
        assert!(matches!(
            run(&[put(b"a", 5, 5, 1)]),
            Err(ApplyError::BaseState { .. })
        ));
    }

    #[test]
    fn unknown_leases_of_live_keys_are_reported_and_strip_all_removes_every_lease() {
        let mut out = MapSink::default();
        let policy = LeasePolicy {
            known: [7].into_iter().collect(),
            ..Default::default()
        };
        let mut a = Applier::new(1, policy);
        let with_lease = |e: Event<'static>, l: i64| Event { lease: l, ..e };
        a.apply(&with_lease(put(b"a", 2, 2, 1), 7), &mut out)
            .unwrap();
        a.apply(&with_lease(put(b"b", 3, 3, 1), 8), &mut out)
            .unwrap();
        // "c" held lease 9, then was deleted (its lease revoked): 9 is not granted again.
        a.apply(&with_lease(put(b"c", 4, 4, 1), 9), &mut out)
            .unwrap();
        a.apply(&del(b"c", 5), &mut out).unwrap();
        // "d" moved from lease 10 to lease 11.
        a.apply(&with_lease(put(b"d", 6, 6, 1), 10), &mut out)
            .unwrap();
        a.apply(&with_lease(put(b"d", 6, 7, 2), 11), &mut out)
            .unwrap();
        assert_eq!(a.stats().leases_stripped, 0);
        assert_eq!(
            a.unknown_leases().unwrap().into_iter().collect::<Vec<_>>(),
            vec![8, 11]
        );
        let leases: Vec<i64> = out
            .records
            .values()
            .map(|v| KeyValue::decode(v).unwrap().lease)
            .collect();
        assert_eq!(leases, vec![7, 8, 9, 0, 10, 11]);

        let mut out = MapSink::default();
        let mut a = Applier::new(
            1,
            LeasePolicy {
                strip_all: true,
                ..Default::default()
            },
        );
        a.apply(&with_lease(put(b"a", 2, 2, 1), 7), &mut out)
            .unwrap();
        assert_eq!(a.stats().leases_stripped, 1);
        assert!(a.unknown_leases().unwrap().is_empty());
        assert_eq!(
            KeyValue::decode(out.records.values().next().unwrap())
                .unwrap()
                .lease,
            0
        );
    }
}
