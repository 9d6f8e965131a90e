//! The event model: one watch event of a delta as the decoder hands it out ([`Event`], borrowed),
//! its owned copy, and what a whole delta contained.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum EventKind {
    Put,
    Delete,
}

/// One watch event of a delta snapshot. `key`/`value` are the decoded bytes; they are only
/// valid for the duration of the callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event<'a> {
    pub kind: EventKind,
    pub key: &'a [u8],
    pub value: &'a [u8],
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
    pub lease: i64,
    /// When the backup sidecar received the event (RFC 3339); informational only.
    pub time: &'a str,
}

/// What a decoded delta contained.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct DeltaStats {
    pub events: u64,
    pub first_revision: Option<i64>,
    pub last_revision: Option<i64>,
    /// Length of the JSON text (object length minus the hash).
    pub json_bytes: u64,
}

/// An owned copy of an event, for tests and overlap checks.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct OwnedEvent {
    pub kind: EventKind,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
    pub lease: i64,
}

impl From<&Event<'_>> for OwnedEvent {
    fn from(e: &Event<'_>) -> Self {
        OwnedEvent {
            kind: e.kind,
            key: e.key.to_vec(),
            value: e.value.to_vec(),
            create_revision: e.create_revision,
            mod_revision: e.mod_revision,
            version: e.version,
            lease: e.lease,
        }
    }
}
