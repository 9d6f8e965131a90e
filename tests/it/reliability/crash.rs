//! Crash safety: the real binary is SIGKILLed at seeded random moments during `restore` and
//! `compact`, then the outcome is checked.
//!
//! * restore: the target is untouched (missing, or byte-identical to the old directory with
//!   `--force`) or complete (byte-identical to an un-killed run, which real etcd 3.5.1 starts
//!   on and which matches the oracle); the re-run succeeds and leaves no staging directory.
//! * compact: every new `Full-` object the listing would see is byte-identical to an un-killed
//!   run's; nothing else but compact's temporary uploads and its store lock appears; `ls`
//!   still plans; the re-run succeeds and removes temporary uploads, the lock and work
//!   directories; a sample is restored and
//!   checked against the oracle with real etcd.
//!
//! `ETCD_RESTORE_CRASH_TRIALS` (default 24, split between the two commands) and
//! `ETCD_RESTORE_CRASH_SEED` select the trials; docs/reliability.md has the long-run numbers.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use testkit::kill::{run_and_kill, time_it};
use testkit::tree::{copy_dir, digest, entries_with_prefix, env_count, file_sha256};
use testkit::{EtcdBins, EtcdConfig, EtcdProcess, Fixture, Rng, tempfile};

const VERSION: &str = "3.5.1";
const SCENARIO: &str = "basic";

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_etcd-restore")
}

fn trials() -> u64 {
    env_count("ETCD_RESTORE_CRASH_TRIALS", 24).max(2)
}

fn seed() -> u64 {
    env_count("ETCD_RESTORE_CRASH_SEED", 0x5eed_c4a5)
}

fn restore_cmd(store: &Path, target: &Path, extra: &[String]) -> Command {
    let mut c = Command::new(bin());
    c.arg("restore")
        .arg("--store")
        .arg(store)
        .arg("--data-dir")
        .arg(target)
        .arg("--keep-unknown-leases")
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

fn compact_cmd(store: &Path, temp: &Path) -> Command {
    let mut c = Command::new(bin());
    c.arg("compact")
        .arg("--store")
        .arg(store)
        .arg("--snapstore-temp-directory")
        .arg(temp)
        .arg("--json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

fn ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The shorter of two measured times: the first run pays for a cold page cache, later ones
/// (the trials) do not, and a too-long estimate would put most kills after the end.
fn warm(a: Duration, b: Duration) -> Duration {
    a.min(b)
}

fn delay(rng: &mut Rng, full: Duration) -> Duration {
    // Spread over the whole run, a little past its end so that "finished" is sampled too.
    let span = full.as_micros() as u64 * 11 / 10;
    Duration::from_micros(rng.below(span.max(1)))
}

/// Starts real etcd on a data directory and compares it with the oracle at `revision`; with
/// `compacted`, the data was compacted at `revision` by `compact` (no source hashkv applies).
fn check_with_etcd(dir: &Path, fixture: &Fixture, revision: i64, compacted: bool) -> bool {
    let Some(bins) = EtcdBins::get(VERSION) else {
        return false;
    };
    let tmp = tempfile::tempdir().unwrap();
    let copy = tmp.path().join("d.etcd");
    copy_dir(dir, &copy).unwrap();
    let mut etcd = EtcdProcess::start(&bins, EtcdConfig::new(&copy)).expect("etcd starts");
    if compacted {
        fixture.oracle.assert_matches_compacted(&etcd, revision);
    } else {
        fixture.oracle.assert_matches(&etcd, revision);
    }
    etcd.stop().unwrap();
    true
}

fn validate(dir: &Path) {
    let out = Command::new(bin())
        .args(["validate", "--data-dir"])
        .arg(dir)
        .output()
        .unwrap();
    ok(&out, "validate");
}

#[derive(Default, Debug)]
struct Tally {
    trials: u64,
    killed: u64,
    finished_before_kill: u64,
    untouched: u64,
    complete: u64,
    leftovers_after_kill: u64,
    etcd_checked: u64,
    /// Every outcome that breaks the promise, described; the test fails unless it is empty.
    /// Counted rather than panicking at the first one so the printed figure (and the tables
    /// in docs/reliability.md) is a count, not a constant.
    wrong: Vec<String>,
}

impl Tally {
    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.wrong.push(what());
        }
    }

    fn report(&self, what: &str, seed: u64, run: Duration) {
        println!(
            "crash {what}: seed {seed:#x}, run {run:?}; trials {}, killed {}, finished before \
             the kill {}, untouched {}, complete {}, leftovers after the kill {}, etcd checked \
             {}; wrong {}",
            self.trials,
            self.killed,
            self.finished_before_kill,
            self.untouched,
            self.complete,
            self.leftovers_after_kill,
            self.etcd_checked,
            self.wrong.len()
        );
        assert!(
            self.wrong.is_empty(),
            "crash {what}: {} of {} trials went wrong:\n{}",
            self.wrong.len(),
            self.trials,
            self.wrong.join("\n")
        );
    }
}

#[test]
fn restore_killed_at_random_points_leaves_old_or_complete_data() {
    let Ok(fixture) = Fixture::load(VERSION, SCENARIO) else {
        panic!("fixture {VERSION}/{SCENARIO} missing");
    };
    let store = fixture.store();
    let tmp = tempfile::tempdir().unwrap();
    let final_rev = fixture.oracle.final_revision;
    // An earlier revision of the same store (between the latest full and the end): the "old"
    // data directory that --force replaces.
    let full_rev = fixture.oracle.latest_full().unwrap().last_revision;
    let old_rev = full_rev + (final_rev - full_rev) / 2;

    // References: an un-killed restore (timed) and an older data directory for --force.
    let reference = tmp.path().join("reference.etcd");
    let (t_full, out) = time_it(restore_cmd(&store, &reference, &[]));
    ok(&out, "reference restore");
    let want = digest(&reference).unwrap();
    let again = tmp.path().join("again.etcd");
    ok(
        &restore_cmd(&store, &again, &[]).output().unwrap(),
        "restore",
    );
    assert_eq!(
        digest(&again).unwrap(),
        want,
        "restore must be deterministic for this harness to compare trees"
    );
    let old = tmp.path().join("old.etcd");
    ok(
        &restore_cmd(&store, &old, &["--to-revision".into(), old_rev.to_string()])
            .output()
            .unwrap(),
        "old restore",
    );
    assert_ne!(digest(&old).unwrap(), want);
    validate(&reference);
    let mut tally = Tally::default();
    if check_with_etcd(&reference, &fixture, final_rev, false) {
        tally.etcd_checked += 1;
    }

    let n = trials().div_ceil(2);
    let mut rng = Rng::new(seed());
    for i in 0..n {
        let trial = tempfile::tempdir_in(tmp.path()).unwrap();
        let target = trial.path().join("data.etcd");
        let force = i % 2 == 1;
        let mut extra = Vec::new();
        let mut before = None;
        if force {
            copy_dir(&old, &target).unwrap();
            before = digest(&target).unwrap();
            extra.push("--force".to_string());
        }
        let d = delay(&mut rng, t_full);
        let (finished, out) = run_and_kill(restore_cmd(&store, &target, &extra), d);
        tally.trials += 1;
        let what = format!("trial {i} (force={force}, kill after {d:?})");
        if finished {
            tally.finished_before_kill += 1;
            let out = out.as_ref().unwrap();
            tally.check(out.status.success(), || {
                format!(
                    "{what}: restore failed on its own: {}",
                    String::from_utf8_lossy(&out.stderr)
                )
            });
        } else {
            tally.killed += 1;
        }
        let got = digest(&target).unwrap();
        let untouched = if force {
            got == before
        } else {
            // Missing, or the empty directory std's create_dir_all never made: untouched.
            got.as_ref().is_none_or(|m| m.is_empty())
        };
        if got == want {
            tally.complete += 1;
            if tally.complete <= 2 && check_with_etcd(&target, &fixture, final_rev, false) {
                tally.etcd_checked += 1;
            }
        } else if untouched && !finished {
            tally.untouched += 1;
        } else if untouched {
            tally.check(false, || {
                format!("{what}: finished but the target is not restored")
            });
        } else {
            tally.check(false, || {
                format!(
                    "{what}: target is neither untouched nor complete: {:?}",
                    got.as_ref().map(|m| m.keys().cloned().collect::<Vec<_>>())
                )
            });
        }
        let staging = entries_with_prefix(trial.path(), ".data.etcd.etcd-restore-");
        if !staging.is_empty() {
            tally.leftovers_after_kill += 1;
        }
        // The next run (with --force when the target holds data) succeeds, reclaims leftovers
        // and produces the complete directory.
        let rerun_extra = if got.as_ref().is_some_and(|m| !m.is_empty()) {
            vec!["--force".to_string()]
        } else {
            vec![]
        };
        let rerun = restore_cmd(&store, &target, &rerun_extra).output().unwrap();
        tally.check(rerun.status.success(), || {
            format!(
                "{what}: re-run failed: {}",
                String::from_utf8_lossy(&rerun.stderr)
            )
        });
        tally.check(digest(&target).unwrap() == want, || {
            format!("{what}: the re-run's result differs from an un-killed run's")
        });
        let left = entries_with_prefix(trial.path(), ".data.etcd.etcd-restore-");
        tally.check(left.is_empty(), || {
            format!("{what}: staging leftovers after the re-run: {left:?}")
        });
    }
    tally.report("restore", seed(), t_full);
}

/// Snapshot names below `v2/` of a store directory (all files, hidden ones included).
fn v2_files(store: &Path) -> BTreeSet<String> {
    std::fs::read_dir(store.join("v2"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether the base `ls` plans from is acceptable after a killed compaction: one of the
/// store's original objects, or a new `Full-` snapshot (by its file name, so compact's
/// temporary `.etcd-restore-upload-<pid>-Full-...` is not one) byte-identical to an un-killed
/// run's.
fn base_acceptable(
    base: &str,
    store: &Path,
    original: &BTreeSet<String>,
    want_sha: &[u8; 32],
) -> Result<(), String> {
    let name = base.strip_prefix("v2/").unwrap_or(base);
    if original.contains(name) {
        return Ok(());
    }
    if !name.starts_with("Full-") {
        return Err(format!(
            "ls plans from {base}, which is not a full snapshot"
        ));
    }
    match file_sha256(&store.join("v2").join(name)) {
        Ok(sha) if &sha == want_sha => Ok(()),
        Ok(_) => Err(format!(
            "ls plans from {base}, which differs from an un-killed run's object"
        )),
        Err(e) => Err(format!("ls plans from {base}, which cannot be read: {e}")),
    }
}

fn ls_base(store: &Path) -> String {
    let out = Command::new(bin())
        .args(["ls", "--json", "--store"])
        .arg(store)
        .output()
        .unwrap();
    ok(&out, "ls");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let base = v["plan"]["base"]["path"]
        .as_str()
        .or_else(|| v["plan"]["base"].as_str())
        .unwrap_or_default()
        .to_string();
    assert!(!base.is_empty(), "ls names a base: {v}");
    base
}

#[test]
fn compact_killed_at_random_points_never_publishes_a_partial_snapshot() {
    let Ok(fixture) = Fixture::load(VERSION, SCENARIO) else {
        panic!("fixture {VERSION}/{SCENARIO} missing");
    };
    let tmp = tempfile::tempdir().unwrap();
    let final_rev = fixture.oracle.final_revision;
    let original = v2_files(&fixture.store());

    // Reference: an un-killed compaction of a copy of the store (timed); its object's bytes.
    let ref_store = tmp.path().join("ref-store");
    copy_dir(&fixture.store(), &ref_store).unwrap();
    let ref_temp = tmp.path().join("ref-temp");
    std::fs::create_dir(&ref_temp).unwrap();
    let (t_full, out) = time_it(compact_cmd(&ref_store, &ref_temp));
    ok(&out, "reference compact");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let object = report["object"].as_str().unwrap().to_string();
    let want_sha = file_sha256(&ref_store.join(&object)).unwrap();
    let ref_store2 = tmp.path().join("ref-store2");
    copy_dir(&fixture.store(), &ref_store2).unwrap();
    let (t2, out) = time_it(compact_cmd(&ref_store2, &ref_temp));
    ok(&out, "second reference compact");
    let t_full = warm(t_full, t2);

    let n = trials() / 2;
    let mut rng = Rng::new(seed() ^ 0xc0c0);
    let mut tally = Tally::default();
    for i in 0..n {
        let trial = tempfile::tempdir_in(tmp.path()).unwrap();
        let store = trial.path().join("store");
        copy_dir(&fixture.store(), &store).unwrap();
        let temp = trial.path().join("temp");
        std::fs::create_dir(&temp).unwrap();
        let d = delay(&mut rng, t_full);
        let (finished, out) = run_and_kill(compact_cmd(&store, &temp), d);
        tally.trials += 1;
        let what = format!("trial {i} (kill after {d:?})");
        if finished {
            tally.finished_before_kill += 1;
            let out = out.as_ref().unwrap();
            tally.check(out.status.success(), || {
                format!(
                    "{what}: compact failed on its own: {}",
                    String::from_utf8_lossy(&out.stderr)
                )
            });
        } else {
            tally.killed += 1;
        }
        // New objects: (byte-identical fulls, temporary uploads, anything else described).
        let new_objects = || -> (u64, u64, Vec<String>) {
            let (mut fulls, mut temps, mut bad) = (0, 0, Vec::new());
            for f in v2_files(&store).difference(&original) {
                if f.starts_with("Full-") {
                    let sha = file_sha256(&store.join("v2").join(f)).unwrap();
                    if sha == want_sha {
                        fulls += 1;
                    } else {
                        bad.push(format!("{f} differs from an un-killed run's object"));
                    }
                } else if f.starts_with(".etcd-restore-upload-")
                    || f == ".etcd-restore-compact.lock"
                    || f.starts_with(".etcd-restore-compact.lock#")
                {
                    // The killed run's temporary upload or its store lock (taken over at once
                    // by the re-run: its pid is gone), or the local store's staging file of
                    // either (`<object>#<n>`, killed between write and rename).
                    temps += 1;
                } else {
                    bad.push(format!("unexpected object {f}"));
                }
            }
            (fulls, temps, bad)
        };
        let (fulls, temps, bad) = new_objects();
        tally.check(bad.is_empty(), || {
            format!("{what}, after the kill: {bad:?}")
        });
        if fulls > 0 {
            tally.complete += 1;
        } else {
            tally.untouched += 1;
        }
        let work = entries_with_prefix(&temp, ".etcd-restore-compact-");
        if temps > 0 || !work.is_empty() {
            tally.leftovers_after_kill += 1;
        }
        // Whatever is there, the listing plans, and only from a complete object.
        let base = ls_base(&store);
        if let Err(e) = base_acceptable(&base, &store, &original, &want_sha) {
            tally.check(false, || format!("{what}: {e}"));
        }
        // The re-run succeeds (a second snapshot when the first landed in another second, or
        // "exists" when it landed in the same one) and leaves no temporaries behind.
        let out = compact_cmd(&store, &temp).output().unwrap();
        let code = out.status.code();
        tally.check(code == Some(0) || (code == Some(3) && fulls > 0), || {
            format!(
                "{what}: re-run exit {code:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        let (fulls_after, temps_after, bad) = new_objects();
        tally.check(
            bad.is_empty() && fulls_after >= 1 && temps_after == 0,
            || {
                format!(
                    "{what}, after the re-run: {fulls_after} new full snapshots, {temps_after} \
                 temporary uploads left, {bad:?}"
                )
            },
        );
        let work = entries_with_prefix(&temp, ".etcd-restore-compact-");
        tally.check(work.is_empty(), || {
            format!("{what}: work directories not reclaimed: {work:?}")
        });
        if i == 0 {
            // A restore from the compacted store runs on real etcd and matches the oracle.
            let dir = trial.path().join("r.etcd");
            ok(
                &restore_cmd(&store, &dir, &[]).output().unwrap(),
                "restore from compacted store",
            );
            if check_with_etcd(&dir, &fixture, final_rev, true) {
                tally.etcd_checked += 1;
            }
        }
    }
    tally.report("compact", seed() ^ 0xc0c0, t_full);
}

/// The plan check above must not take compact's temporary upload for a published snapshot:
/// its name holds `Full-` and its bytes can be complete, yet restore must never start from it.
#[test]
fn a_temporary_upload_is_never_an_acceptable_base() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path();
    std::fs::create_dir(store.join("v2")).unwrap();
    let name = "Full-00000000-00001999-1714086700.gz";
    let temp_name = format!(".etcd-restore-upload-4242-{name}");
    for n in [name, temp_name.as_str()] {
        std::fs::write(store.join("v2").join(n), b"same bytes").unwrap();
    }
    let want = file_sha256(&store.join("v2").join(name)).unwrap();
    let original = BTreeSet::new();
    assert_eq!(
        base_acceptable(&format!("v2/{name}"), store, &original, &want),
        Ok(())
    );
    assert!(base_acceptable(&format!("v2/{temp_name}"), store, &original, &want).is_err());
    // A new Full- object with other bytes is not acceptable either.
    assert!(base_acceptable(&format!("v2/{name}"), store, &original, &[0; 32]).is_err());
}
