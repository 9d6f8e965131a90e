//! Error types. Every error that comes from file contents names the page and byte offset.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system error while reading, writing or syncing the file.
    #[error("{}: {op} at byte offset {offset}: {source}", path.display())]
    Io {
        path: PathBuf,
        op: &'static str,
        offset: u64,
        #[source]
        source: io::Error,
    },
    /// A structure in the file is malformed.
    #[error("page {page} (byte offset {offset}): {kind}")]
    Corrupt {
        page: u64,
        offset: u64,
        kind: Corruption,
    },
    /// Neither meta page is usable.
    #[error("{}: no valid meta page (meta 0: {meta0}; meta 1: {meta1})", path.display())]
    NoValidMeta {
        path: PathBuf,
        meta0: MetaError,
        meta1: MetaError,
    },
    /// The file is shorter than two pages or than the page size probe needs.
    #[error("{}: file too small ({len} bytes) for a bbolt database", path.display())]
    TooSmall { path: PathBuf, len: u64 },
    /// Another process holds a conflicting lock on the file.
    #[error("{}: database file is locked by another process", path.display())]
    Locked { path: PathBuf },
    #[error("database was opened read-only")]
    ReadOnly,
    #[error("an earlier commit failed after its meta page was written; reopen the database")]
    Poisoned,
    #[error("bucket not found: {}", show(name))]
    BucketNotFound { name: Vec<u8> },
    #[error("bucket already exists: {}", show(name))]
    BucketExists { name: Vec<u8> },
    /// The key exists, but as a bucket where a value was expected or the other way round.
    #[error("incompatible value for key {}", show(key))]
    IncompatibleValue { key: Vec<u8> },
    #[error("key must not be empty")]
    KeyEmpty,
    #[error("key is {0} bytes, the limit is 32768")]
    KeyTooLarge(usize),
    #[error("value is {0} bytes, the limit is 2147483646")]
    ValueTooLarge(usize),
    /// Input for the bulk loader or another API was not acceptable.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

/// What exactly is wrong with a page. Used both by readers (inside [`Error::Corrupt`]) and by
/// the checker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Corruption {
    #[error("page run ends at byte {end}, beyond the end of the file ({file_len} bytes)")]
    BeyondEof { end: u64, file_len: u64 },
    #[error("page run reaches the high-water mark {hwm}")]
    BeyondHwm { hwm: u64 },
    #[error("page id is reserved for a meta page")]
    MetaId,
    #[error("page header names id {found}")]
    IdMismatch { found: u64 },
    #[error("page type flags {flags:#x}, expected {expected}")]
    BadType { flags: u16, expected: &'static str },
    #[error("{count} elements do not fit in the page")]
    ElementArray { count: u32 },
    #[error("element {index}: key or value lies outside the page")]
    ElementBounds { index: usize },
    #[error("element {index}: empty key")]
    EmptyKey { index: usize },
    #[error("element {index}: bucket value of {len} bytes (a paged bucket needs exactly 16)")]
    BucketValue { index: usize, len: usize },
    #[error("element {index}: bucket root page {root} is invalid")]
    BucketRoot { index: usize, root: u64 },
    #[error("inline bucket page: {0}")]
    Inline(&'static str),
    #[error("branch page has no elements")]
    EmptyBranch,
    #[error("tree is deeper than {0} levels (cycle?)")]
    TooDeep(usize),
    #[error("a page is reachable along more than one path (cycle or shared subtree)")]
    SharedPage,
    #[error("freelist: {0}")]
    Freelist(String),
    #[error("page {0} is freed twice")]
    DoubleFree(u64),
    #[error("element {index}: key out of order")]
    KeyOrder { index: usize },
    #[error("element {index}: value is a bucket where a plain value was expected or vice versa")]
    ValueKind { index: usize },
}

/// Why a meta page is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetaError {
    #[error("page is cut short by the end of the file")]
    Truncated,
    #[error("bad magic {0:#010x}")]
    Magic(u32),
    #[error("unsupported version {0}")]
    Version(u32),
    #[error("checksum {stored:#018x} does not match computed {computed:#018x}")]
    Checksum { stored: u64, computed: u64 },
    #[error("page size {0} is not a power of two in [512, 65536]")]
    PageSize(u32),
    #[error("page size {found} differs from the file's page size {expected}")]
    PageSizeMismatch { found: u32, expected: u32 },
    #[error("high-water mark {0} is below 3")]
    Hwm(u64),
    #[error("root page {root} is outside [2, {hwm})")]
    Root { root: u64, hwm: u64 },
    #[error("freelist page {freelist} is outside [2, {hwm})")]
    Freelist { freelist: u64, hwm: u64 },
}

impl Error {
    pub(crate) fn corrupt(page: u64, offset: u64, kind: Corruption) -> Self {
        Error::Corrupt { page, offset, kind }
    }
}

pub(crate) fn show(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) if s.chars().all(|c| !c.is_control()) => format!("{s:?}"),
        _ => {
            let mut out = String::from("0x");
            for x in b {
                out.push_str(&format!("{x:02x}"));
            }
            out
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
