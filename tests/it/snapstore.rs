//! Snapstore against the committed real-etcd backups (testdata/backups), read from the local
//! store, from S3 (moto), from Azure Blob (Azurite) and from GCS (fake-gcs-server). Expectations
//! come from each fixture's
//! oracle.json (written by the generator from etcd itself) and from an independent decoder
//! (serde_json::Value + base64), never from our own earlier output.

mod corrupt;
mod exclude;
mod gcs_credentials;
mod ls_cli;
mod plans;
mod providers;

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

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_etcd-restore"))
}
