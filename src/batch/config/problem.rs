//! What can be wrong with a batch file: every [`Problem`] is collected before a [`BatchError`]
//! says so.

use std::path::PathBuf;

/// One thing wrong with a batch file. `member` is the alias, or `#N` (1-based) without one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("`members` is empty: list at least one member")]
    NoMembers,
    #[error("`defaults.parallel` is 0: use 1 or more")]
    ZeroParallel,
    #[error("{member}: `alias` is missing: give every member a unique alias")]
    NoAlias { member: String },
    #[error("alias {alias:?} is used by members #{first} and #{second}: aliases must be unique")]
    DuplicateAlias {
        alias: String,
        first: usize,
        second: usize,
    },
    #[error("{member}: no store: set `store` on the member or `defaults.store`")]
    NoStore { member: String },
    #[error("{member}: store: {detail}")]
    BadStore { member: String, detail: String },
    #[error(
        "{member}: store {store} is also the store of {other}: each alias needs its own store prefix"
    )]
    DuplicateStore {
        member: String,
        other: String,
        store: String,
    },
    #[error("{member}: no target: set `dataDir` or `memberSet`")]
    NoTarget { member: String },
    #[error("{member}: both `dataDir` and `memberSet` are set: use one")]
    BothTargets { member: String },
    #[error("{member}: `memberSet.members` is empty: list the cluster's members")]
    EmptyMemberSet { member: String },
    #[error("{member}: memberSet member #{index}: `{field}` is missing")]
    IncompleteSetMember {
        member: String,
        index: usize,
        field: &'static str,
    },
    #[error("{member}: memberSet: {detail}")]
    BadMemberSet { member: String, detail: String },
    #[error("{member}: data dir {dir} is also the data dir of {other}: data dirs must be unique")]
    DuplicateDataDir {
        member: String,
        other: String,
        dir: PathBuf,
    },
    #[error(
        "{member}: data dir {inner} is inside {outer}, the data dir of {other}: data dirs must not be nested"
    )]
    NestedDataDir {
        member: String,
        other: String,
        inner: PathBuf,
        outer: PathBuf,
    },
    #[error("{member}: both `toRevision` and `toTime` are set: use one")]
    BothPointsInTime { member: String },
    #[error("{member}: `toTime` {value:?} is neither RFC 3339 nor Unix seconds")]
    BadTime { member: String, value: String },
    #[error("{member}: `toRevision` {value} must be positive")]
    BadRevision { member: String, value: i64 },
    #[error("{where_}: compression {value:?}: use gzip, zlib, lzw, zstd or none")]
    BadCompression { where_: String, value: String },
}

/// Why a batch file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("reading batch file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("batch file {path}: {detail} (schema: docs/batch.md)")]
    Syntax { path: PathBuf, detail: String },
    #[error("batch file {path} has {} problem(s); nothing was run:{}", problems.len(), list(problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

fn list(problems: &[Problem]) -> String {
    problems.iter().map(|p| format!("\n  - {p}")).collect()
}
