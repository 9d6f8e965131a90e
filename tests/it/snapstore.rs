//! Snapstore against the committed real-etcd backups (testdata/backups), read from the local
//! store, from S3 (moto), from Azure Blob (Azurite) and from GCS (fake-gcs-server). Expectations
//! come from each fixture's
//! oracle.json (written by the generator from etcd itself) and from an independent decoder
//! (serde_json::Value + base64), never from our own earlier output.

mod corrupt;
mod exclude;
mod gcs_credentials;

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use etcd_restore::snapstore::{
    Event, EventKind, Kind, OwnedEvent, Plan, PlanError, PlanOptions, PlannedDelta,
    PrefetchOptions, Prefetcher, Store, StoreArgs, decode_delta, fetch_full, plan,
};
use sha2::{Digest, Sha256};
use testkit::faultproxy::{FaultPlan, FaultProxy};
use testkit::objstore::{
    AZURITE_ACCOUNT, AZURITE_KEY, AzuriteServer, FakeGcsServer, MOTO_ACCESS_KEY, MotoServer,
};
use testkit::{ETCD_VERSIONS, EtcdBins, EtcdConfig, EtcdProcess, Fixture};

fn fixtures() -> Vec<Fixture> {
    let mut out = Vec::new();
    for v in ETCD_VERSIONS {
        for s in Fixture::scenarios(v) {
            out.push(Fixture::load(v, &s).expect("load fixture"));
        }
    }
    assert!(
        !out.is_empty(),
        "no fixtures under testdata/backups (they are committed; see testdata/README.md)"
    );
    out
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn local_store(dir: &Path) -> Store {
    let args = StoreArgs {
        store: Some(dir.display().to_string()),
        ..StoreArgs::default()
    };
    Store::open(&args.resolve_with(&|_| None).unwrap()).unwrap()
}

/// Our view of one object, for comparing backends and checking against the oracle.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ObjectReport {
    path: String,
    kind: Kind,
    start: i64,
    last: i64,
    created_on: i64,
    compression: String,
    is_final: bool,
    /// SHA-256 of the uncompressed body without its trailer.
    body_sha256: String,
    events: Option<u64>,
}

/// Events decoded independently of our decoder: generic JSON + base64.
fn reference_events(json: &[u8]) -> Vec<OwnedEvent> {
    let b64 = &base64::engine::general_purpose::STANDARD;
    let v: serde_json::Value = serde_json::from_slice(json).unwrap();
    let num = |x: &serde_json::Value, k: &str| x.get(k).and_then(|n| n.as_i64()).unwrap_or(0);
    let bytes = |x: &serde_json::Value, k: &str| {
        x.get(k)
            .and_then(|s| s.as_str())
            .map(|s| b64.decode(s).unwrap())
            .unwrap_or_default()
    };
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let ev = &e["etcdEvent"];
            let kv = &ev["kv"];
            OwnedEvent {
                kind: if num(ev, "type") == 1 {
                    EventKind::Delete
                } else {
                    EventKind::Put
                },
                key: bytes(kv, "key"),
                value: bytes(kv, "value"),
                create_revision: num(kv, "create_revision"),
                mod_revision: num(kv, "mod_revision"),
                version: num(kv, "version"),
                lease: num(kv, "lease"),
            }
        })
        .collect()
}

fn decode_all(data: &[u8], name: &str) -> Vec<OwnedEvent> {
    let mut out = Vec::new();
    decode_delta(data, name, |e: &Event<'_>| {
        out.push(OwnedEvent::from(e));
        Ok::<(), Infallible>(())
    })
    .unwrap();
    out
}

/// Downloads and checks every snapshot of a store: fulls through `fetch_full` (trailer verified),
/// deltas through the prefetcher (so spooling and ordering are exercised) and our decoder, which
/// must agree with the reference decoder.
async fn report(store: &Store, tmp: &Path) -> Vec<ObjectReport> {
    let listing = store.list_snapshots().await.unwrap();
    let mut out = Vec::new();
    let mut deltas = Vec::new();
    for (i, s) in listing.snapshots.iter().enumerate() {
        let mut r = ObjectReport {
            path: s.path.clone(),
            kind: s.kind(),
            start: s.start_revision(),
            last: s.last_revision(),
            created_on: s.created_on(),
            compression: s.compression().as_str().to_string(),
            is_final: s.is_final(),
            body_sha256: String::new(),
            events: None,
        };
        if s.kind() == Kind::Full {
            let dest = tmp.join(format!("full-{i}.db"));
            let info = fetch_full(store, s, &dest, true).await.unwrap();
            assert!(info.had_hash && info.hash_verified, "{}", s.path);
            let db = std::fs::read(&dest).unwrap();
            assert_eq!(db.len() as u64, info.db_size);
            r.body_sha256 = hex(&Sha256::digest(&db));
            std::fs::remove_file(&dest).unwrap();
        } else {
            deltas.push(PlannedDelta {
                snapshot: s.clone(),
                skip_through_revision: None,
                verify_with: Vec::new(),
            });
        }
        out.push(r);
    }
    // Tiny spool threshold: every delta goes through a spool file.
    let spool = tmp.join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    let mut opts = PrefetchOptions::new(3, spool.clone());
    opts.spool_threshold = 512;
    let mut pf = Prefetcher::new(store.clone(), deltas, opts);
    while let Some(item) = pf.next().await {
        let d = item.unwrap();
        let json = d.json();
        let ours = decode_all(d.bytes(), &d.planned.snapshot.path);
        assert_eq!(ours, reference_events(json), "{}", d.planned.snapshot.path);
        if let (Some(first), Some(last)) = (ours.first(), ours.last()) {
            assert!(first.mod_revision >= d.planned.snapshot.start_revision());
            assert_eq!(last.mod_revision, d.planned.snapshot.last_revision());
        }
        let r = out
            .iter_mut()
            .find(|r| r.path == d.planned.snapshot.path)
            .unwrap();
        r.body_sha256 = hex(&Sha256::digest(json));
        r.events = Some(ours.len() as u64);
    }
    assert_eq!(
        std::fs::read_dir(&spool).unwrap().count(),
        0,
        "spool files must be deleted after use"
    );
    out
}

fn check_against_oracle(f: &Fixture, reports: &[ObjectReport]) {
    let ours: BTreeSet<String> = reports.iter().map(|r| r.path.clone()).collect();
    let theirs: BTreeSet<String> = f.oracle.objects.iter().map(|o| o.path.clone()).collect();
    assert_eq!(ours, theirs, "{}/{}: listed objects", f.version, f.scenario);
    for o in &f.oracle.objects {
        let r = reports.iter().find(|r| r.path == o.path).unwrap();
        let what = format!("{}/{} {}", f.version, f.scenario, o.path);
        assert_eq!(r.kind == Kind::Full, o.is_full(), "{what}");
        assert_eq!(
            (r.start, r.last, r.created_on),
            (o.start_revision, o.last_revision, o.created_on),
            "{what}"
        );
        assert_eq!(r.compression, o.compression, "{what}");
        assert_eq!(r.is_final, o.is_final, "{what}");
        assert_eq!(r.body_sha256, o.body_sha256, "{what}");
        if !o.is_full() {
            assert_eq!(r.events, o.events, "{what}");
        }
    }
}

/// The oracle's db revision of the plan's base.
fn base_db_revision(f: &Fixture, p: &Plan) -> i64 {
    f.oracle
        .objects
        .iter()
        .find(|o| o.path == p.base.path)
        .and_then(|o| o.db_revision)
        .unwrap_or(p.base.last_revision())
}

/// Every event the plan applies, in order, with skipped revisions left out, hashed.
async fn plan_stream(store: &Store, p: &Plan, db_revision: i64, tmp: &Path) -> (u64, String) {
    let mut h = Sha256::new();
    let mut n = 0u64;
    let mut pf = Prefetcher::new(
        store.clone(),
        p.deltas.clone(),
        PrefetchOptions::new(6, tmp.to_path_buf()),
    );
    let mut last = db_revision;
    while let Some(item) = pf.next().await {
        let d = item.unwrap();
        let skip = d
            .planned
            .skip_through_revision
            .unwrap_or(0)
            .max(db_revision);
        decode_delta(d.bytes(), &d.planned.snapshot.path, |e| {
            if e.mod_revision <= skip {
                return Ok(());
            }
            assert!(e.mod_revision >= last, "events go back in time");
            last = e.mod_revision;
            n += 1;
            h.update([e.kind as u8]);
            for b in [e.key, e.value] {
                h.update((b.len() as u64).to_le_bytes());
                h.update(b);
            }
            for x in [e.create_revision, e.mod_revision, e.version, e.lease] {
                h.update(x.to_le_bytes());
            }
            Ok::<(), Infallible>(())
        })
        .unwrap();
    }
    (n, hex(&h.finalize()))
}

/// The whole check for one store holding one fixture: objects, plan, event stream.
async fn check_store(f: &Fixture, store: &Store, tmp: &Path) -> (Vec<ObjectReport>, u64, String) {
    let reports = report(store, tmp).await;
    check_against_oracle(f, &reports);
    let listing = store.list_snapshots().await.unwrap();
    let mut p = plan(&listing.snapshots, PlanOptions::default()).unwrap();
    let latest = f.oracle.latest_full().unwrap();
    assert_eq!(p.base.path, latest.path, "{}/{}", f.version, f.scenario);
    let db_rev = base_db_revision(f, &p);
    p.apply_base_revision(db_rev).unwrap();
    assert_eq!(
        p.target_revision, f.oracle.final_revision,
        "{}/{}: plan target",
        f.version, f.scenario
    );
    let (n, digest) = plan_stream(store, &p, db_rev, tmp).await;
    // Independent count: every event of the deltas after the base, minus those at or below
    // the db revision and duplicates of the overlap scenario, equals the revisions' events.
    let expected: u64 = f
        .oracle
        .objects
        .iter()
        .filter(|o| !o.is_full() && o.last_revision > db_rev)
        .filter(|o| p.deltas.iter().any(|d| d.snapshot.path == o.path))
        .map(|o| o.events.unwrap_or(0))
        .sum();
    if p.deltas
        .iter()
        .all(|d| d.snapshot.start_revision() > db_rev)
    {
        assert_eq!(n, expected, "{}/{}: applied events", f.version, f.scenario);
    } else {
        assert!(
            n < expected && n > 0,
            "{}/{}: {n} of {expected}",
            f.version,
            f.scenario
        );
    }
    (reports, n, digest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_fixtures_match_the_oracle() {
    let tmp = tempfile::tempdir().unwrap();
    for f in fixtures() {
        let store = local_store(&f.store());
        check_store(&f, &store, tmp.path()).await;
    }
}

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

fn copy_tree(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.path().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
            copy_tree(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
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

/// Uploads every fixture store under `<version>/<scenario>/` of one bucket.
fn fixture_prefix(f: &Fixture) -> String {
    format!("backups/etcd-{}/{}", f.version, f.scenario)
}

async fn compare_with_local(f: &Fixture, remote: &Store, tmp: &Path) {
    let local = local_store(&f.store());
    let (lr, ln, ld) = check_store(f, &local, tmp).await;
    let (rr, rn, rd) = check_store(f, remote, tmp).await;
    assert_eq!(lr, rr, "{}/{}: object reports", f.version, f.scenario);
    assert_eq!(
        (ln, ld),
        (rn, rd),
        "{}/{}: event stream",
        f.version,
        f.scenario
    );
    let ll = local.list_snapshots().await.unwrap();
    let rl = remote.list_snapshots().await.unwrap();
    let sizes = |l: &etcd_restore::snapstore::Listing| {
        l.snapshots
            .iter()
            .map(|s| (s.path.clone(), s.size))
            .collect::<Vec<_>>()
    };
    assert_eq!(sizes(&ll), sizes(&rl));
}

async fn read_all(store: &Store, name: &str) -> Vec<u8> {
    let (_, body) = store.get(name).await.unwrap();
    let mut reader = body.into_reader();
    tokio::task::spawn_blocking(move || {
        let mut got = Vec::new();
        std::io::Read::read_to_end(&mut reader, &mut got).unwrap();
        got
    })
    .await
    .unwrap()
}

/// put_create never overwrites; multipart uploads land whole; copy_create copies, and unless
/// the server cannot (`copy_refuses_existing` false: fake-gcs-server) never overwrites.
async fn check_writes(store: &Store, tmp: &Path, copy_refuses_existing: bool) {
    let name = "v2/Full-00000000-00000001-1700000000";
    store
        .put_create(name, bytes::Bytes::from_static(b"one"), None)
        .await
        .unwrap();
    let err = store
        .put_create(name, bytes::Bytes::from_static(b"two"), None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            etcd_restore::snapstore::StoreError::AlreadyExists { .. }
        ),
        "{err}"
    );
    let big: Vec<u8> = (0..(11 << 20) + 12345u32)
        .map(|i| (i % 251) as u8)
        .collect();
    let file = tmp.join("upload.bin");
    std::fs::write(&file, &big).unwrap();
    let name2 = "v2/Full-00000000-00000002-1700000001";
    let n = store
        .put_multipart_file(name2, &file, 5 << 20, 2)
        .await
        .unwrap();
    assert_eq!(n, big.len() as u64);
    assert_eq!(store.head(name2).await.unwrap().size, big.len() as u64);
    assert!(read_all(store, name2).await == big);
    assert!(matches!(
        store.put_multipart_file(name2, &file, 5 << 20, 2).await,
        Err(etcd_restore::snapstore::StoreError::AlreadyExists { .. })
    ));
    let name3 = "v2/Full-00000000-00000003-1700000002";
    store.copy_create(name2, name3).await.unwrap();
    assert!(read_all(store, name3).await == big);
    if copy_refuses_existing {
        let err = store.copy_create(name, name3).await.unwrap_err();
        assert!(
            matches!(
                err,
                etcd_restore::snapstore::StoreError::AlreadyExists { .. }
            ),
            "{err}"
        );
        assert!(read_all(store, name3).await == big, "overwritten");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    std::fs::create_dir_all(&root).unwrap();
    check_writes(&local_store(&root), tmp.path(), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_moto_fixtures_match_local() {
    let Some(moto) = MotoServer::start().unwrap() else {
        return;
    };
    moto.create_bucket("backups").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    // Credentials the etcdbrctl way: a JSON file named by AWS_APPLICATION_CREDENTIALS_JSON.
    let creds = tmp.path().join("aws.json");
    std::fs::write(
        &creds,
        format!(
            r#"{{"accessKeyID":"{MOTO_ACCESS_KEY}","secretAccessKey":"x","region":"us-east-1"}}"#
        ),
    )
    .unwrap();
    let creds_s = creds.display().to_string();
    let env = move |k: &str| (k == "AWS_APPLICATION_CREDENTIALS_JSON").then(|| creds_s.clone());
    for f in fixtures() {
        let prefix = fixture_prefix(&f);
        moto.upload_dir("backups", &prefix, &f.store()).unwrap();
        let args = StoreArgs {
            storage_provider: Some(etcd_restore::snapstore::Provider::S3),
            store_container: Some("backups".into()),
            store_prefix: Some(prefix),
            store_endpoint_override: Some(moto.endpoint()),
            ..StoreArgs::default()
        };
        let store = Store::open(&args.resolve_with(&env).unwrap()).unwrap();
        compare_with_local(&f, &store, tmp.path()).await;
    }
    // Writes under their own prefix, through the URL form.
    let args = StoreArgs {
        store: Some("s3://backups/writes".into()),
        store_endpoint_override: Some(moto.endpoint()),
        ..StoreArgs::default()
    };
    let store = Store::open(&args.resolve_with(&env).unwrap()).unwrap();
    check_writes(&store, tmp.path(), true).await;
    moto.stop().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_azurite_fixtures_match_local() {
    let Some(azurite) = AzuriteServer::start().unwrap() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let creds = tmp.path().join("azure");
    std::fs::create_dir_all(&creds).unwrap();
    std::fs::write(creds.join("storageAccount"), AZURITE_ACCOUNT).unwrap();
    std::fs::write(creds.join("storageKey"), AZURITE_KEY).unwrap();
    let creds_s = creds.display().to_string();
    let env = move |k: &str| (k == "AZURE_APPLICATION_CREDENTIALS").then(|| creds_s.clone());
    let all = fixtures();
    // One upload run for everything: stage the trees under their prefixes locally.
    let stage = tmp.path().join("stage");
    for f in &all {
        let dest = stage.join(fixture_prefix(f));
        std::fs::create_dir_all(&dest).unwrap();
        copy_tree(&f.store(), &dest);
    }
    let n = azurite.upload_dir("backups", "", &stage).unwrap();
    assert_eq!(n, all.iter().map(|f| f.oracle.objects.len()).sum::<usize>());
    for f in &all {
        let args = StoreArgs {
            storage_provider: Some(etcd_restore::snapstore::Provider::Abs),
            store_container: Some("backups".into()),
            store_prefix: Some(fixture_prefix(f)),
            store_endpoint_override: Some(azurite.endpoint()),
            ..StoreArgs::default()
        };
        let store = Store::open(&args.resolve_with(&env).unwrap()).unwrap();
        compare_with_local(f, &store, tmp.path()).await;
    }
    let args = StoreArgs {
        store: Some("az://backups/writes".into()),
        store_endpoint_override: Some(azurite.endpoint()),
        ..StoreArgs::default()
    };
    let store = Store::open(&args.resolve_with(&env).unwrap()).unwrap();
    check_writes(&store, tmp.path(), true).await;
    azurite.stop().unwrap();
}

/// etcdbrctl's GCS secret as etcd-druid mounts it: `serviceaccount.json` (named by
/// `GOOGLE_APPLICATION_CREDENTIALS`) and, optionally, `storageAPIEndpoint` beside it, holding
/// the JSON API URL `<endpoint>/storage/v1/`. The key is never used for a token: an http
/// endpoint is an emulator, reached without credentials as etcdbrctl does.
fn gcs_secret(dir: &Path, endpoint: Option<&str>) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let sa = dir.join("serviceaccount.json");
    std::fs::write(
        &sa,
        r#"{"type":"service_account","project_id":"etcd-restore-test","client_email":"t@etcd-restore-test.iam.gserviceaccount.com","private_key_id":"0","private_key":"unused"}"#,
    )
    .unwrap();
    if let Some(e) = endpoint {
        std::fs::write(dir.join("storageAPIEndpoint"), format!("{e}/storage/v1/\n")).unwrap();
    }
    sa
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcs_fake_gcs_server_fixtures_match_local() {
    let Some(gcs) = FakeGcsServer::start().unwrap() else {
        return;
    };
    gcs.create_bucket("backups").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    // etcdbrctl's flags and secret: --storage-provider GCS --store-container --store-prefix,
    // GOOGLE_APPLICATION_CREDENTIALS, and the endpoint from the secret's storageAPIEndpoint.
    let sa = gcs_secret(&tmp.path().join("gcp"), Some(&gcs.endpoint()));
    let sa_s = sa.display().to_string();
    let env = move |k: &str| (k == "GOOGLE_APPLICATION_CREDENTIALS").then(|| sa_s.clone());
    let all = fixtures();
    for f in &all {
        let prefix = fixture_prefix(f);
        assert_eq!(
            gcs.upload_dir("backups", &prefix, &f.store()).unwrap(),
            f.oracle.objects.len()
        );
        let args = StoreArgs {
            storage_provider: Some(etcd_restore::snapstore::Provider::Gcs),
            store_container: Some("backups".into()),
            store_prefix: Some(prefix),
            ..StoreArgs::default()
        };
        let config = args.resolve_with(&env).unwrap();
        match &config.backend {
            etcd_restore::snapstore::Backend::Gcs(g) => {
                assert_eq!(g.base_url.as_deref(), Some(gcs.endpoint().as_str()));
                assert_eq!(g.service_account_path.as_deref(), Some(sa.as_path()));
                assert!(g.anonymous, "an http endpoint is an emulator");
            }
            other => panic!("{other:?}"),
        }
        let store = Store::open(&config).unwrap();
        compare_with_local(f, &store, tmp.path()).await;
    }

    // Writes, through the URL form with nothing but $STORAGE_EMULATOR_HOST (host:port, the Go
    // client's form): create-only puts, a multipart upload (3 parts composed), copies.
    let host = gcs.endpoint().trim_start_matches("http://").to_string();
    let env = move |k: &str| (k == "STORAGE_EMULATOR_HOST").then(|| host.clone());
    let args = StoreArgs {
        store: Some("gs://backups/writes".into()),
        ..StoreArgs::default()
    };
    let store = Store::open(&args.resolve_with(&env).unwrap()).unwrap();
    // fake-gcs-server 1.54 ignores ifGenerationMatch on rewrites: the create-only side of
    // copy_create cannot be checked on it (it is on the local store, moto and Azurite).
    check_writes(&store, tmp.path(), false).await;
    let big = gcs
        .get_object("backups", "writes/v2/Full-00000000-00000002-1700000001")
        .unwrap();
    assert_eq!(big.len(), (11 << 20) + 12345);
    assert!(big.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8));
    let copy = gcs
        .get_object("backups", "writes/v2/Full-00000000-00000003-1700000002")
        .unwrap();
    assert!(copy == big, "the copy, read by the server itself");

    // Compose in rounds: 70 parts (more than 2 × 32 sources per compose call).
    let path = store
        .object_path("v2/Full-00000000-00000004-1700000003")
        .unwrap();
    let upload = object_store::ObjectStoreExt::put_multipart(store.object_store().as_ref(), &path)
        .await
        .unwrap();
    let mut w = object_store::WriteMultipart::new_with_chunk_size(upload, 1000);
    let data: Vec<u8> = (0..69_500u32).map(|i| (i % 253) as u8).collect();
    w.write(&data);
    w.finish().await.unwrap();
    assert!(
        gcs.get_object("backups", path.as_ref()).unwrap() == data,
        "composed object"
    );
    // Only the objects themselves are left: every part and intermediate is deleted.
    let keys = gcs.list_keys("backups", "writes/").unwrap();
    assert_eq!(
        keys,
        [
            "writes/v2/Full-00000000-00000001-1700000000",
            "writes/v2/Full-00000000-00000002-1700000001",
            "writes/v2/Full-00000000-00000003-1700000002",
            "writes/v2/Full-00000000-00000004-1700000003",
        ]
    );

    // Answers lost after the server acted: a create-only put sent again finds the object its
    // first try created (same size and CRC32C) and succeeds instead of "already exists"; an
    // object that is not ours is still refused.
    let proxy = FaultProxy::start(
        gcs.port(),
        FaultPlan {
            rate: 0.5,
            seed: 19,
            server_errors: false,
            throttling: false,
            resets: false,
            truncated_bodies: false,
            lost_answers: true,
        },
    )
    .unwrap();
    let args = StoreArgs {
        store: Some("gs://backups/lost".into()),
        store_endpoint_override: Some(proxy.endpoint()),
        ..StoreArgs::default()
    };
    let store = Store::open(&args.resolve_with(&|_| None).unwrap()).unwrap();
    for i in 1..=8 {
        let name = format!("v2/Full-00000000-{i:08}-1700000000");
        let body = format!("object {i}");
        store
            .put_create(&name, bytes::Bytes::from(body.clone()), None)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(read_all(&store, &name).await, body.as_bytes());
        let err = store
            .put_create(&name, bytes::Bytes::from_static(b"not ours"), None)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                etcd_restore::snapstore::StoreError::AlreadyExists { .. }
            ),
            "{name}: {err}"
        );
        assert_eq!(read_all(&store, &name).await, body.as_bytes());
    }
    assert!(proxy.stats().lost >= 3, "{:?}", proxy.stats());
    drop(proxy);

    // The binary with nothing but the environment: $STORAGE_EMULATOR_HOST and etcdbrctl's
    // $STORAGE_CONTAINER (the default of --store-container).
    let f = &all[0];
    let out = std::process::Command::new(bin())
        .args([
            "ls",
            "--json",
            "--storage-provider",
            "GCS",
            "--store-prefix",
        ])
        .arg(fixture_prefix(f))
        .env(
            "STORAGE_EMULATOR_HOST",
            gcs.endpoint().trim_start_matches("http://"),
        )
        .env("STORAGE_CONTAINER", "backups")
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["snapshots"].as_array().unwrap().len(),
        f.oracle.objects.len()
    );
    assert_eq!(
        v["plan"]["base"]["path"],
        f.oracle.latest_full().unwrap().path.as_str()
    );

    // The CLI, etcdbrctl's way, restores a backup that real etcd serves exactly as the source.
    if let Some(bins) = EtcdBins::get("3.5.1") {
        let f = all
            .iter()
            .find(|f| f.version == "3.5.1" && f.scenario == "basic")
            .expect("basic 3.5.1 fixture");
        let dir = tmp.path().join("gcs.etcd");
        let out = std::process::Command::new(bin())
            .args(["restore", "--storage-provider", "GCS"])
            .args(["--store-container", "backups", "--store-prefix"])
            .arg(fixture_prefix(f))
            .arg("--data-dir")
            .arg(&dir)
            .env("GOOGLE_APPLICATION_CREDENTIALS", &sa)
            .env_remove("STORAGE_EMULATOR_HOST")
            .env_remove("STORAGE_CONTAINER")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut etcd = EtcdProcess::start(&bins, EtcdConfig::new(&dir)).unwrap();
        f.oracle.assert_matches(&etcd, f.oracle.final_revision);
        etcd.stop().unwrap();
    }
    gcs.stop().unwrap();
}

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_etcd-restore"))
}

#[test]
fn ls_cli_json_and_errors() {
    for f in fixtures() {
        let out = std::process::Command::new(bin())
            .args(["ls", "--json", "--store"])
            .arg(f.store())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let latest = f.oracle.latest_full().unwrap();
        assert_eq!(v["plan"]["base"]["path"], latest.path.as_str());
        assert_eq!(
            v["snapshots"].as_array().unwrap().len(),
            f.oracle.objects.len()
        );
        assert!(v["error"].is_null());
    }
    // A plan error: non-zero exit, one clear line, and the JSON says why.
    let f = fixtures()
        .into_iter()
        .find(|f| f.scenario == "basic")
        .unwrap();
    let out = std::process::Command::new(bin())
        .args(["ls", "--json", "--to-revision", "1", "--store"])
        .arg(f.store())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["plan"].is_null());
    assert!(v["error"].as_str().unwrap().contains("no full snapshot"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    // Text output names the base and the target.
    let out = std::process::Command::new(bin())
        .args(["ls", "--store"])
        .arg(f.store())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&f.oracle.latest_full().unwrap().path),
        "{text}"
    );
    // Swift: one line naming the S3-compatible route.
    let out = std::process::Command::new(bin())
        .args([
            "ls",
            "--storage-provider",
            "Swift",
            "--store-container",
            "c",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--storage-provider S3"), "{stderr}");
}

#[test]
fn missing_local_store_is_a_clear_error() {
    let out = std::process::Command::new(bin())
        .args(["ls", "--store", "/nonexistent/backups"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/backups"));
}
