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

use thiserror::Error;

use super::name::{Kind, Snapshot};

/// Restrict the plan to a point in time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlanOptions {
    /// Stop at this revision: no full snapshot past it, no delta starting after it; the last
    /// delta is applied only up to it.
    pub to_revision: Option<i64>,
    /// Only snapshots created at or before this Unix second.
    pub to_time: Option<i64>,
}

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

fn scope(o: &PlanOptions) -> String {
    match (o.to_revision, o.to_time) {
        (None, None) => String::new(),
        (Some(r), None) => format!(" at or below revision {r}"),
        (None, Some(t)) => format!(" created at or before Unix time {t}"),
        (Some(r), Some(t)) => {
            format!(" at or below revision {r} and created at or before Unix time {t}")
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::super::name::{ObjectKind, classify_object};
    use super::*;

    fn s(name: &str) -> Snapshot {
        match classify_object(&format!("v2/{name}"), None) {
            ObjectKind::Snapshot(s) => s,
            other => panic!("{name}: {other:?}"),
        }
    }

    fn names(p: &Plan) -> Vec<&str> {
        p.deltas
            .iter()
            .map(|d| d.snapshot.snap_name.as_str())
            .collect()
    }

    const FULL: &str = "Full-00000000-00000010-100";

    #[test]
    fn latest_full_and_its_contiguous_deltas() {
        let list = vec![
            s("Full-00000000-00000005-50"),
            s("Incr-00000006-00000008-60"),
            s("Incr-00000011-00000020-110"),
            s(FULL),
            s("Incr-00000021-00000030-120.gz"),
        ];
        let p = plan(&list, PlanOptions::default()).unwrap();
        assert_eq!(p.base.snap_name, FULL);
        assert_eq!(
            names(&p),
            [
                "Incr-00000011-00000020-110",
                "Incr-00000021-00000030-120.gz"
            ]
        );
        assert!(p.deltas.iter().all(|d| d.skip_through_revision.is_none()));
        assert_eq!(p.target_revision, 30);
        assert_eq!(p.stop_at_revision, None);
    }

    #[test]
    fn no_full_is_an_error() {
        let list = vec![s("Incr-00000011-00000020-110")];
        assert!(matches!(
            plan(&list, PlanOptions::default()),
            Err(PlanError::NoBase { .. })
        ));
        assert!(matches!(
            plan(&[], PlanOptions::default()),
            Err(PlanError::NoBase { .. })
        ));
    }

    #[test]
    fn later_compacted_full_wins_with_no_deltas() {
        let list = vec![
            s(FULL),
            s("Incr-00000011-00000020-110"),
            s("Full-00000000-00000020-200"),
        ];
        let p = plan(&list, PlanOptions::default()).unwrap();
        assert_eq!(p.base.snap_name, "Full-00000000-00000020-200");
        assert!(p.deltas.is_empty());
    }

    #[test]
    fn same_last_revision_same_second_prefers_the_full() {
        let list = vec![
            s("Full-00000000-00000005-50"),
            s("Incr-00000006-00000020-200"),
            s("Full-00000000-00000020-200"),
        ];
        let p = plan(&list, PlanOptions::default()).unwrap();
        assert_eq!(p.base.snap_name, "Full-00000000-00000020-200");
        assert!(p.deltas.is_empty());
    }

    #[test]
    fn gap_names_the_missing_range() {
        let list = vec![
            s(FULL),
            s("Incr-00000011-00000020-110"),
            s("Incr-00000024-00000030-120"),
        ];
        let err = plan(&list, PlanOptions::default()).unwrap_err();
        assert_eq!(
            err,
            PlanError::Gap {
                from: 21,
                to: 23,
                before: "v2/Incr-00000011-00000020-110".into(),
                after: "v2/Incr-00000024-00000030-120".into(),
            }
        );
        assert!(err.to_string().contains("21..=23"), "{err}");
        // A gap right after the base names the base.
        let list = vec![s(FULL), s("Incr-00000012-00000020-110")];
        assert!(matches!(
            plan(&list, PlanOptions::default()),
            Err(PlanError::Gap { from: 11, to: 11, before, .. }) if before == format!("v2/{FULL}")
        ));
    }

    #[test]
    fn delta_covered_by_base_is_skipped_issue_844() {
        let list = vec![
            s(FULL),
            s("Incr-00000005-00000010-101"),
            s("Incr-00000011-00000012-102"),
        ];
        let p = plan(&list, PlanOptions::default()).unwrap();
        assert_eq!(names(&p), ["Incr-00000011-00000012-102"]);
        assert_eq!(p.skipped.len(), 1);
        assert_eq!(
            p.skipped[0].snapshot.snap_name,
            "Incr-00000005-00000010-101"
        );
        assert!(p.skipped[0].reason.contains("base"));
    }

    #[test]
    fn base_newer_than_first_delta_start_is_fine_issue_1044() {
        // The delta starts below the base's (named) revision: apply it from the base on.
        let list = vec![s(FULL), s("Incr-00000008-00000015-101")];
        let p = plan(&list, PlanOptions::default()).unwrap();
        assert_eq!(names(&p), ["Incr-00000008-00000015-101"]);
        assert_eq!(p.deltas[0].skip_through_revision, Some(10));
        assert_eq!(p.target_revision, 15);
    }

    #[test]
    fn same_start_takes_the_longest_and_verifies_issue_1043() {
        let list = vec![
            s(FULL),
            s("Incr-00000011-00000020-110"),
            s("Incr-00000021-00000028-120"),
            s("Incr-00000021-00000031-121"),
            s("Incr-00000032-00000040-130"),
        ];
        let p = plan(&list, PlanOptions::default()).unwrap();
        assert_eq!(
            names(&p),
            [
                "Incr-00000011-00000020-110",
                "Incr-00000021-00000031-121",
                "Incr-00000032-00000040-130"
            ]
        );
        let longer = &p.deltas[1];
        assert_eq!(longer.skip_through_revision, None);
        assert_eq!(longer.verify_with.len(), 1);
        assert_eq!(
            longer.verify_with[0].snap_name,
            "Incr-00000021-00000028-120"
        );
        assert_eq!(p.skipped.len(), 1);
        assert_eq!(p.target_revision, 40);
    }

    #[test]
    fn same_start_as_base_overlap() {
        let list = vec![
            s(FULL),
            s("Incr-00000009-00000012-110"),
            s("Incr-00000009-00000015-111"),
        ];
        let p = plan(&list, PlanOptions::default()).unwrap();
        assert_eq!(names(&p), ["Incr-00000009-00000015-111"]);
        assert_eq!(p.deltas[0].skip_through_revision, Some(10));
        assert_eq!(
            p.deltas[0].verify_with[0].snap_name,
            "Incr-00000009-00000012-110"
        );
    }

    #[test]
    fn delta_inside_another_is_skipped_and_verified() {
        let list = vec![
            s(FULL),
            s("Incr-00000011-00000030-110"),
            s("Incr-00000015-00000020-111"),
        ];
        let p = plan(&list, PlanOptions::default()).unwrap();
        assert_eq!(names(&p), ["Incr-00000011-00000030-110"]);
        assert_eq!(
            p.deltas[0].verify_with[0].snap_name,
            "Incr-00000015-00000020-111"
        );
    }

    #[test]
    fn partial_overlap_between_deltas_applies_the_rest() {
        let list = vec![
            s(FULL),
            s("Incr-00000011-00000020-110"),
            s("Incr-00000016-00000025-111"),
        ];
        let p = plan(&list, PlanOptions::default()).unwrap();
        assert_eq!(p.deltas[1].skip_through_revision, Some(20));
        assert_eq!(
            p.deltas[1].verify_with[0].snap_name,
            "Incr-00000011-00000020-110"
        );
    }

    #[test]
    fn to_revision_cuts_inside_a_delta() {
        let list = vec![
            s("Full-00000000-00000005-50"),
            s("Incr-00000006-00000010-60"),
            s(FULL),
            s("Incr-00000011-00000020-110"),
            s("Incr-00000021-00000030-120"),
        ];
        let opts = PlanOptions {
            to_revision: Some(25),
            to_time: None,
        };
        let p = plan(&list, opts).unwrap();
        assert_eq!(p.base.snap_name, FULL);
        assert_eq!(p.deltas.len(), 2);
        assert_eq!(p.stop_at_revision, Some(25));
        assert_eq!(p.target_revision, 25);

        // Exactly a delta's end: no cut needed.
        let p = plan(
            &list,
            PlanOptions {
                to_revision: Some(20),
                to_time: None,
            },
        )
        .unwrap();
        assert_eq!(names(&p), ["Incr-00000011-00000020-110"]);
        assert_eq!(p.stop_at_revision, None);

        // Below the latest full: the older chain.
        let p = plan(
            &list,
            PlanOptions {
                to_revision: Some(8),
                to_time: None,
            },
        )
        .unwrap();
        assert_eq!(p.base.snap_name, "Full-00000000-00000005-50");
        assert_eq!(names(&p), ["Incr-00000006-00000010-60"]);
        assert_eq!(p.stop_at_revision, Some(8));

        // Beyond the end of the backup.
        let err = plan(
            &list,
            PlanOptions {
                to_revision: Some(31),
                to_time: None,
            },
        )
        .unwrap_err();
        assert!(matches!(
            err,
            PlanError::RevisionNotCovered {
                requested: 31,
                covered: 30,
                ..
            }
        ));

        // Below every full snapshot.
        assert!(matches!(
            plan(
                &list,
                PlanOptions {
                    to_revision: Some(4),
                    to_time: None
                }
            ),
            Err(PlanError::NoBase { .. })
        ));
    }

    #[test]
    fn to_revision_inside_the_gap_before_a_later_full() {
        // Taking a full snapshot drops the events since the last delta: 16..=19 are nowhere.
        let list = vec![
            s(FULL),
            s("Incr-00000011-00000015-110"),
            s("Full-00000000-00000019-120"),
            s("Incr-00000020-00000025-130"),
        ];
        let err = plan(
            &list,
            PlanOptions {
                to_revision: Some(17),
                to_time: None,
            },
        )
        .unwrap_err();
        match err {
            PlanError::RevisionNotCovered {
                requested,
                covered,
                next,
                ..
            } => {
                assert_eq!((requested, covered), (17, 15));
                assert_eq!(next.as_deref(), Some("v2/Full-00000000-00000019-120"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn to_time_uses_creation_seconds() {
        let list = vec![
            s("Full-00000000-00000005-50"),
            s("Incr-00000006-00000010-60"),
            s(FULL),
            s("Incr-00000011-00000020-110"),
            s("Incr-00000021-00000030-120"),
        ];
        let p = plan(
            &list,
            PlanOptions {
                to_revision: None,
                to_time: Some(115),
            },
        )
        .unwrap();
        assert_eq!(p.base.snap_name, FULL);
        assert_eq!(names(&p), ["Incr-00000011-00000020-110"]);
        assert_eq!(p.target_revision, 20);
        let p = plan(
            &list,
            PlanOptions {
                to_revision: None,
                to_time: Some(99),
            },
        )
        .unwrap();
        assert_eq!(p.base.snap_name, "Full-00000000-00000005-50");
        assert_eq!(p.target_revision, 10);
    }

    #[test]
    fn base_revision_refines_the_plan() {
        let list = vec![
            s(FULL),
            s("Incr-00000011-00000014-101"),
            s("Incr-00000015-00000020-102"),
            s("Incr-00000021-00000030-103"),
        ];
        let mut p = plan(&list, PlanOptions::default()).unwrap();
        // The db holds up to 16: the first delta is covered (844), the second straddles (1044).
        p.apply_base_revision(16).unwrap();
        assert_eq!(
            names(&p),
            ["Incr-00000015-00000020-102", "Incr-00000021-00000030-103"]
        );
        assert_eq!(p.deltas[0].skip_through_revision, Some(16));
        assert_eq!(p.deltas[1].skip_through_revision, None);
        assert_eq!(
            p.skipped[0].snapshot.snap_name,
            "Incr-00000011-00000014-101"
        );
        assert_eq!(p.target_revision, 30);

        let mut p = plan(&list, PlanOptions::default()).unwrap();
        assert!(matches!(
            p.apply_base_revision(9),
            Err(PlanError::BaseOlderThanName { .. })
        ));
        // Newer than everything: no deltas left, the target is the db.
        let mut p = plan(&list, PlanOptions::default()).unwrap();
        p.apply_base_revision(35).unwrap();
        assert!(p.deltas.is_empty());
        assert_eq!(p.target_revision, 35);
        // A point in time the base has already passed.
        let mut p = plan(
            &list,
            PlanOptions {
                to_revision: Some(12),
                to_time: None,
            },
        )
        .unwrap();
        assert!(matches!(
            p.apply_base_revision(13),
            Err(PlanError::BelowBase { requested: 12, .. })
        ));
    }

    #[test]
    fn v1_and_v2_merge() {
        let v1 = |n: &str| match classify_object(&format!("v1/Backup-100/{n}"), None) {
            ObjectKind::Snapshot(s) => s,
            o => panic!("{o:?}"),
        };
        let list = vec![
            v1(FULL),
            v1("Incr-00000011-00000020-110"),
            s("Incr-00000021-00000030-120"),
        ];
        let p = plan(&list, PlanOptions::default()).unwrap();
        assert_eq!(p.base.path, format!("v1/Backup-100/{FULL}"));
        assert_eq!(p.deltas.len(), 2);
        assert_eq!(p.target_revision, 30);
    }
}
