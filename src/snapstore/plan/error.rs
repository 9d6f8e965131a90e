//! Why no plan can be made, or a plan does not hold for the downloaded base.

use thiserror::Error;

use super::options::{PlanOptions, scope};

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PlanError {
    #[error("no full snapshot in the store{}", scope(.options))]
    NoBase { options: PlanOptions },
    #[error("gap in the backup: revisions {from}..={to} are missing between {before} and {after}")]
    Gap {
        from: i64,
        to: i64,
        before: String,
        after: String,
    },
    #[error(
        "revision {requested} is not in the backup: the chain from {base} ends at revision {covered}{}",
        next.as_ref().map(|n| format!(" and the next snapshot, {n}, starts above it")).unwrap_or_default()
    )]
    RevisionNotCovered {
        requested: i64,
        covered: i64,
        base: String,
        next: Option<String>,
    },
    #[error(
        "base {base}: its database is at revision {db_revision}, below the revision {name_revision} in its name"
    )]
    BaseOlderThanName {
        base: String,
        name_revision: i64,
        db_revision: i64,
    },
    #[error(
        "revision {requested} is not in the backup: the base {base} already holds revision {db_revision}"
    )]
    BelowBase {
        requested: i64,
        base: String,
        db_revision: i64,
    },
}
