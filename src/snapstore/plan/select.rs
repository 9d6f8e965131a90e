//! Selection as etcd-backup-restore does it, and the contiguity, overlap and gap checks on top.

use crate::snapstore::name::{Kind, Snapshot};

use super::error::PlanError;
use super::model::{Plan, PlannedDelta, SkippedDelta};
use super::options::PlanOptions;

/// etcd-backup-restore's order: last revision, then creation second. Ties between a full and a
/// delta (same last revision, same second) put the full last so it becomes the base: it already
/// holds everything the delta would add.
pub fn sort_snapshots(list: &mut [Snapshot]) {
    list.sort_by(|a, b| {
        (a.last_revision(), a.created_on(), a.kind(), &a.path).cmp(&(
            b.last_revision(),
            b.created_on(),
            b.kind(),
            &b.path,
        ))
    });
}

/// Builds the restore plan from a store listing (chunks and unknown objects already dropped).
pub fn plan(list: &[Snapshot], options: PlanOptions) -> Result<Plan, PlanError> {
    let mut eligible: Vec<Snapshot> = list
        .iter()
        .filter(|s| options.to_time.is_none_or(|t| s.created_on() <= t))
        .filter(|s| match (options.to_revision, s.kind()) {
            (None, _) => true,
            (Some(r), Kind::Full) => s.last_revision() <= r,
            (Some(r), Kind::Delta) => s.start_revision() <= r,
        })
        .cloned()
        .collect();
    sort_snapshots(&mut eligible);

    let base_index = eligible
        .iter()
        .rposition(|s| s.kind() == Kind::Full)
        .ok_or(PlanError::NoBase { options })?;
    let base = eligible[base_index].clone();
    let mut candidates: Vec<Snapshot> = eligible[base_index + 1..].to_vec();
    // Apply order: by start, then by reach, so of two deltas with the same start the longer one
    // comes second and replaces the shorter.
    candidates.sort_by(|a, b| {
        (
            a.start_revision(),
            a.last_revision(),
            a.created_on(),
            &a.path,
        )
            .cmp(&(
                b.start_revision(),
                b.last_revision(),
                b.created_on(),
                &b.path,
            ))
    });

    let mut deltas: Vec<PlannedDelta> = Vec::new();
    let mut skipped = Vec::new();
    let mut covered = base.last_revision();
    for d in candidates {
        if d.last_revision() <= covered {
            // Entirely covered. If a delta covers it, that delta must agree with it.
            let coverer = deltas.iter_mut().rev().find(|p| {
                p.snapshot.start_revision() <= d.start_revision()
                    && p.snapshot.last_revision() >= d.last_revision()
            });
            let reason = match coverer {
                Some(p) => {
                    let reason = format!("covered by {}", p.snapshot.path);
                    p.verify_with.push(d.clone());
                    reason
                }
                None if d.last_revision() <= base.last_revision() => format!(
                    "covered by the base snapshot (revision {})",
                    base.last_revision()
                ),
                None => {
                    // Covered by the base and/or several deltas: check against the one it ends in.
                    if let Some(p) = deltas.iter_mut().rev().find(|p| {
                        p.snapshot.start_revision() <= d.last_revision()
                            && p.snapshot.last_revision() >= d.last_revision()
                    }) {
                        p.verify_with.push(d.clone());
                    }
                    "covered by the base and earlier deltas".to_string()
                }
            };
            skipped.push(SkippedDelta {
                snapshot: d,
                reason,
            });
            continue;
        }
        if d.start_revision() > covered + 1 {
            let before = deltas
                .last()
                .map(|p| p.snapshot.path.clone())
                .unwrap_or_else(|| base.path.clone());
            return Err(PlanError::Gap {
                from: covered + 1,
                to: d.start_revision() - 1,
                before,
                after: d.path,
            });
        }
        // Same start as the previous applied delta, reaching further: it replaces that one.
        if let Some(prev) = deltas.pop_if(|p| p.snapshot.start_revision() == d.start_revision()) {
            covered = deltas
                .last()
                .map(|p| p.snapshot.last_revision())
                .unwrap_or(base.last_revision())
                .max(base.last_revision());
            let mut verify_with = prev.verify_with;
            verify_with.insert(0, prev.snapshot.clone());
            skipped.push(SkippedDelta {
                reason: format!("same start revision as {}, which reaches further", d.path),
                snapshot: prev.snapshot,
            });
            deltas.push(PlannedDelta {
                skip_through_revision: (d.start_revision() <= covered).then_some(covered),
                snapshot: d.clone(),
                verify_with,
            });
            covered = d.last_revision();
            continue;
        }
        let mut planned = PlannedDelta {
            skip_through_revision: (d.start_revision() <= covered).then_some(covered),
            verify_with: Vec::new(),
            snapshot: d.clone(),
        };
        // Starts inside the previous delta: their common range must agree.
        if let Some(prev) = deltas.last()
            && d.start_revision() <= prev.snapshot.last_revision()
        {
            planned.verify_with.push(prev.snapshot.clone());
        }
        covered = d.last_revision();
        deltas.push(planned);
    }

    let mut stop_at_revision = None;
    let mut target_revision = covered;
    if let Some(r) = options.to_revision {
        if r > covered {
            let next = list
                .iter()
                .filter(|s| s.last_revision() > covered && s.path != base.path)
                .filter(|s| options.to_time.is_none_or(|t| s.created_on() <= t))
                .min_by_key(|s| (s.start_revision(), s.last_revision()))
                .map(|s| s.path.clone());
            return Err(PlanError::RevisionNotCovered {
                requested: r,
                covered,
                base: base.path.clone(),
                next,
            });
        }
        if r < covered {
            stop_at_revision = Some(r);
        }
        target_revision = r;
    }
    Ok(Plan {
        base,
        deltas,
        skipped,
        target_revision,
        stop_at_revision,
        to_revision: options.to_revision,
    })
}
