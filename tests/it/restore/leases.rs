//! Leases granted after the base snapshot. The deltas carry the lease IDs of the keys but no
//! lease TTLs, and the base's `lease` bucket does not have them; a restore grants them again
//! (with `--unknown-lease-ttl`, by default the base's longest TTL) so that real etcd 3.5.1 and
//! 3.4.23 serve every key with the source's lease ID, list the leases, and expire the keys
//! when the lease runs out. A lease revoked within the deltas does not come back.
//!
//! Fixture: `testdata/backups/etcd-*/leases-after-base` (gen.py scenario of that name).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use testkit::{Cli, ETCD_VERSIONS, EtcdConfig, EtcdMatrix, EtcdProcess, Fixture, tempfile};

const CLI: Cli = Cli(env!("CARGO_BIN_EXE_etcd-restore"));
const SCENARIO: &str = "leases-after-base";

/// Lease IDs of the keys live at the fixture's final revision.
fn live_leases(f: &Fixture) -> BTreeSet<i64> {
    let dump = f
        .oracle
        .dump_at(f.oracle.final_revision)
        .expect("final dump");
    dump.kvs
        .iter()
        .map(|kv| kv.lease)
        .filter(|&l| l != 0)
        .collect()
}

/// Leases the base snapshot's database does not hold.
fn late(f: &Fixture) -> (BTreeSet<i64>, i64) {
    let base = f
        .oracle
        .latest_full()
        .and_then(|o| o.db_revision)
        .expect("base db revision");
    let l = &f.oracle.leases;
    let ids = l
        .alive
        .iter()
        .chain(&l.expired)
        .chain(&l.revoked)
        .filter(|r| r.granted_revision > base)
        .map(|r| r.id)
        .collect();
    (ids, base)
}

fn lease_list(etcd: &EtcdProcess) -> BTreeSet<i64> {
    let v = etcd.etcdctl_json(&["lease", "list"]).unwrap();
    v["leases"]
        .as_array()
        .map(|a| a.iter().filter_map(|l| l["id"].as_i64()).collect())
        .unwrap_or_default()
}

/// (TTL etcd granted the lease with, keys attached).
fn time_to_live(etcd: &EtcdProcess, id: i64) -> (i64, usize) {
    let v = etcd
        .etcdctl_json(&["lease", "timetolive", &format!("{:x}", id), "--keys"])
        .unwrap();
    (
        v["granted-ttl"].as_i64().unwrap_or(0),
        v["keys"].as_array().map(Vec::len).unwrap_or(0),
    )
}

#[test]
fn leases_granted_after_the_base_are_granted_again_and_keys_keep_their_lease_ids() {
    let matrix = EtcdMatrix::new(&ETCD_VERSIONS);
    for version in ETCD_VERSIONS {
        let f = Fixture::load(version, SCENARIO).unwrap();
        let live = live_leases(&f);
        let (late, _) = late(&f);
        let granted: BTreeSet<i64> = live.intersection(&late).copied().collect();
        let revoked: BTreeSet<i64> = f.oracle.leases.revoked.iter().map(|r| r.id).collect();
        assert!(
            !granted.is_empty() && !revoked.is_empty(),
            "{version}: the fixture must have both"
        );
        // The base's longest lease TTL is the default for the ones it does not have.
        let base_ttl = f
            .oracle
            .leases
            .alive
            .iter()
            .filter(|r| !late.contains(&r.id))
            .map(|r| r.ttl)
            .max()
            .expect("a lease in the base");
        for bins in matrix.bins() {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().join("restored.etcd");
            let out = CLI.restore(&f.store(), &dir, &["--json"]);
            let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(
                report["replay"]["leases_granted"].as_u64(),
                Some(granted.len() as u64),
                "{version} on etcd {}: leases granted",
                bins.version
            );
            let etcd = EtcdProcess::start(bins, EtcdConfig::new(&dir)).unwrap();
            // Every key record, lease field included, and the hashkv equal the source's.
            f.oracle.assert_matches(&etcd, f.oracle.final_revision);
            let listed = lease_list(&etcd);
            assert!(
                live.is_subset(&listed),
                "{version} on etcd {}: live keys' leases {live:?}, etcd lists {listed:?}",
                bins.version
            );
            assert!(
                listed.is_disjoint(&revoked),
                "{version} on etcd {}: revoked lease came back: {listed:?}",
                bins.version
            );
            for &id in &granted {
                let want_keys = f
                    .oracle
                    .dump_at(f.oracle.final_revision)
                    .unwrap()
                    .kvs
                    .iter()
                    .filter(|kv| kv.lease == id)
                    .count();
                assert_eq!(
                    time_to_live(&etcd, id),
                    (base_ttl, want_keys),
                    "{version} on etcd {}: lease {id:x}",
                    bins.version
                );
            }
            matrix.ran(bins);
        }
    }
    matrix.assert_each_ran(ETCD_VERSIONS.len());
}

#[test]
fn keys_of_a_granted_lease_expire_after_unknown_lease_ttl() {
    let matrix = EtcdMatrix::new(&ETCD_VERSIONS);
    let f = Fixture::load("3.5.1", SCENARIO).unwrap();
    let (late, _) = late(&f);
    let dump = f.oracle.dump_at(f.oracle.final_revision).unwrap();
    let expiring: Vec<String> = dump
        .kvs
        .iter()
        .filter(|kv| late.contains(&kv.lease))
        .map(|kv| String::from_utf8(kv.key.clone()).unwrap())
        .collect();
    let staying = dump
        .kvs
        .iter()
        .filter(|kv| !late.contains(&kv.lease))
        .count();
    assert!(!expiring.is_empty());
    for bins in matrix.bins() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("restored.etcd");
        CLI.restore(&f.store(), &dir, &["--unknown-lease-ttl", "2s"]);
        let etcd = EtcdProcess::start(bins, EtcdConfig::new(&dir)).unwrap();
        let t0 = Instant::now();
        loop {
            let left = expiring
                .iter()
                .filter(|k| etcd.get(k, None).unwrap().is_some())
                .count();
            if left == 0 {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "etcd {}: {left} keys of 2 s leases still there after 30 s",
                bins.version
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        // Keys without a lease, or with the base's (600 s) lease, are all still there.
        let now = etcd.get_all(None).unwrap();
        assert_eq!(now.kvs.len(), staying, "etcd {}: keys left", bins.version);
        matrix.ran(bins);
    }
    matrix.assert_each_ran(1);
}

#[test]
fn a_compacted_snapshot_holds_the_leases_granted_after_its_base() {
    let matrix = EtcdMatrix::new(&["3.5.1"]);
    let f = Fixture::load("3.5.1", SCENARIO).unwrap();
    let live = live_leases(&f);
    for bins in matrix.bins() {
        let tmp = tempfile::tempdir().unwrap();
        let store = tmp.path().join("store");
        testkit::tree::copy_dir(&f.store(), &store).unwrap();
        let mut c = CLI.command();
        c.args(["compact", "--store"]).arg(&store);
        CLI.ok(&mut c, "compact");
        // Restoring the compacted snapshot alone: its own lease bucket must hold them now.
        let dir = tmp.path().join("restored.etcd");
        let out = CLI.restore(&store, &dir, &["--json"]);
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            report["replay"]["deltas_applied"].as_array().map(Vec::len),
            Some(0)
        );
        assert_eq!(report["replay"]["leases_granted"].as_u64(), Some(0));
        let etcd = EtcdProcess::start(bins, EtcdConfig::new(&dir)).unwrap();
        f.oracle
            .assert_matches_compacted(&etcd, f.oracle.final_revision);
        let listed = lease_list(&etcd);
        assert!(
            live.is_subset(&listed),
            "live keys' leases {live:?}, etcd lists {listed:?}"
        );
        matrix.ran(bins);
    }
    matrix.assert_each_ran(1);
}
