//! Why a delta could not be decoded: each error names the object and the byte offset or event.

use thiserror::Error;

/// Why a delta could not be decoded. `E` is the callback's own error.
#[derive(Debug, Error)]
pub enum DeltaError<E> {
    #[error(
        "{object}: {len} bytes is too short for a delta snapshot (JSON followed by a 32-byte SHA-256)"
    )]
    TooShort { object: String, len: u64 },
    #[error(
        "{object}: SHA-256 trailer at byte {offset} is {expected} but the JSON hashes to {actual}"
    )]
    Hash {
        object: String,
        offset: u64,
        expected: String,
        actual: String,
    },
    #[error("{object}: malformed delta JSON near byte {offset}: {detail}")]
    Json {
        object: String,
        offset: u64,
        detail: String,
    },
    #[error("{object}: event {index} near byte {offset}: bad base64 in kv.{field}: {detail}")]
    Base64 {
        object: String,
        index: u64,
        offset: u64,
        field: &'static str,
        detail: String,
    },
    #[error("{object}: event {index} near byte {offset}: {detail}")]
    Event {
        object: String,
        index: u64,
        offset: u64,
        detail: String,
    },
    /// The callback returned an error; decoding stopped there.
    #[error("{object}: event {index} (revision {revision}) was refused: {source}")]
    Callback {
        object: String,
        index: u64,
        revision: i64,
        #[source]
        source: E,
    },
}

impl<E> DeltaError<E> {
    /// The byte offset the error refers to, when it has one.
    pub fn offset(&self) -> Option<u64> {
        match self {
            DeltaError::TooShort { .. } | DeltaError::Callback { .. } => None,
            DeltaError::Hash { offset, .. }
            | DeltaError::Json { offset, .. }
            | DeltaError::Base64 { offset, .. }
            | DeltaError::Event { offset, .. } => Some(*offset),
        }
    }

    /// Replaces the callback error type (for errors that did not come from the callback).
    pub fn map_callback<F>(self, f: impl FnOnce(E) -> F) -> DeltaError<F> {
        match self {
            DeltaError::TooShort { object, len } => DeltaError::TooShort { object, len },
            DeltaError::Hash {
                object,
                offset,
                expected,
                actual,
            } => DeltaError::Hash {
                object,
                offset,
                expected,
                actual,
            },
            DeltaError::Json {
                object,
                offset,
                detail,
            } => DeltaError::Json {
                object,
                offset,
                detail,
            },
            DeltaError::Base64 {
                object,
                index,
                offset,
                field,
                detail,
            } => DeltaError::Base64 {
                object,
                index,
                offset,
                field,
                detail,
            },
            DeltaError::Event {
                object,
                index,
                offset,
                detail,
            } => DeltaError::Event {
                object,
                index,
                offset,
                detail,
            },
            DeltaError::Callback {
                object,
                index,
                revision,
                source,
            } => DeltaError::Callback {
                object,
                index,
                revision,
                source: f(source),
            },
        }
    }
}
