//! `etcd-restore compact` against real etcd: every fixture store (copied to a temp dir first)
//! is compacted into a new full snapshot; restoring it with our restore and with
//! `etcdutl`/`etcdctl snapshot restore` must give, on etcd 3.5.1 and 3.4.23, exactly the
//! oracle's key space at the last revision, compacted at that revision.

mod codec;
mod concurrent;
mod druid_job;
mod lease;
mod locked;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use testkit::kill::{run_and_kill, time_it};
use testkit::{
    Cli, ETCD_VERSIONS, EtcdBins, EtcdConfig, EtcdMatrix, EtcdProcess, Fixture, tempfile,
};

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
    CLI.compact(store, temp, extra)
}

/// The uploaded object decompressed into a snapshot file (db + sha256 trailer) for etcdutl.
fn decompressed_snapshot(store: &Path, object: &str, ext: &str, out: &Path) {
    let src = store.join(object);
    let data = std::fs::read(&src).unwrap();
    let raw = match ext {
        "" => data,
        "gz" => {
            let mut v = Vec::new();
            // compact writes one gzip member per MiB: read them all, as Go's reader does.
            std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(&data[..]), &mut v)
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
    if let Some(ours) = ours {
        assert_eq!(
            ours,
            (h.hash, h.compact_revision),
            "{what} on {}: offline hashkv differs from etcd's",
            bins.version
        );
    }
    if compacted {
        // Compacted at the final revision, which the source never was: keys and the
        // compaction revision are checked, and hashkv only against our offline one above.
        f.oracle
            .assert_matches_compacted(&etcd, f.oracle.final_revision);
    } else {
        f.oracle.assert_matches(&etcd, f.oracle.final_revision);
    }
}

#[test]
fn compacted_snapshots_restore_to_the_oracle_key_space_on_etcd_3_5_and_3_4() {
    let matrix = EtcdMatrix::new(&ETCD_VERSIONS);
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
            for bins in matrix.bins() {
                let etcd_version = &bins.version;
                // Our restore picks the new full snapshot (newest, highest revision).
                let ours = tmp.path().join(format!("ours-{etcd_version}.etcd"));
                CLI.restore(&store, &ours, &["--keep-unknown-leases"]);
                check_etcd(
                    &f,
                    bins,
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
                    bins,
                    &theirs,
                    &format!("{what} (snapshot restore {etcd_version})"),
                    true,
                    false,
                );
                matrix.ran(bins);
            }
        }
    }
    matrix.assert_each_ran(ETCD_VERSIONS.len() * SCENARIOS.len());
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
/// The kill times are fractions (10 % .. 110 %) of a measured un-killed run, as in
/// tests/it/reliability/crash.rs, so they land inside the run on a fast or a slow machine alike;
/// longer (shorter) ones follow while no trial has published (been cut inside the run).
#[test]
fn sigkill_during_compaction_leaves_nothing_restore_would_select() {
    let f = Fixture::load("3.5.1", "basic").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let compact_cmd = |store: &Path, work: &Path| {
        let mut c = Command::new(bin());
        c.arg("compact")
            .arg("--store")
            .arg(store)
            .arg("--snapstore-temp-directory")
            .arg(work)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        c
    };
    // The un-killed run, twice: the first pays for a cold page cache, the trials do not.
    let run_time = (0..2)
        .map(|i| {
            let work = tmp.path().join(format!("measure-{i}"));
            std::fs::create_dir_all(&work).unwrap();
            let store = store_copy(&f, &work);
            let (t, out) = time_it(compact_cmd(&store, &work));
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            t
        })
        .min()
        .unwrap();
    let (mut killed_mid_run, mut published) = (0, 0);
    // Tenths of the measured run; then longer delays only while no run has published yet, and
    // shorter ones only while no kill has landed inside a run: a trial can run slower, or much
    // faster, than the measured one when the tests beside it load the machine unevenly.
    enum Until {
        Always,
        Published,
        KilledMidRun,
    }
    let tenths = |t: u32| (run_time * t / 10, format!("{t}/10"));
    let parts = |d: u32| (run_time / d, format!("1/{d}"));
    let trials = (1..=11)
        .map(|t| (tenths(t), Until::Always))
        .chain([15, 20, 30, 50].map(|t| (tenths(t), Until::Published)))
        .chain([20, 40, 80, 160].map(|d| (parts(d), Until::KilledMidRun)));
    for (i, ((delay, share), until)) in trials.enumerate() {
        let enough = match until {
            Until::Always => false,
            Until::Published => published > 0,
            Until::KilledMidRun => killed_mid_run > 0,
        };
        if enough {
            continue;
        }
        let work = tmp.path().join(format!("kill-{i}"));
        std::fs::create_dir_all(&work).unwrap();
        let store = store_copy(&f, &work);
        let before = list_v2(&store);
        let (finished, _) = run_and_kill(compact_cmd(&store, &work), delay);
        let added: Vec<_> = list_v2(&store)
            .into_iter()
            .filter(|n| !before.contains(n))
            .collect();
        if added
            .iter()
            .any(|n| n.starts_with("Full-") && !n.contains('#'))
        {
            published += 1;
        } else if !finished {
            // Killed before the upload completed, with the run's traces (work directory or
            // temporary upload) present: the kill landed inside the run.
            let traces = !added.is_empty()
                || std::fs::read_dir(&work).unwrap().flatten().any(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with(".etcd-restore-compact-")
                });
            if traces {
                killed_mid_run += 1;
            }
        }
        let what = format!("after a kill at {delay:?} ({share} of {run_time:?}, added {added:?})");
        let ls = Command::new(bin())
            .args(["ls", "--store"])
            .arg(&store)
            .output()
            .unwrap();
        assert!(
            ls.status.success(),
            "{what}: {}",
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
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            v["replay"]["final_revision"], f.oracle.final_revision,
            "{what}"
        );
    }
    println!(
        "compact kills: run {run_time:?}; killed mid-run {killed_mid_run}, published {published}"
    );
    assert!(
        killed_mid_run > 0,
        "no kill landed inside the run (before the upload completed, with work under way)"
    );
    assert!(
        published > 0,
        "no run got as far as publishing its snapshot"
    );
}
