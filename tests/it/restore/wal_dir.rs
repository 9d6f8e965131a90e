//! `--wal-dir` (etcd's and etcdutl's: the WAL outside the data directory) for `restore`,
//! `validate` and `hashkv`, against real etcd 3.5.1 started with the same `--wal-dir`: etcdutl
//! `snapshot restore --wal-dir` writes the WAL there and `member/snap` into the data directory
//! (etcd `etcdutl/snapshot/v3_snapshot.go`, `Restore`); etcd reads it from there.

use std::path::Path;

use testkit::{Cli, EtcdBins, EtcdConfig, EtcdProcess, Fixture, tempfile};

const CLI: Cli = Cli(env!("CARGO_BIN_EXE_etcd-restore"));

fn validate(dir: &Path, wal: Option<&Path>) -> (i32, serde_json::Value) {
    let mut c = CLI.command();
    c.args(["validate", "--json", "--data-dir"]).arg(dir);
    if let Some(w) = wal {
        c.arg("--wal-dir").arg(w);
    }
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null),
    )
}

fn has_segment(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().ends_with(".wal"))
        })
        .unwrap_or(false)
}

fn etcd_config(dir: &Path, wal: &Path) -> EtcdConfig {
    let mut cfg = EtcdConfig::new(dir);
    cfg.extra_args.push(format!("--wal-dir={}", wal.display()));
    cfg
}

#[test]
fn a_restore_with_wal_dir_starts_on_etcd_with_the_same_wal_dir() {
    let Some(bins) = EtcdBins::get("3.5.1") else {
        return;
    };
    let f = Fixture::load("3.5.1", "basic").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data/restored.etcd");
    let wal = tmp.path().join("wal-volume/restored.wal");
    let out = CLI.restore(
        &f.store(),
        &dir,
        &["--json", "--wal-dir", wal.to_str().unwrap()],
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["members"][0]["wal_dir"].as_str(),
        Some(wal.to_str().unwrap())
    );
    assert!(has_segment(&wal), "no WAL segment in {}", wal.display());
    assert!(!dir.join("member/wal").exists());
    assert!(dir.join("member/snap/db").is_file());

    let (code, v) = validate(&dir, Some(&wal));
    assert_eq!((code, v["verdict"].as_str()), (0, Some("valid")), "{v:#}");
    // Without --wal-dir the WAL is missing where etcd would look by default.
    let (code, v) = validate(&dir, None);
    assert_eq!((code, v["verdict"].as_str()), (3, Some("corrupt")), "{v:#}");

    let ours = CLI.hashkv(&dir);
    let etcd = EtcdProcess::start(&bins, etcd_config(&dir, &wal)).unwrap();
    let theirs = etcd.hashkv(None).unwrap();
    assert_eq!(ours, (theirs.hash, theirs.compact_revision));
    f.oracle.assert_matches(&etcd, f.oracle.final_revision);
    etcd.put("k", "v").unwrap();
    drop(etcd);
    // What etcd wrote meanwhile went to --wal-dir.
    let (code, v) = validate(&dir, Some(&wal));
    assert_eq!(code, 0, "{v:#}");
    assert!(v["wal_commit"].as_u64().unwrap() > 1, "{v:#}");
    assert!(!dir.join("member/wal").exists());
}

#[test]
fn validate_reads_the_wal_of_an_etcd_started_with_wal_dir() {
    let Some(bins) = EtcdBins::get("3.5.1") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("fresh.etcd");
    let wal = tmp.path().join("fresh.wal");
    let etcd = EtcdProcess::start(&bins, etcd_config(&dir, &wal)).unwrap();
    let mut last = 0;
    for i in 0..20 {
        last = etcd.put(&format!("key-{i}"), "value").unwrap();
    }
    drop(etcd);
    assert!(has_segment(&wal) && !dir.join("member/wal").exists());
    let (code, v) = validate(&dir, Some(&wal));
    assert_eq!(code, 0, "{v:#}");
    // Writes the backend had not committed when etcd stopped are in the WAL: validate counts
    // them from --wal-dir.
    assert!(v["wal_commit"].as_u64().unwrap() > 20, "{v:#}");
    assert!(
        v["max_revision_after_replay"].as_i64().unwrap() >= last,
        "{v:#}"
    );
    let (code, _) = validate(&dir, None);
    assert_eq!(code, 3);
}

#[test]
fn wal_dir_refusals_name_the_problem_and_create_nothing() {
    let f = Fixture::load("3.5.1", "basic").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("r.etcd");
    let run = |args: &[&str]| {
        let out = CLI
            .command()
            .arg("restore")
            .arg("--store")
            .arg(f.store())
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // Inside the data directory (but not its default place).
    let inside = dir.join("wal");
    let (code, err) = run(&[
        "--data-dir",
        dir.to_str().unwrap(),
        "--wal-dir",
        inside.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("overlaps the data directory"), "{err}");
    assert!(!dir.exists());
    // A WAL directory with something in it is not replaced without --force.
    let busy = tmp.path().join("busy.wal");
    std::fs::create_dir(&busy).unwrap();
    std::fs::write(busy.join("0000000000000000-0000000000000000.wal"), b"old").unwrap();
    let (code, err) = run(&[
        "--data-dir",
        dir.to_str().unwrap(),
        "--wal-dir",
        busy.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("--wal-dir")
            && err.contains("busy.wal: is not empty")
            && err.contains("--force"),
        "{err}"
    );
    assert!(!dir.exists());
    assert_eq!(
        std::fs::read(busy.join("0000000000000000-0000000000000000.wal")).unwrap(),
        b"old"
    );
    // Several members need {name} in it.
    let (code, err) = run(&[
        "--data-dir-template",
        tmp.path().join("{name}.etcd").to_str().unwrap(),
        "--initial-cluster",
        "a=http://127.0.0.1:1,b=http://127.0.0.1:2",
        "--name",
        "a",
        "--initial-advertise-peer-urls",
        "http://127.0.0.1:1",
        "--wal-dir",
        tmp.path().join("shared.wal").to_str().unwrap(),
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("{name}"), "{err}");
    // With --force the old WAL directory is replaced, and the default place is accepted as is.
    let (code, err) = run(&[
        "--data-dir",
        dir.to_str().unwrap(),
        "--wal-dir",
        busy.to_str().unwrap(),
        "--force",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(has_segment(&busy));
    let other = tmp.path().join("other.etcd");
    let (code, err) = run(&[
        "--data-dir",
        other.to_str().unwrap(),
        "--wal-dir",
        other.join("member/wal").to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(has_segment(&other.join("member/wal")));
}

/// `hashkv --json [--wal-dir W] [EXTRA…]`: exit code and the JSON document.
fn hashkv(dir: &Path, wal: Option<&Path>, extra: &[&str]) -> (i32, serde_json::Value, String) {
    let mut c = CLI.command();
    c.args(["hashkv", "--json", "--data-dir"])
        .arg(dir)
        .args(extra);
    if let Some(w) = wal {
        c.arg("--wal-dir").arg(w);
    }
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A database copied while etcd ran, put back under the WAL etcd kept writing: etcd applies
/// the later writes when it starts, so the database's own hash is not the one etcd reports.
/// hashkv refuses it (exit 3, the count in --json), --ignore-wal hashes it anyway, and etcd
/// started on the directory reports the source's HashKV.
#[test]
fn hashkv_refuses_a_database_its_wal_runs_ahead_of() {
    let Some(bins) = EtcdBins::get("3.5.1") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src.etcd");
    let wal = tmp.path().join("src.wal");
    let mut etcd = EtcdProcess::start(&bins, etcd_config(&src, &wal)).unwrap();
    for i in 0..10 {
        etcd.put(&format!("early-{i}"), "v").unwrap();
    }
    // etcd's backend commits every 100 ms; with no traffic the file then stays still.
    std::thread::sleep(std::time::Duration::from_secs(1));
    let early_db = std::fs::read(src.join("member/snap/db")).unwrap();
    for i in 0..7 {
        etcd.put(&format!("late-{i}"), "v").unwrap();
    }
    etcd.put("early-0", "changed").unwrap();
    let want = etcd.hashkv(None).unwrap();
    etcd.stop().unwrap();
    drop(etcd);
    std::fs::write(src.join("member/snap/db"), &early_db).unwrap();

    let (code, v, err) = hashkv(&src, Some(&wal), &[]);
    assert_eq!(code, 3, "{err}");
    assert!(v["hash"].is_null(), "no hash is printed: {v}");
    assert_eq!(v["wal"]["committed_changes"], 8, "{v}");
    assert_eq!(v["wal"]["in_step"], false, "{v}");
    assert_eq!(v["wal"]["wal_dir"].as_str(), wal.to_str());
    assert!(
        v["wal"]["consistent_index"].as_u64() < v["wal"]["wal_commit"].as_u64(),
        "{v}"
    );
    assert!(
        err.contains("8 committed change(s)") && err.contains("--ignore-wal"),
        "{err}"
    );
    let (code, v_db, err) = hashkv(&src, Some(&wal), &["--ignore-wal"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("warning"), "{err}");
    assert_eq!(v_db["wal"]["in_step"], false);
    // Without --wal-dir there is no WAL where etcd looks by default: said, not checked.
    let (code, v, err) = hashkv(&src, None, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(v["wal"].is_null() && err.contains("no WAL"), "{v} {err}");

    let etcd = EtcdProcess::start(&bins, etcd_config(&src, &wal)).unwrap();
    let got = etcd.hashkv(None).unwrap();
    assert_eq!(
        (got.hash, got.compact_revision),
        (want.hash, want.compact_revision),
        "etcd applied the WAL"
    );
    assert_ne!(
        v_db["hash"].as_u64(),
        Some(u64::from(got.hash)),
        "the database alone hashes differently"
    );
}

/// A restore with --wal-dir: hashkv given the same --wal-dir finds nothing pending and
/// reports the hash etcd started with that --wal-dir reports.
#[test]
fn hashkv_with_wal_dir_matches_etcd_on_a_restore() {
    let Some(bins) = EtcdBins::get("3.5.1") else {
        return;
    };
    let f = Fixture::load("3.5.1", "basic").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("r.etcd");
    let wal = tmp.path().join("r.wal");
    CLI.restore(&f.store(), &dir, &["--wal-dir", wal.to_str().unwrap()]);
    let (code, v, err) = hashkv(&dir, Some(&wal), &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(v["wal"]["in_step"], true, "{v}");
    assert_eq!(v["wal"]["committed_changes"], 0, "{v}");
    assert!(!err.contains("warning"), "{err}");
    let etcd = EtcdProcess::start(&bins, etcd_config(&dir, &wal)).unwrap();
    let theirs = etcd.hashkv(None).unwrap();
    assert_eq!(
        (v["hash"].as_u64(), v["compact_revision"].as_i64()),
        (Some(u64::from(theirs.hash)), Some(theirs.compact_revision))
    );
    // A --wal-dir that does not exist is an error, not a silent unchecked hash.
    let (code, _, err) = hashkv(&dir, Some(&tmp.path().join("nope")), &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("nope"), "{err}");
}
