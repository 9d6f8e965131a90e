//! `etcd-restore restore` against real etcd: every committed backup (both etcd versions, every
//! scenario, every compression, both layouts) is restored by the binary, then real etcd 3.5.1
//! and 3.4.23 start on the result and must answer exactly what the source cluster answered
//! (keys, revisions, historical reads, hashkv), and our offline hashkv must equal etcd's.

mod bump_revision;
mod leases;
mod wal_dir;

use std::path::Path;

use testkit::{
    Cli, ClusterSpec, ETCD_VERSIONS, EtcdBins, EtcdConfig, EtcdMatrix, EtcdProcess, Fixture,
    tempfile,
};

const SCENARIOS: [&str; 7] = [
    "basic",
    "v1",
    "overlap-1043",
    "base-newer-1044",
    "covered-844",
    "lease-expired-1045",
    "leases-after-base",
];

const CLI: Cli = Cli(env!("CARGO_BIN_EXE_etcd-restore"));

fn run_restore(store: &Path, data_dir: &Path, extra: &[&str]) -> serde_json::Value {
    let out = CLI.restore(store, data_dir, &[&["--json"], extra].concat());
    serde_json::from_slice(&out.stdout).expect("restore --json output")
}

/// The restored `key` bucket must equal the source's record for record: keys, lease IDs,
/// revisions, historical reads and hashkv at every recorded revision (tests/it/restore/leases.rs: the
/// leases themselves).
#[test]
fn restored_dirs_serve_exactly_the_source_data_on_etcd_3_5_and_3_4() {
    let matrix = EtcdMatrix::new(&ETCD_VERSIONS);
    for version in ETCD_VERSIONS {
        for scenario in SCENARIOS {
            let f = Fixture::load(version, scenario)
                .unwrap_or_else(|e| panic!("{version}/{scenario}: {e}"));
            for bins in matrix.bins() {
                let etcd_version = &bins.version;
                let tmp = tempfile::tempdir().unwrap();
                let dir = tmp.path().join("restored.etcd");
                let report = run_restore(&f.store(), &dir, &[]);
                assert_eq!(
                    report["replay"]["final_revision"].as_i64().unwrap(),
                    f.oracle.final_revision,
                    "{version}/{scenario}: final revision"
                );
                let ours = CLI.hashkv(&dir);
                let etcd = EtcdProcess::start(bins, EtcdConfig::new(&dir))
                    .unwrap_or_else(|e| panic!("etcd {etcd_version} on {version}/{scenario}: {e}"));
                let theirs = etcd.hashkv(None).unwrap();
                assert_eq!(
                    ours,
                    (theirs.hash, theirs.compact_revision),
                    "{version}/{scenario} on etcd {etcd_version}: offline hashkv differs from etcd's"
                );
                f.oracle.assert_matches(&etcd, f.oracle.final_revision);
                matrix.ran(bins);
            }
        }
    }
    matrix.assert_each_ran(ETCD_VERSIONS.len() * SCENARIOS.len());
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
