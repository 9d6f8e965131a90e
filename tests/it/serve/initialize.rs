//! `etcd-restore initialize` as an init container runs it: restore a missing data dir, keep a
//! valid one untouched, refuse a wrong volume without touching it, and restore a corrupt one —
//! each outcome checked on real etcd 3.5.1 against the sample's oracle.

use std::path::Path;
use std::process::Command;

use testkit::{EtcdBins, EtcdConfig, EtcdProcess, Oracle};

fn sample() -> (std::path::PathBuf, Oracle) {
    let dir = testkit::deps::testdata_dir().join("sample");
    (
        dir.join("store"),
        Oracle::load(&dir.join("oracle.json")).expect("oracle"),
    )
}

/// Runs initialize; returns the exit code and the JSON result.
fn initialize(store: &Path, data_dir: &Path, namespace: &str) -> (i32, serde_json::Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_etcd-restore"))
        .args(["initialize", "--json", "--mode", "full", "--store"])
        .arg(store)
        .arg("--data-dir")
        .arg(data_dir)
        .env("POD_NAMESPACE", namespace)
        .output()
        .expect("run initialize");
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "initialize printed no JSON ({e}):\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), json)
}

fn serves_the_oracle(bins: &EtcdBins, data_dir: &Path, oracle: &Oracle) {
    let etcd = EtcdProcess::start(bins, EtcdConfig::new(data_dir)).expect("etcd starts");
    oracle.assert_matches(&etcd, oracle.final_revision);
    let h = etcd.hashkv(None).expect("hashkv");
    let want = oracle
        .hashkv
        .iter()
        .find(|r| r.revision == oracle.final_revision)
        .expect("oracle hash");
    assert_eq!(h.hash, want.hash, "hashkv of the restored member");
}

fn db_mtime(data_dir: &Path) -> std::time::SystemTime {
    std::fs::metadata(data_dir.join("member/snap/db"))
        .unwrap()
        .modified()
        .unwrap()
}

#[test]
fn initialize_restores_keeps_refuses_and_repairs() {
    let Some(bins) = EtcdBins::get("3.5.1") else {
        return;
    };
    let (store, oracle) = sample();
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data").join("new.etcd");
    std::fs::create_dir_all(data_dir.parent().unwrap()).unwrap();

    // 1. Missing → restored; the safe_guard beside it now names the namespace.
    let (code, r) = initialize(&store, &data_dir, "shoot--a");
    assert_eq!((code, r["outcome"].as_str()), (0, Some("restored")), "{r}");
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("data/safe_guard"))
            .unwrap()
            .trim(),
        "shoot--a"
    );
    serves_the_oracle(&bins, &data_dir, &oracle);

    // 2. Valid (etcd just ran on it) → kept, the database untouched.
    let before = db_mtime(&data_dir);
    let (code, r) = initialize(&store, &data_dir, "shoot--a");
    assert_eq!((code, r["outcome"].as_str()), (0, Some("kept")), "{r}");
    assert_eq!(
        db_mtime(&data_dir),
        before,
        "a kept data dir must not be written"
    );

    // 3. Another namespace's volume → exit 6, untouched.
    let (code, r) = initialize(&store, &data_dir, "shoot--b");
    assert_eq!((code, r["outcome"].as_str()), (6, Some("failed")), "{r}");
    assert_eq!(db_mtime(&data_dir), before);

    // 4. A corrupt database (meta pages zeroed) → restored, and etcd serves the oracle again.
    let db = data_dir.join("member/snap/db");
    let mut bytes = std::fs::read(&db).unwrap();
    let page = 4096.min(bytes.len());
    bytes[..page * 2].fill(0);
    std::fs::write(&db, bytes).unwrap();
    let (code, r) = initialize(&store, &data_dir, "shoot--a");
    assert_eq!((code, r["outcome"].as_str()), (0, Some("restored")), "{r}");
    serves_the_oracle(&bins, &data_dir, &oracle);
}
