//! `etcd-restore restore` against real etcd: every committed backup (both etcd versions, every
//! scenario, every compression, both layouts) is restored by the binary, then real etcd 3.5.1
//! and 3.4.23 start on the result and must answer exactly what the source cluster answered
//! (keys, revisions, historical reads, hashkv), and our offline hashkv must equal etcd's.

use std::path::Path;

use testkit::{
    Cli, ClusterSpec, ETCD_VERSIONS, EtcdBins, EtcdConfig, EtcdProcess, Fixture, tempfile,
};

const SCENARIOS: [&str; 6] = [
    "basic",
    "v1",
    "overlap-1043",
    "base-newer-1044",
    "covered-844",
    "lease-expired-1045",
];

const CLI: Cli = Cli(env!("CARGO_BIN_EXE_etcd-restore"));

fn run_restore(store: &Path, data_dir: &Path, extra: &[&str]) -> serde_json::Value {
    let out = CLI.restore(store, data_dir, &[&["--json"], extra].concat());
    serde_json::from_slice(&out.stdout).expect("restore --json output")
}

/// Leases granted after the latest full snapshot's database: they are not in the restored
/// lease bucket, so by default keys attached to them lose the lease.
fn late_leases(f: &Fixture) -> Vec<i64> {
    let base_db_rev = f
        .oracle
        .latest_full()
        .and_then(|o| o.db_revision)
        .unwrap_or(0);
    f.oracle
        .leases
        .alive
        .iter()
        .chain(&f.oracle.leases.expired)
        .chain(&f.oracle.leases.revoked)
        .filter(|l| l.granted_revision > base_db_rev)
        .map(|l| l.id)
        .collect()
}

/// With lease IDs kept as they were, the restored `key` bucket must equal the source's record
/// for record: keys, revisions, historical reads and hashkv at every recorded revision.
#[test]
fn restored_dirs_serve_exactly_the_source_data_on_etcd_3_5_and_3_4() {
    let mut checked = 0;
    for version in ETCD_VERSIONS {
        for scenario in SCENARIOS {
            let f = Fixture::load(version, scenario)
                .unwrap_or_else(|e| panic!("{version}/{scenario}: {e}"));
            for etcd_version in ETCD_VERSIONS {
                let Some(bins) = EtcdBins::get(etcd_version) else {
                    continue;
                };
                let tmp = tempfile::tempdir().unwrap();
                let dir = tmp.path().join("restored.etcd");
                let report = run_restore(&f.store(), &dir, &["--keep-unknown-leases"]);
                assert_eq!(
                    report["replay"]["final_revision"].as_i64().unwrap(),
                    f.oracle.final_revision,
                    "{version}/{scenario}: final revision"
                );
                let ours = CLI.hashkv(&dir);
                let etcd = EtcdProcess::start(&bins, EtcdConfig::new(&dir))
                    .unwrap_or_else(|e| panic!("etcd {etcd_version} on {version}/{scenario}: {e}"));
                let theirs = etcd.hashkv(None).unwrap();
                assert_eq!(
                    ours,
                    (theirs.hash, theirs.compact_revision),
                    "{version}/{scenario} on etcd {etcd_version}: offline hashkv differs from etcd's"
                );
                f.oracle.assert_matches(&etcd, f.oracle.final_revision);
                checked += 1;
            }
        }
    }
    assert!(checked > 0, "no etcd available to check against");
}

/// The default: a key keeps its lease only when the lease exists in the base; everything else
/// about the keys is the source's.
#[test]
fn by_default_only_leases_unknown_to_the_base_are_stripped() {
    let Some(bins) = EtcdBins::get("3.5.1") else {
        return;
    };
    for version in ETCD_VERSIONS {
        for scenario in SCENARIOS {
            let f = Fixture::load(version, scenario).unwrap();
            let late = late_leases(&f);
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().join("restored.etcd");
            let report = run_restore(&f.store(), &dir, &[]);
            let etcd = EtcdProcess::start(&bins, EtcdConfig::new(&dir)).unwrap();
            let got = etcd.get_all(None).unwrap();
            let want = f.oracle.dump_at(f.oracle.final_revision).unwrap();
            assert_eq!(
                got.revision, f.oracle.final_revision,
                "{version}/{scenario}"
            );
            assert_eq!(
                got.kvs.len(),
                want.kvs.len(),
                "{version}/{scenario}: key count"
            );
            for (w, g) in want.kvs.iter().zip(&got.kvs) {
                let mut expect = w.clone();
                if late.contains(&w.lease) {
                    expect.lease = 0;
                }
                assert!(expect.same(g), "{version}/{scenario}: {:?}", expect.diff(g));
            }
            let stripped = report["replay"]["leases_stripped"].as_u64().unwrap();
            assert_eq!(
                stripped > 0,
                !late.is_empty() && f.oracle.objects.iter().any(|o| o.kind == "Incr"),
                "{version}/{scenario}: leases_stripped = {stripped}, late leases {late:?}"
            );
        }
    }
}

#[test]
fn a_multi_member_restore_forms_a_healthy_cluster_with_equal_hashes() {
    let Some(bins) = EtcdBins::get("3.5.1") else {
        return;
    };
    let f = Fixture::load("3.5.1", "basic").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let spec = ClusterSpec::new(tmp.path(), &["m1", "m2", "m3"], "restored");
    let template = tmp.path().join("{name}.etcd");
    let out = CLI
        .command()
        .arg("restore")
        .arg("--store")
        .arg(f.store())
        .arg("--data-dir-template")
        .arg(&template)
        .args(["--name", "m1", "--initial-cluster", &spec.initial_cluster()])
        .args(["--initial-cluster-token", &spec.token])
        .arg("--initial-advertise-peer-urls")
        .arg(spec.members[0].peer_url())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let procs = spec.start(&bins).expect("cluster healthy");
    testkit::cluster::assert_members_agree(&procs);
    let got = procs[1].get_all(None).unwrap();
    assert_eq!(got.revision, f.oracle.final_revision);
}
