//! `--batch FILE` against real etcd: several independent clusters' backups (each its own store
//! prefix, copied from the committed fixtures) restored in parallel and in order; invalid batch
//! files rejected with every problem at once and nothing run; a member with a corrupted delta
//! failing alone, its old data dir untouched; and one backup restored into a 3-member cluster
//! that real etcd 3.5.1 forms.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use testkit::{ClusterSpec, EtcdBins, EtcdConfig, EtcdProcess, Fixture, tempfile};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_etcd-restore")
}

fn copy_dir(from: &Path, to: &Path) {
    testkit::tree::copy_dir(from, to).unwrap();
}

/// Copies fixture stores under `<root>/stores/<alias>` (one prefix per alias).
fn stores(root: &Path, members: &[(&str, &str)]) -> Vec<Fixture> {
    members
        .iter()
        .map(|(alias, scenario)| {
            let f = Fixture::load("3.5.1", scenario).unwrap();
            copy_dir(&f.store(), &root.join("stores").join(alias));
            f
        })
        .collect()
}

fn batch_file(root: &Path, name: &str, text: &str) -> PathBuf {
    let p = root.join(name);
    fs::write(&p, text).unwrap();
    p
}

/// A batch of single-member targets `<out>/<alias>.etcd`, stores `stores/<alias>`.
fn simple_batch(aliases: &[&str], out: &str, maintain_order: bool) -> String {
    let mut s = format!("defaults:\n  store: stores\nmaintainOrder: {maintain_order}\nmembers:\n");
    for a in aliases {
        s.push_str(&format!(
            "  - alias: {a}\n    prefix: {a}\n    dataDir: {out}/{a}.etcd\n"
        ));
    }
    s
}

fn run(args: &[&str], batch: &Path) -> Output {
    Command::new(bin())
        .args(args)
        .arg("--batch")
        .arg(batch)
        .output()
        .expect("run etcd-restore")
}

fn json_report(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}); stdout {} stderr {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn member<'a>(report: &'a Value, alias: &str) -> &'a Value {
    report["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["alias"] == alias)
        .unwrap_or_else(|| panic!("no member {alias} in {report:#}"))
}

/// Each alias's status in a JSON report, in the order given.
fn statuses<'a>(report: &'a Value, aliases: &[&str]) -> Vec<&'a str> {
    aliases
        .iter()
        .map(|a| member(report, a)["status"].as_str().unwrap())
        .collect()
}

/// Real etcd on the restored dir serves exactly what the source cluster served.
fn assert_serves(bins: &EtcdBins, dir: &Path, f: &Fixture) {
    let etcd = EtcdProcess::start(bins, EtcdConfig::new(dir)).unwrap();
    f.oracle.assert_matches(&etcd, f.oracle.final_revision);
}

const THREE: [(&str, &str); 3] = [("a", "basic"), ("b", "v1"), ("c", "overlap-1043")];

#[test]
fn independent_clusters_restore_in_parallel_and_in_order() {
    let Some(bins) = EtcdBins::get("3.5.1") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let fixtures = stores(tmp.path(), &THREE);
    let aliases: Vec<&str> = THREE.iter().map(|(a, _)| *a).collect();
    for (out, ordered, extra) in [
        ("par", false, vec!["--parallel", "3"]),
        ("seq", true, vec![]),
    ] {
        let file = batch_file(
            tmp.path(),
            &format!("{out}.yaml"),
            &simple_batch(&aliases, out, ordered),
        );
        let mut args = vec!["restore", "--json", "--keep-unknown-leases"];
        args.extend(extra);
        let o = run(&args, &file);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let report = json_report(&o);
        assert_eq!(report["summary"]["succeeded"], 3, "{report:#}");
        assert_eq!(report["summary"]["maintain_order"], ordered);
        assert_eq!(
            report["summary"]["parallel"],
            if ordered { 1 } else { 3 },
            "{report:#}"
        );
        for ((alias, _), f) in THREE.iter().zip(&fixtures) {
            let m = member(&report, alias);
            assert_eq!(m["status"], "succeeded");
            assert_eq!(
                m["detail"]["replay"]["final_revision"], f.oracle.final_revision,
                "{out}/{alias}"
            );
            assert_serves(
                &bins,
                &tmp.path().join(out).join(format!("{alias}.etcd")),
                f,
            );
        }
        // The same file validates every restored dir against its own store.
        let v = run(&["validate", "--json", "--mode", "full"], &file);
        assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));
    }
}

#[test]
fn invalid_batch_files_are_rejected_with_every_problem_listed_and_nothing_run() {
    let tmp = tempfile::tempdir().unwrap();
    stores(tmp.path(), &[("a", "basic"), ("b", "v1")]);
    let file = batch_file(
        tmp.path(),
        "bad.yaml",
        "defaults: {store: stores}\n\
         members:\n\
         - {alias: a, prefix: a, dataDir: out/a.etcd}\n\
         - {alias: a, prefix: b, dataDir: out/b.etcd}\n\
         - {alias: c, prefix: a/, dataDir: out/a.etcd}\n\
         - {alias: d, prefix: d, dataDir: out/b.etcd/inner}\n\
         - {alias: e, prefix: e}\n\
         - alias: f\n\
         \x20 prefix: f\n\
         \x20 memberSet:\n\
         \x20   members:\n\
         \x20   - {name: m1, dataDir: out/f1}\n",
    );
    let expected = [
        "alias \"a\" is used by members #1 and #2",
        "c: store file://",
        "is also the store of a",
        "c: data dir",
        "is also the data dir of a",
        "d: data dir",
        "must not be nested",
        "e: no target",
        "f: memberSet member #1: `peerUrls` is missing",
        "6 problem(s)",
    ];
    for cmd in ["restore", "validate"] {
        let o = run(&[cmd], &file);
        assert_eq!(o.status.code(), Some(2), "{cmd}");
        let err = String::from_utf8_lossy(&o.stderr);
        for want in expected {
            assert!(err.contains(want), "{cmd}: {want:?} not in:\n{err}");
        }
        assert!(o.stdout.is_empty(), "{cmd} ran something");
    }
    assert!(!tmp.path().join("out").exists(), "a target was created");

    // Compact needs no data dirs, but the stores must still be 1:1.
    let o = run(&["compact", "--dry-run"], &file);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("is also the store of a"), "{err}");
    assert!(!err.contains("no target"), "{err}");

    // A typo is an error with its place, not a silently ignored key.
    let typo = batch_file(
        tmp.path(),
        "typo.yaml",
        "members:\n- {alias: a, store: stores/a, dataDri: out/a}\n",
    );
    let o = run(&["restore"], &typo);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("dataDri") && err.contains("line 2"), "{err}");
}

/// Flips bytes in the middle of the newest uncompressed delta of a store (one the restore
/// plan applies: it follows the latest full snapshot).
fn corrupt_a_delta(store: &Path) -> String {
    let v2 = store.join("v2");
    let mut names: Vec<String> = fs::read_dir(&v2)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("Incr-") && !n.contains('.'))
        .collect();
    names.sort();
    let name = names.last().expect("an uncompressed delta").clone();
    let p = v2.join(&name);
    let mut bytes = fs::read(&p).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 8] {
        *b ^= 0x5a;
    }
    fs::write(&p, bytes).unwrap();
    name
}

#[test]
fn a_member_with_a_corrupted_backup_fails_alone() {
    let Some(bins) = EtcdBins::get("3.5.1") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let members = [("a", "v1"), ("b", "basic"), ("c", "overlap-1043")];
    let fixtures = stores(tmp.path(), &members);
    let broken = corrupt_a_delta(&tmp.path().join("stores/b"));
    let aliases = ["a", "b", "c"];

    // b's target already holds a data dir: the failed restore must leave it as it was.
    let old_b = tmp.path().join("par/b.etcd");
    fs::create_dir_all(old_b.join("member")).unwrap();
    fs::write(old_b.join("member/old"), "previous data").unwrap();

    let file = batch_file(
        tmp.path(),
        "par.yaml",
        &simple_batch(&aliases, "par", false),
    );
    let o = run(
        &[
            "restore",
            "--json",
            "--force",
            "--keep-unknown-leases",
            "--parallel",
            "3",
        ],
        &file,
    );
    assert_eq!(o.status.code(), Some(1));
    let report = json_report(&o);
    let b = member(&report, "b");
    assert_eq!(b["status"], "failed");
    let err = b["error"].as_str().unwrap();
    assert!(err.contains(&broken), "error should name {broken}: {err}");
    assert_eq!(
        fs::read_to_string(old_b.join("member/old")).unwrap(),
        "previous data"
    );
    let leftovers: Vec<_> = fs::read_dir(tmp.path().join("par"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "staging left behind: {leftovers:?}");
    for (i, alias) in [(0, "a"), (2, "c")] {
        assert_eq!(member(&report, alias)["status"], "succeeded");
        assert_serves(
            &bins,
            &tmp.path().join(format!("par/{alias}.etcd")),
            &fixtures[i],
        );
    }
    assert_eq!(report["summary"]["failed"], 1);

    // In listed order the first failure stops the batch...
    let file = batch_file(tmp.path(), "seq.yaml", &simple_batch(&aliases, "seq", true));
    let prom = tmp.path().join("batch.prom");
    let metrics_flag = format!("--metrics-file={}", prom.display());
    let o = run(&["restore", "--json", &metrics_flag], &file);
    assert_eq!(o.status.code(), Some(1));
    let report = json_report(&o);
    assert_eq!(
        statuses(&report, &aliases),
        ["succeeded", "failed", "skipped"]
    );
    // ... and its metrics name the member that failed.
    let text = fs::read_to_string(&prom).unwrap();
    for line in [
        r#"etcd_restore_batch_member_succeeded{alias="a",command="restore"} 1"#,
        r#"etcd_restore_batch_member_succeeded{alias="b",command="restore"} 0"#,
        r#"etcd_restore_batch_member_succeeded{alias="c",command="restore"} 0"#,
        r#"etcd_restore_batch_members{command="restore",status="succeeded"} 1"#,
        r#"etcd_restore_batch_members{command="restore",status="failed"} 1"#,
        r#"etcd_restore_batch_members{command="restore",status="skipped"} 1"#,
    ] {
        assert!(text.lines().any(|l| l == line), "no {line} in:\n{text}");
    }
    assert!(
        text.contains(r#"etcd_restore_run_duration_seconds{command="restore",succeeded="false"}"#),
        "{text}"
    );
    assert!(
        !text.contains("etcd_restore_run_last_success_timestamp_seconds{"),
        "{text}"
    );
    assert!(!tmp.path().join("seq/c.etcd").exists());
    assert!(!tmp.path().join("seq/b.etcd").exists());

    // ... unless told to go on (a is there now: --force replaces it).
    let o = run(
        &["restore", "--json", "--force", "--continue-on-error"],
        &file,
    );
    assert_eq!(o.status.code(), Some(1));
    let report = json_report(&o);
    assert_eq!(
        statuses(&report, &aliases),
        ["succeeded", "failed", "succeeded"]
    );
    let table = run(&["validate", "--continue-on-error"], &file);
    let text = String::from_utf8_lossy(&table.stdout);
    assert_eq!(table.status.code(), Some(1), "{text}");
    assert!(
        text.contains("2 of 3 member(s) succeeded, 1 failed"),
        "{text}"
    );
}

#[test]
fn one_backup_restores_into_a_healthy_three_member_cluster() {
    let Some(bins) = EtcdBins::get("3.5.1") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let fixtures = stores(tmp.path(), &[("prod", "basic")]);
    let spec = ClusterSpec::new(
        &tmp.path().join("out"),
        &["etcd-0", "etcd-1", "etcd-2"],
        "prod-restored",
    );
    let mut text = format!(
        "defaults: {{store: stores}}\nmembers:\n- alias: prod\n  prefix: prod\n  memberSet:\n    initialClusterToken: {}\n    members:\n",
        spec.token
    );
    for m in &spec.members {
        text.push_str(&format!(
            "    - {{name: {}, peerUrls: ['{}'], dataDir: '{}'}}\n",
            m.name,
            m.peer_url(),
            m.data_dir.display()
        ));
    }
    let file = batch_file(tmp.path(), "cluster.yaml", &text);
    let o = run(&["restore", "--json", "--keep-unknown-leases"], &file);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report = json_report(&o);
    let restored = member(&report, "prod")["detail"]["members"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(restored, 3);
    let v = run(&["validate"], &file);
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));

    let procs = spec.start(&bins).expect("cluster healthy");
    testkit::cluster::assert_members_agree(&procs);
    let f = &fixtures[0];
    f.oracle.assert_matches(&procs[2], f.oracle.final_revision);
    let ids: Vec<String> = procs[0]
        .member_list()
        .unwrap()
        .iter()
        .map(|m| m.name.clone())
        .collect();
    for m in &spec.members {
        assert!(ids.contains(&m.name), "{} not in {ids:?}", m.name);
    }
}
