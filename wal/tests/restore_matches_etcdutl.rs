//! The WAL and `.snap` our fresh-member writer produces are byte-identical to what
//! `etcdutl snapshot restore` 3.5.1 (and `etcdctl snapshot restore` 3.4.23 for the 3.4
//! flavour) writes for the same flags.

mod common;

use std::path::Path;
use std::process::Command;

use common::{files, first_diff, run, snapshot_db};
use testkit::EtcdBins;
use wal::{Cluster, FreshMember, OsFs, RestoreFlavor, WriterOptions};

struct Flags<'a> {
    name: &'a str,
    initial_cluster: &'a str,
    token: &'a str,
    advertise: &'a str,
}

fn upstream_restore(bins: &EtcdBins, snap: &Path, out: &Path, f: &Flags<'_>) {
    let mut cmd = match &bins.etcdutl {
        Some(u) => Command::new(u),
        None => {
            let mut c = Command::new(&bins.etcdctl);
            c.env("ETCDCTL_API", "3");
            c
        }
    };
    cmd.arg("snapshot")
        .arg("restore")
        .arg(snap)
        .arg(format!("--data-dir={}", out.display()))
        .arg(format!("--name={}", f.name))
        .arg(format!("--initial-cluster={}", f.initial_cluster))
        .arg(format!("--initial-cluster-token={}", f.token))
        .arg(format!("--initial-advertise-peer-urls={}", f.advertise));
    run(&mut cmd);
}

fn compare(version: &str, flavor: RestoreFlavor, f: &Flags<'_>) -> Option<(u64, u64)> {
    let bins = EtcdBins::get(version)?;
    let snap = snapshot_db()?;
    let tmp = tempfile::tempdir().expect("tempdir");
    let theirs = tmp.path().join("theirs");
    upstream_restore(&bins, &snap, &theirs, f);

    let cluster = Cluster::from_initial_cluster(f.initial_cluster, f.token).expect("cluster");
    let fresh = FreshMember::new(&cluster, f.name, flavor).expect("fresh member");
    let ours = tmp.path().join("ours");
    fresh
        .write(
            &OsFs,
            &ours.join("member/wal"),
            &ours.join("member/snap"),
            WriterOptions::default(),
        )
        .expect("write fresh member");

    let their_wal = files(&theirs.join("member/wal"));
    let our_wal = files(&ours.join("member/wal"));
    let names = |v: &[(String, Vec<u8>)]| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(&our_wal), names(&their_wal), "WAL file names");
    for ((n, a), (_, b)) in our_wal.iter().zip(&their_wal) {
        assert!(
            a == b,
            "{version} {}: WAL {n} differs at {:?} (ours {} bytes, theirs {})",
            f.name,
            first_diff(a, b),
            a.len(),
            b.len()
        );
    }
    let their_snap: Vec<_> = files(&theirs.join("member/snap"))
        .into_iter()
        .filter(|(n, _)| n.ends_with(".snap"))
        .collect();
    let our_snap = files(&ours.join("member/snap"));
    assert_eq!(names(&our_snap), names(&their_snap), ".snap file names");
    for ((n, a), (_, b)) in our_snap.iter().zip(&their_snap) {
        assert!(
            a == b,
            "{version} {}: {n} differs at {:?} (ours {} bytes, theirs {})",
            f.name,
            first_diff(a, b),
            a.len(),
            b.len()
        );
    }
    // The IDs etcd wrote, read back with our decoder.
    let state = wal::load_member(&OsFs, &theirs).expect("load etcd's restore");
    assert_eq!(state.committed_index(), cluster.members.len() as u64);
    Some((state.wal.metadata.node_id, state.wal.metadata.cluster_id))
}

const DEFAULT: Flags<'static> = Flags {
    name: "default",
    initial_cluster: "default=http://localhost:2380",
    token: "etcd-cluster",
    advertise: "http://localhost:2380",
};

#[test]
fn one_member_matches_etcdutl_3_5_1() {
    let Some((node, cluster)) = compare("3.5.1", RestoreFlavor::V3_5, &DEFAULT) else {
        return;
    };
    assert_eq!(format!("{node:x}"), "8e9e05c52164694d");
    assert_eq!(format!("{cluster:x}"), "cdf818194e3a8c32");
    assert_eq!(
        wal::member_id(&["http://localhost:2380".to_string()], "etcd-cluster"),
        node
    );
    assert_eq!(wal::cluster_id(&[node]), cluster);
}

const THREE: &str = "n1=http://10.0.0.1:2380,n2=https://10.0.0.2:2380,n2=http://10.0.0.2:2381,n3=HTTP://10.0.0.3:2380";

#[test]
fn three_members_match_etcdutl_3_5_1() {
    for (name, adv) in [
        ("n1", "http://10.0.0.1:2380"),
        ("n2", "https://10.0.0.2:2380,http://10.0.0.2:2381"),
        ("n3", "http://10.0.0.3:2380"),
    ] {
        let f = Flags {
            name,
            initial_cluster: THREE,
            token: "tok3",
            advertise: adv,
        };
        if compare("3.5.1", RestoreFlavor::V3_5, &f).is_none() {
            return;
        }
    }
}

#[test]
fn one_member_matches_etcdctl_3_4_23() {
    compare("3.4.23", RestoreFlavor::V3_4, &DEFAULT);
}

#[test]
fn three_members_match_etcdctl_3_4_23() {
    let f = Flags {
        name: "n2",
        initial_cluster: THREE,
        token: "tok3",
        advertise: "https://10.0.0.2:2380,http://10.0.0.2:2381",
    };
    compare("3.4.23", RestoreFlavor::V3_4, &f);
}

/// Go's JSON escaping of names (`<`, `>`, `&`, quotes, backslash, control characters,
/// U+2028) in the ConfChange context and the v2 store JSON, checked against etcd itself.
#[test]
fn special_characters_in_names_match_etcdutl_3_5_1() {
    let name = "m<&>\"\\\té\u{2028}\u{1}z";
    let ic = format!("{name}=http://127.0.0.1:2380,other=http://127.0.0.2:2380");
    let f = Flags {
        name,
        initial_cluster: &ic,
        token: "tok",
        advertise: "http://127.0.0.1:2380",
    };
    compare("3.5.1", RestoreFlavor::V3_5, &f);
}
