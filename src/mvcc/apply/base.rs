//! Checks against the base snapshot: events the base already covers are compared with its
//! records and skipped, and what later events assume about keys that existed before them is
//! verified in one sequential pass over the base's `key` bucket.

use crate::show::{hex, key as show_key};

use super::{Applier, ApplyError, BaseLookup, BaseRecordError, Event, EventKind};
use crate::mvcc::keyindex::Liveness;
use crate::mvcc::kv::KeyValue;
use crate::mvcc::revision::{Revision, parse_rev_key};

impl Applier {
    pub(super) fn check_covered<B: BaseLookup>(
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
