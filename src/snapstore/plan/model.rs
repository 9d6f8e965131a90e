//! The plan: a base, the deltas to apply in order, those left out and why, and its refinement
//! once the base's real revision is known.

use crate::snapstore::name::Snapshot;

use super::error::PlanError;

/// One delta to apply, in order.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PlannedDelta {
    pub snapshot: Snapshot,
    /// Events with `mod_revision <=` this are already covered (by the base's name or an earlier
    /// delta) and must be skipped. The applier must also skip events at or below the base db's
    /// real revision, which the plan cannot know.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skip_through_revision: Option<i64>,
    /// Other deltas that cover part of this one's range and are not applied: their events in the
    /// common revision range must equal this delta's (checked by the prefetcher).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub verify_with: Vec<Snapshot>,
}

/// A delta the plan leaves out, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SkippedDelta {
    pub snapshot: Snapshot,
    pub reason: String,
}

/// What a restore does: the base, then the deltas in order, up to `target_revision`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Plan {
    pub base: Snapshot,
    pub deltas: Vec<PlannedDelta>,
    pub skipped: Vec<SkippedDelta>,
    /// The revision the restored data reaches (by the snapshot names).
    pub target_revision: i64,
    /// Set when `--to-revision` cuts the last delta short: stop after this revision.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_at_revision: Option<i64>,
    /// The `--to-revision` the plan was made for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_revision: Option<i64>,
}

impl Plan {
    /// Refines the plan once the base is downloaded and its real revision is known (the name
    /// can lag the database, upstream issue 1044): deltas the database already covers are
    /// skipped (issue 844), and a delta straddling it is applied from the next revision on.
    pub fn apply_base_revision(&mut self, db_revision: i64) -> Result<(), PlanError> {
        if db_revision < self.base.last_revision() {
            return Err(PlanError::BaseOlderThanName {
                base: self.base.path.clone(),
                name_revision: self.base.last_revision(),
                db_revision,
            });
        }
        if let Some(r) = self.to_revision
            && r < db_revision
        {
            return Err(PlanError::BelowBase {
                requested: r,
                base: self.base.path.clone(),
                db_revision,
            });
        }
        let mut kept = Vec::with_capacity(self.deltas.len());
        for mut d in std::mem::take(&mut self.deltas) {
            if d.snapshot.last_revision() <= db_revision {
                self.skipped.push(SkippedDelta {
                    reason: format!("covered by the base's database (revision {db_revision})"),
                    snapshot: d.snapshot,
                });
                continue;
            }
            if d.snapshot.start_revision() <= db_revision {
                d.skip_through_revision =
                    Some(d.skip_through_revision.unwrap_or(0).max(db_revision));
            }
            kept.push(d);
        }
        self.deltas = kept;
        if self.to_revision.is_none() {
            self.target_revision = self.target_revision.max(db_revision);
        }
        Ok(())
    }
}
