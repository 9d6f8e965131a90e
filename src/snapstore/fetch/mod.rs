//! Downloading snapshots: the full snapshot streamed into a file with etcd's SHA-256 trailer
//! checked and stripped on the way ([`full`]), and delta objects downloaded raw (in memory when
//! small, spooled to a temp file when large) and decompressed when their turn comes
//! ([`delta_object`]).

mod delta_object;
mod full;
mod trailer;

use std::io;
use std::path::PathBuf;

use thiserror::Error;

use super::codec::CodecError;
use super::store::StoreError;

pub use delta_object::{RawObject, check_overlap, decompress_delta, download_raw};
pub use full::{FullInfo, fetch_full, fetch_full_with_progress, write_full};

#[derive(Debug, Error)]
pub enum FetchError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error(
        "{object}: snapshot missing hash ({size} bytes is not 32 more than a multiple of 512) but --skip-hash-check is not set"
    )]
    MissingHash { object: String, size: u64 },
    #[error(
        "{object}: SHA-256 trailer at byte {offset} is {expected} but the database hashes to {actual}"
    )]
    HashMismatch {
        object: String,
        offset: u64,
        expected: String,
        actual: String,
    },
    #[error("{object}: {what} {path}: {source}")]
    Io {
        object: String,
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A delta that failed to decode (the message names the object and offset).
    #[error("{0}")]
    Delta(String),
    #[error("{object} and {other} overlap in revisions {from}..={to} but disagree: {detail}")]
    Overlap {
        object: String,
        other: String,
        from: i64,
        to: i64,
        detail: String,
    },
    #[error("{object}: download task failed: {detail}")]
    Task { object: String, detail: String },
}
