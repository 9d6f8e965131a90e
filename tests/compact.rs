//! `etcd-restore compact` against real etcd: every fixture store (copied to a temp dir first)
//! is compacted into a new full snapshot; restoring it with our restore and with
//! `etcdutl`/`etcdctl snapshot restore` must give, on etcd 3.5.1 and 3.4.23, exactly the
//! oracle's key space at the last revision, compacted at that revision.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use testkit::{Cli, ETCD_VERSIONS, EtcdBins, EtcdConfig, EtcdProcess, Fixture, tempfile};

const SCENARIOS: [&str; 2] = ["basic", "v1"];

const CLI: Cli = Cli(env!("CARGO_BIN_EXE_etcd-restore"));

fn bin() -> &'static str {
    CLI.0
}

fn copy_dir(from: &Path, to: &Path) {
    testkit::tree::copy_dir(from, to).unwrap();
}

/// A writable copy of a fixture's store (testdata is never modified).
fn store_copy(f: &Fixture, tmp: &Path) -> PathBuf {
    let dst = tmp.join("store");
    copy_dir(&f.store(), &dst);
    dst
}

fn list_v2(store: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(store.join("v2"))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn compact(store: &Path, temp: &Path, extra: &[&str]) -> (i32, serde_json::Value, String) {
    let out = Command::new(bin())
        .arg("compact")
        .arg("--store")
        .arg(store)
        .arg("--snapstore-temp-directory")
        .arg(temp)
        .arg("--json")
        .args(extra)
        .output()
        .expect("run compact");
    let v = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (
        out.status.code().unwrap_or(-1),
        v,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The uploaded object decompressed into a snapshot file (db + sha256 trailer) for etcdutl.
fn decompressed_snapshot(store: &Path, object: &str, ext: &str, out: &Path) {
    let src = store.join(object);
    let data = std::fs::read(&src).unwrap();
    let raw = match ext {
        "" => data,
        "gz" => {
            let mut v = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&data[..]), &mut v)
                .unwrap();
            v
        }
        other => panic!("test only writes gzip or plain snapshots, got {other}"),
    };
    std::fs::write(out, raw).unwrap();
}

fn check_etcd(
    f: &Fixture,
    bins: &EtcdBins,
    dir: &Path,
    what: &str,
    compacted: bool,
    check_offline_hash: bool,
) {
    let ours = check_offline_hash.then(|| CLI.hashkv(dir));
    let etcd = EtcdProcess::start(bins, EtcdConfig::new(dir))
        .unwrap_or_else(|e| panic!("{what}: etcd {}: {e}", bins.version));
    let h = etcd.hashkv(None).unwrap();
    if compacted {
        assert_eq!(
            h.compact_revision, f.oracle.final_revision,
            "{what} on {}: compaction revision",
            bins.version
        );
    }
    if let Some(ours) = ours {
        assert_eq!(
            ours,
            (h.hash, h.compact_revision),
            "{what} on {}: offline hashkv differs from etcd's",
            bins.version
        );
    }
    f.oracle.assert_matches(&etcd, f.oracle.final_revision);
}

#[test]
fn compacted_snapshots_restore_to_the_oracle_key_space_on_etcd_3_5_and_3_4() {
    let mut checked = 0;
    for version in ETCD_VERSIONS {
        for scenario in SCENARIOS {
            let f = Fixture::load(version, scenario).unwrap();
            let what = format!("{version}/{scenario}");
            let tmp = tempfile::tempdir().unwrap();
            let store = store_copy(&f, tmp.path());
            let before = list_v2(&store);
            let (code, report, err) = compact(&store, tmp.path(), &["--compression", "gzip"]);
            assert_eq!(code, 0, "{what}: compact failed: {err}");
            assert_eq!(
                report["fold"]["revision"], f.oracle.final_revision,
                "{what}"
            );
            assert_eq!(report["verified"], true, "{what}");
            let object = report["object"].as_str().unwrap().to_string();
            assert!(
                object.starts_with(&format!("v2/Full-00000000-{:08}-", f.oracle.final_revision))
                    && object.ends_with(".gz"),
                "{what}: {object}"
            );
            // Only one object was added, nothing was changed or removed.
            let after = list_v2(&store);
            assert_eq!(after.len(), before.len() + 1, "{what}: {after:?}");
            assert!(before.iter().all(|b| after.contains(b)));
            let records_out = report["fold"]["records_out"].as_u64().unwrap();
            let keys_now = f.oracle.dump_at(f.oracle.final_revision).unwrap().kvs.len();
            assert_eq!(
                records_out as usize, keys_now,
                "{what}: one record per live key"
            );

            let snap = tmp.path().join("snapshot.db");
            decompressed_snapshot(&store, &object, "gz", &snap);
            for etcd_version in ETCD_VERSIONS {
                let Some(bins) = EtcdBins::get(etcd_version) else {
                    continue;
                };
                // Our restore picks the new full snapshot (newest, highest revision).
                let ours = tmp.path().join(format!("ours-{etcd_version}.etcd"));
                CLI.restore(&store, &ours, &["--keep-unknown-leases"]);
                check_etcd(
                    &f,
                    &bins,
                    &ours,
                    &format!("{what} (our restore)"),
                    true,
                    true,
                );
                // etcdutl / etcdctl snapshot restore of the same object (hash checked).
                let theirs = tmp.path().join(format!("theirs-{etcd_version}.etcd"));
                bins.snapshot_restore(&snap, &EtcdConfig::new(&theirs), false)
                    .unwrap_or_else(|e| panic!("{what}: {etcd_version} snapshot restore: {e}"));
                check_etcd(
                    &f,
                    &bins,
                    &theirs,
                    &format!("{what} (snapshot restore {etcd_version})"),
                    true,
                    false,
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 0, "no etcd available to check against");
}

#[test]
fn keep_history_serves_every_recorded_revision() {
    let Some(bins) = EtcdBins::get("3.5.1") else {
        return;
    };
    for version in ETCD_VERSIONS {
        let f = Fixture::load(version, "basic").unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let store = store_copy(&f, tmp.path());
        let (code, report, err) = compact(&store, tmp.path(), &["--keep-history"]);
        assert_eq!(code, 0, "{err}");
        assert!(report["fold"]["compact_revision"].is_null());
        assert_eq!(
            report["fold"]["records_in"], report["fold"]["records_out"],
            "history kept record for record"
        );
        let dir = tmp.path().join("restored.etcd");
        CLI.restore(&store, &dir, &["--keep-unknown-leases"]);
        // assert_matches also checks every historical dump and hashkv the oracle recorded.
        check_etcd(
            &f,
            &bins,
            &dir,
            &format!("{version} keep-history"),
            false,
            true,
        );
    }
}

#[test]
fn dry_run_uploads_nothing() {
    let f = Fixture::load("3.5.1", "basic").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let store = store_copy(&f, tmp.path());
    let before = list_v2(&store);
    let (code, report, err) = compact(&store, tmp.path(), &["--dry-run"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(report["uploaded"], false);
    assert_eq!(list_v2(&store), before);
    // The temp directory is left as it was found (only the store copy and nothing else).
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "store")
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn metrics_file_is_prometheus_text() {
    let f = Fixture::load("3.4.23", "basic").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let store = store_copy(&f, tmp.path());
    let metrics = tmp.path().join("metrics.prom");
    let (code, _, err) = compact(
        &store,
        tmp.path(),
        &["--dry-run", "--metrics-file", metrics.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(&metrics).unwrap();
    let want = format!(
        "etcd_restore_compact_revision {}\n",
        f.oracle.final_revision
    );
    assert!(text.contains(&want), "{text}");
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap();
        assert!(series.starts_with("etcd_restore_"), "{line}");
        value.parse::<f64>().unwrap();
    }
    assert!(
        text.contains("etcd_restore_run_duration_seconds{command=\"compact\",succeeded=\"true\"}"),
        "{text}"
    );
}

/// SIGKILL at many points of a run: whatever is left in the store, restore must pick either
/// the old snapshots or a complete, verified new one, and reach the oracle's last revision.
#[test]
fn sigkill_during_compaction_leaves_nothing_restore_would_select() {
    let f = Fixture::load("3.5.1", "basic").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut saw_partial_or_none = 0;
    for delay_ms in [0u64, 5, 10, 20, 40, 60, 80, 120, 160, 250] {
        let work = tmp.path().join(format!("kill-{delay_ms}"));
        std::fs::create_dir_all(&work).unwrap();
        let store = store_copy(&f, &work);
        let before = list_v2(&store);
        let mut child = Command::new(bin())
            .arg("compact")
            .arg("--store")
            .arg(&store)
            .arg("--snapstore-temp-directory")
            .arg(&work)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        let added: Vec<_> = list_v2(&store)
            .into_iter()
            .filter(|n| !before.contains(n))
            .collect();
        if !added
            .iter()
            .any(|n| n.starts_with("Full-") && !n.contains('#'))
        {
            saw_partial_or_none += 1;
        }
        let ls = Command::new(bin())
            .args(["ls", "--store"])
            .arg(&store)
            .output()
            .unwrap();
        assert!(
            ls.status.success(),
            "{}",
            String::from_utf8_lossy(&ls.stderr)
        );
        let dir = work.join("restored.etcd");
        let out = Command::new(bin())
            .arg("restore")
            .arg("--store")
            .arg(&store)
            .arg("--data-dir")
            .arg(&dir)
            .arg("--json")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "after a kill at {delay_ms} ms (added {added:?}): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            v["replay"]["final_revision"], f.oracle.final_revision,
            "after a kill at {delay_ms} ms (added {added:?})"
        );
    }
    assert!(
        saw_partial_or_none > 0,
        "no kill landed before the upload completed"
    );
}
