//! Why an event stream cannot be applied.

use crate::mvcc::keyindex::KeyIndexError;
use crate::mvcc::kv::ProtoError;
use crate::mvcc::revision::{RevKeyError, Revision};

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
    Key(#[from] RevKeyError),
    #[error("bad KeyValue: {0}")]
    Value(#[from] ProtoError),
}
