//! Restore plans on scenario stores: which snapshots are chosen, and the gaps named.

use super::*;

/// The overlap/gap scenarios: the right plan from real etcd data, derived from the oracle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_plans() {
    let tmp = tempfile::tempdir().unwrap();
    let mut seen = BTreeSet::new();
    for f in fixtures() {
        let store = local_store(&f.store());
        let listing = store.list_snapshots().await.unwrap();
        let mut p = plan(&listing.snapshots, PlanOptions::default()).unwrap();
        let db_rev = base_db_revision(&f, &p);
        let base_last = p.base.last_revision();
        let deltas_after: Vec<_> = f
            .oracle
            .objects
            .iter()
            .filter(|o| !o.is_full() && o.last_revision > base_last)
            .collect();
        match f.scenario.as_str() {
            "overlap-1043" => {
                seen.insert("1043");
                // Two deltas with the same start: the longer is applied, the shorter checked.
                let mut by_start: Vec<_> = deltas_after.clone();
                by_start.sort_by_key(|o| (o.start_revision, o.last_revision));
                let pair = by_start
                    .windows(2)
                    .find(|w| w[0].start_revision == w[1].start_revision)
                    .expect("fixture has two deltas with one start");
                let applied = p
                    .deltas
                    .iter()
                    .find(|d| d.snapshot.path == pair[1].path)
                    .expect("longer delta applied");
                assert_eq!(applied.verify_with.len(), 1);
                assert_eq!(applied.verify_with[0].path, pair[0].path);
                assert!(p.deltas.iter().all(|d| d.snapshot.path != pair[0].path));
                assert!(p.skipped.iter().any(|s| s.snapshot.path == pair[0].path));
                // The prefetcher downloads both and finds that they agree.
                let (n, _) = plan_stream(&store, &p, db_rev, tmp.path()).await;
                assert!(n > 0);
            }
            "base-newer-1044" => {
                seen.insert("1044");
                assert!(db_rev > base_last, "fixture: db newer than its name");
                p.apply_base_revision(db_rev).unwrap();
                for o in &deltas_after {
                    if o.last_revision <= db_rev {
                        assert!(
                            p.skipped.iter().any(|s| s.snapshot.path == o.path),
                            "{}",
                            o.path
                        );
                    } else if o.start_revision <= db_rev {
                        let d = p.deltas.iter().find(|d| d.snapshot.path == o.path).unwrap();
                        assert_eq!(d.skip_through_revision, Some(db_rev));
                    } else {
                        let d = p.deltas.iter().find(|d| d.snapshot.path == o.path).unwrap();
                        assert_eq!(d.skip_through_revision, None);
                    }
                }
                assert!(
                    deltas_after
                        .iter()
                        .any(|o| o.start_revision <= db_rev && o.last_revision > db_rev),
                    "fixture has a straddling delta"
                );
            }
            "covered-844" => {
                seen.insert("844");
                p.apply_base_revision(db_rev).unwrap();
                let covered: Vec<_> = deltas_after
                    .iter()
                    .filter(|o| o.last_revision <= db_rev)
                    .collect();
                assert!(!covered.is_empty(), "fixture has a covered delta");
                for o in covered {
                    assert!(p.skipped.iter().any(|s| s.snapshot.path == o.path));
                    assert!(p.deltas.iter().all(|d| d.snapshot.path != o.path));
                }
            }
            "basic" => {
                seen.insert("gap");
                // Taking a full drops the events since the last delta: restoring into such a
                // hole must fail. Find revisions no delta covers and no full holds.
                let fulls: Vec<_> = f.oracle.objects.iter().filter(|o| o.is_full()).collect();
                let first_full = fulls.iter().map(|o| o.last_revision).min().unwrap();
                let in_delta = |r: i64| {
                    f.oracle
                        .objects
                        .iter()
                        .any(|o| !o.is_full() && o.start_revision <= r && r <= o.last_revision)
                };
                let in_full = |r: i64| {
                    fulls.iter().any(|o| {
                        o.last_revision <= r && r <= o.db_revision.unwrap_or(o.last_revision)
                    })
                };
                let holes: Vec<i64> = (first_full + 1..f.oracle.final_revision)
                    .filter(|&r| !in_delta(r) && !in_full(r))
                    .collect();
                assert!(
                    !holes.is_empty(),
                    "basic fixture has a gap before a later full"
                );
                for r in holes.iter().copied().take(5) {
                    let err = plan(
                        &listing.snapshots,
                        PlanOptions {
                            to_revision: Some(r),
                            to_time: None,
                        },
                    )
                    .unwrap_err();
                    assert!(
                        matches!(err, PlanError::RevisionNotCovered { requested, .. } if requested == r),
                        "{r}: {err}"
                    );
                }
                // Every covered point in time plans fine and stops where asked.
                for o in f.oracle.objects.iter().filter(|o| !o.is_full()) {
                    let r = (o.start_revision + o.last_revision) / 2;
                    let p = plan(
                        &listing.snapshots,
                        PlanOptions {
                            to_revision: Some(r),
                            to_time: None,
                        },
                    )
                    .unwrap();
                    assert_eq!(p.target_revision, r);
                    assert!(p.base.last_revision() <= r);
                }
            }
            _ => {}
        }
    }
    for want in ["1043", "1044", "844", "gap"] {
        assert!(seen.contains(want), "no fixture for {want}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_delta_is_a_gap_naming_the_range() {
    let f = fixtures()
        .into_iter()
        .find(|f| f.scenario == "basic")
        .unwrap();
    let latest = f.oracle.latest_full().unwrap().clone();
    let mut after: Vec<_> = f
        .oracle
        .objects
        .iter()
        .filter(|o| !o.is_full() && o.start_revision > latest.last_revision)
        .cloned()
        .collect();
    after.sort_by_key(|o| o.start_revision);
    assert!(after.len() >= 2, "need two deltas after the latest full");
    let removed = &after[0];
    let tmp = tempfile::tempdir().unwrap();
    copy_tree(&f.store(), tmp.path());
    std::fs::remove_file(tmp.path().join(&removed.path)).unwrap();
    let store = local_store(tmp.path());
    let listing = store.list_snapshots().await.unwrap();
    let err = plan(&listing.snapshots, PlanOptions::default()).unwrap_err();
    match &err {
        PlanError::Gap {
            from,
            to,
            before,
            after: next,
        } => {
            assert_eq!(
                (*from, *to),
                (removed.start_revision, removed.last_revision)
            );
            assert_eq!(before, &latest.path);
            assert_eq!(next, &after[1].path);
        }
        other => panic!("{other}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains(&format!(
            "{}..={}",
            removed.start_revision, removed.last_revision
        )),
        "{msg}"
    );
}
