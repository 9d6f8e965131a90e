//! Choosing what to restore from a snapshot list, and proving it is contiguous before any
//! download.
//!
//! Selection is etcd-backup-restore's (`GetLatestFullSnapshotAndDeltaSnapList`): sort by last
//! revision, then creation second; walk from the end collecting deltas until the first full
//! snapshot, which is the base. On top of that we check what upstream only finds out while
//! replaying (see docs/snapstore.md):
//!
//! * a delta whose whole range is at or below what is already covered is skipped (upstream
//!   issue 844); if it is covered by another delta, the two must agree where they overlap;
//! * two deltas with the same start (leader hand-off, issue 1043): the one reaching furthest is
//!   applied, the other is checked against it;
//! * a delta that starts inside the covered range is applied from the first uncovered revision;
//! * a hole between the covered range and the next delta is a [`PlanError::Gap`].
//!
//! The base's real revision is only known once it is downloaded (its name can lag the db, issue
//! 1044), so skipping events at or below the db's revision is the applier's job.
//!
//! * `model`: [`Plan`] and its parts; `options`: [`PlanOptions`]; `select`: [`plan`] itself;
//! * `error`: [`PlanError`].

mod error;
mod model;
mod options;
mod select;
#[cfg(test)]
mod tests;

pub use error::PlanError;
pub use model::{Plan, PlannedDelta, SkippedDelta};
pub use options::PlanOptions;
pub use select::{plan, sort_snapshots};
