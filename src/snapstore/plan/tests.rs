//! Plans from listings: upstream's selection, and every overlap, gap and point-in-time case.

use super::*;
use crate::snapstore::name::{ObjectKind, Snapshot, classify_object};

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
