//! Each event's `create_revision` and `version` against the key's history as the applier
//! has seen it: a disagreement means a lost or duplicated event. A key first seen here
//! records what its event implies about the base, which [`Applier::verify_base`] checks.

use crate::show::key as show_key;

use super::{Applier, ApplyError, Event};
use crate::mvcc::keyindex::{KeyState, Liveness};
use crate::mvcc::revision::Revision;

impl Applier {
    pub(super) fn check_put(&mut self, ev: &Event<'_>, at: Revision) -> Result<(), ApplyError> {
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

    pub(super) fn check_delete(&mut self, ev: &Event<'_>, at: Revision) -> Result<(), ApplyError> {
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
