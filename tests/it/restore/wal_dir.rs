//! `--wal-dir` (etcd's and etcdutl's: the WAL outside the data directory) for `restore` and
//! `validate`, against real etcd 3.5.1 started with the same `--wal-dir`: etcdutl
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
