//! `restore --bump-revision N --mark-compacted` (etcdutl `snapshot restore`'s flags, etcd
//! `etcdutl/snapshot/v3_snapshot.go` `modifyLatestRevision`) against real etcd 3.5.1: the
//! restored member reports revision latest + N, serves the source's keys, answers watches and
//! reads at older revisions with "required revision has been compacted", accepts writes, and
//! our offline hashkv and validate agree with it. Also for every member of a multi-member
//! restore, for `--batch`, and etcdutl's flag rule.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use testkit::kill::run_and_kill;
use testkit::{Cli, ClusterSpec, EtcdBins, EtcdConfig, EtcdProcess, Fixture, tempfile};

const CLI: Cli = Cli(env!("CARGO_BIN_EXE_etcd-restore"));
const BUMP: i64 = 100_000;
const COMPACTED: &str = "required revision has been compacted";

const BUMP_FLAGS: [&str; 3] = ["--bump-revision", "100000", "--mark-compacted"];

/// `etcdctl watch KEY --rev=REV`: etcd cancels a watch below its compaction revision at once
/// (etcdctl then exits 5); a watch that is not cancelled is killed after a few seconds.
fn watch_from(etcd: &EtcdProcess, rev: i64) -> (bool, String) {
    let mut cmd = Command::new(&etcd.bins().etcdctl);
    cmd.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", etcd.endpoint()))
        .args(["watch", "any-key", &format!("--rev={rev}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let (ended, out) = run_and_kill(cmd, Duration::from_secs(5));
    let stderr = out
        .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
        .unwrap_or_default();
    (ended, stderr)
}

fn validate_json(dir: &Path) -> serde_json::Value {
    let mut c = CLI.command();
    c.args(["validate", "--json", "--data-dir"]).arg(dir);
    let out = CLI.ok(&mut c, "validate");
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_bumped_restore_serves_the_source_at_a_higher_compacted_revision_on_etcd_3_5() {
    let Some(bins) = EtcdBins::get("3.5.1") else {
        return;
    };
    let f = Fixture::load("3.5.1", "basic").unwrap();
    let latest = f.oracle.final_revision;
    let bumped = latest + BUMP;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("bumped.etcd");
    let out = CLI.restore(&f.store(), &dir, &[&["--json"][..], &BUMP_FLAGS].concat());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["replay"]["final_revision"].as_i64(), Some(latest));
    assert_eq!(
        report["bumped"],
        serde_json::json!({"latest_revision": latest, "amount": BUMP, "revision": bumped})
    );

    // Offline, before etcd touches it: valid, at the bumped revision, compaction scheduled there.
    let v = validate_json(&dir);
    assert_eq!(v["verdict"], "valid", "{v:#}");
    assert_eq!(v["db_revision"].as_i64(), Some(bumped), "{v:#}");
    let ours = CLI.hashkv(&dir);
    assert_eq!(ours.1, bumped, "offline compact revision");

    let etcd = EtcdProcess::start(&bins, EtcdConfig::new(&dir)).unwrap();
    assert_eq!(etcd.status().unwrap().revision, bumped);
    // The source's keys and values, exactly; the bump record (an empty key) is not one.
    let want = f
        .oracle
        .dump_at(latest)
        .expect("oracle dump at the final revision");
    let now = etcd.get_all(None).unwrap();
    assert_eq!(now.revision, bumped);
    let mut diffs = Vec::new();
    testkit::oracle::diff_kvs("keys", &want.kvs, &now.kvs, &mut diffs);
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
    let h = etcd.hashkv(None).unwrap();
    assert_eq!(
        (h.hash, h.compact_revision),
        ours,
        "offline hashkv vs etcd's"
    );

    // Every older revision is compacted, for watches and reads alike.
    for rev in [1, latest, bumped - 1] {
        let (ended, stderr) = watch_from(&etcd, rev);
        assert!(
            ended && stderr.contains(COMPACTED),
            "watch --rev={rev}: {stderr}"
        );
        let e = etcd.get_all(Some(rev)).unwrap_err().to_string();
        assert!(e.contains(COMPACTED), "get --rev={rev}: {e}");
    }
    // A watch from the next revision is not cancelled, and writes continue above the bump.
    let (ended, stderr) = watch_from(&etcd, bumped + 1);
    assert!(!ended, "watch --rev={}: {stderr}", bumped + 1);
    assert_eq!(etcd.put("after-restore", "v").unwrap(), bumped + 1);
    assert_eq!(
        etcd.get("after-restore", None)
            .unwrap()
            .map(|kv| kv.mod_revision),
        Some(bumped + 1)
    );
}

#[test]
fn every_member_of_a_multi_member_restore_is_bumped() {
    let Some(bins) = EtcdBins::get("3.5.1") else {
        return;
    };
    let f = Fixture::load("3.5.1", "basic").unwrap();
    let bumped = f.oracle.final_revision + BUMP;
    let tmp = tempfile::tempdir().unwrap();
    let spec = ClusterSpec::new(tmp.path(), &["m1", "m2", "m3"], "bumped");
    let mut c = CLI.command();
    c.arg("restore")
        .arg("--store")
        .arg(f.store())
        .arg("--data-dir-template")
        .arg(tmp.path().join("{name}.etcd"))
        .args(["--name", "m1", "--initial-cluster", &spec.initial_cluster()])
        .args(["--initial-cluster-token", &spec.token])
        .arg("--initial-advertise-peer-urls")
        .arg(spec.members[0].peer_url())
        .args(BUMP_FLAGS);
    CLI.ok(&mut c, "restore --data-dir-template --bump-revision");
    let procs = spec.start(&bins).expect("cluster healthy");
    testkit::cluster::assert_members_agree(&procs);
    for p in &procs {
        assert_eq!(p.status().unwrap().revision, bumped, "{}", p.config().name);
        let (ended, stderr) = watch_from(p, f.oracle.final_revision);
        assert!(ended && stderr.contains(COMPACTED), "{stderr}");
    }
    assert_eq!(procs[2].put("k", "v").unwrap(), bumped + 1);
}

#[test]
fn a_batch_restore_bumps_every_member() {
    let tmp = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/backups/etcd-3.5.1");
    let batch = tmp.path().join("batch.yaml");
    let out = tmp.path().join("out");
    std::fs::write(
        &batch,
        format!(
            "defaults:\n  store: {}\nmembers:\n  - alias: basic\n    prefix: basic/store\n    dataDir: {}/basic.etcd\n  - alias: v1\n    prefix: v1/store\n    dataDir: {}/v1.etcd\n",
            root.display(),
            out.display(),
            out.display()
        ),
    )
    .unwrap();
    let mut c = CLI.command();
    c.args(["restore", "--json", "--batch"])
        .arg(&batch)
        .args(BUMP_FLAGS);
    CLI.ok(&mut c, "restore --batch --bump-revision");
    for scenario in ["basic", "v1"] {
        let f = Fixture::load("3.5.1", scenario).unwrap();
        let (_, compact) = CLI.hashkv(&out.join(format!("{scenario}.etcd")));
        assert_eq!(compact, f.oracle.final_revision + BUMP, "{scenario}");
    }
}

#[test]
fn the_flags_follow_etcdutls_rule_and_a_refusal_creates_nothing() {
    let f = Fixture::load("3.5.1", "basic").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("never.etcd");
    for args in [
        &["--bump-revision", "10"][..],
        &["--mark-compacted"],
        &["--bump-revision", "0", "--mark-compacted"],
    ] {
        let out = CLI
            .command()
            .arg("restore")
            .arg("--store")
            .arg(f.store())
            .arg("--data-dir")
            .arg(&dir)
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("--mark-compacted required if --revision-bump > 0"),
            "{args:?}: {stderr}"
        );
        assert!(!dir.exists());
    }
    // `--bump-revision 0` alone is etcdutl's default: a plain restore.
    let out = CLI.restore(&f.store(), &dir, &["--bump-revision", "0", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report.get("bumped").is_none(), "{report:#}");
}
