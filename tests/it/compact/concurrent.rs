//! Compactions of one store at the same time, as two druid Jobs (or a Job and an operator)
//! would run them: real concurrent `compact` processes against the file store and moto (S3).
//! The store's lock object (`v2/.etcd-restore-compact.lock`, created with the store's
//! create-only put) lets one run at a time: the other exits 5 having published nothing, or
//! runs after it; a held lock is respected, a lapsed one (a killed run's) taken over.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use testkit::objstore::{MOTO_ACCESS_KEY, MotoServer};
use testkit::serde_json::{self, Value};
use testkit::{Cli, Fixture, tempfile};

const CLI: Cli = Cli(env!("CARGO_BIN_EXE_etcd-restore"));
const LOCK: &str = "v2/.etcd-restore-compact.lock";

/// Where the backups are and how `compact` reaches them.
trait Target {
    fn args(&self, cmd: &mut Command);
    /// Object keys below `v2/`, sorted.
    fn objects(&self) -> Vec<String>;
    fn put(&self, key: &str, data: &[u8]);
}

struct Files(PathBuf);

impl Target for Files {
    fn args(&self, cmd: &mut Command) {
        cmd.arg("--store").arg(&self.0);
    }
    fn objects(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.0.join("v2"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
    fn put(&self, key: &str, data: &[u8]) {
        std::fs::write(self.0.join(key), data).unwrap();
    }
}

struct S3 {
    moto: MotoServer,
    creds: PathBuf,
}

impl Target for S3 {
    fn args(&self, cmd: &mut Command) {
        cmd.arg("--store")
            .arg("s3://bkt/etcd-main")
            .arg("--store-endpoint-override")
            .arg(self.moto.endpoint())
            .env("AWS_APPLICATION_CREDENTIALS_JSON", &self.creds)
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY");
    }
    fn objects(&self) -> Vec<String> {
        self.moto
            .list_keys("bkt", "etcd-main/v2/")
            .unwrap()
            .into_iter()
            .map(|k| k.trim_start_matches("etcd-main/v2/").to_string())
            .collect()
    }
    fn put(&self, _: &str, _: &[u8]) {
        unreachable!("moto refuses unsigned JSON bodies")
    }
}

fn spawn(t: &dyn Target, temp: &Path, extra: &[&str]) -> Child {
    std::fs::create_dir_all(temp).unwrap();
    let mut cmd = CLI.command();
    cmd.arg("compact");
    t.args(&mut cmd);
    cmd.arg("--snapstore-temp-directory")
        .arg(temp)
        .arg("--json")
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.spawn().unwrap()
}

fn finish(c: Child) -> (i32, Value, String) {
    let out = c.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn fulls(t: &dyn Target) -> Vec<String> {
    t.objects()
        .into_iter()
        .filter(|o| o.starts_with("Full-"))
        .collect()
}

/// Two (then three) runs started together: each either publishes or exits 5 with nothing
/// published; runs that both publish never held the lock at the same time; every new full
/// snapshot is one a run reported; no lock or temporary upload is left.
fn concurrent_runs(t: &dyn Target, tmp: &Path) {
    let mut contended = 0;
    for (round, n) in [2usize, 2, 3].into_iter().enumerate() {
        // Names carry the creation second: a run in the same second as the last round's
        // would collide with its object (exit 3) rather than race with it.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let before = fulls(t);
        let children: Vec<Child> = (0..n)
            .map(|i| spawn(t, &tmp.join(format!("t{round}-{i}")), &[]))
            .collect();
        let results: Vec<(i32, Value, String)> = children.into_iter().map(finish).collect();
        println!(
            "round {round}: exit codes {:?}",
            results.iter().map(|r| r.0).collect::<Vec<_>>()
        );
        let mut published = Vec::new();
        let mut held = Vec::new();
        for (code, report, err) in &results {
            match code {
                0 => {
                    let lock = &report["lock"];
                    held.push((
                        lock["acquired_unix_ms"].as_i64().unwrap(),
                        lock["released_unix_ms"].as_i64().unwrap(),
                    ));
                    published.push(
                        report["object"]
                            .as_str()
                            .unwrap()
                            .trim_start_matches("v2/")
                            .to_string(),
                    );
                }
                // Found it held, or (two runs taking over a lapsed lock at once, the first
                // one's lock deleted by the second) found it lost at its check.
                5 => assert!(
                    err.contains("another compaction of this store is running")
                        || err.contains("lost the compaction lock"),
                    "{err}"
                ),
                // It ran after another within the same second: the same name, never
                // overwritten.
                3 => assert!(err.contains("already exists"), "{err}"),
                _ => panic!("round {round}: exit {code}: {err}"),
            }
        }
        contended += results.iter().filter(|r| r.0 == 5).count();
        assert!(
            !published.is_empty(),
            "round {round}: nobody compacted: {:?}",
            results.iter().map(|r| (r.0, &r.2)).collect::<Vec<_>>()
        );
        held.sort();
        for w in held.windows(2) {
            assert!(
                w[0].1 <= w[1].0,
                "round {round}: locks overlapped: {held:?}"
            );
        }
        let mut new: Vec<String> = fulls(t)
            .into_iter()
            .filter(|o| !before.contains(o))
            .collect();
        new.sort();
        published.sort();
        assert_eq!(new, published, "round {round}");
        let left: Vec<String> = t
            .objects()
            .into_iter()
            .filter(|o| o.starts_with('.'))
            .collect();
        assert!(left.is_empty(), "round {round}: left behind {left:?}");
    }
    // The runs did overlap (starting a process takes far less than a compaction).
    assert!(contended > 0, "no run ever found the lock held");
}

/// A live lock of another run is respected (exit 5, nothing published); a lapsed one (its run
/// was killed) is taken over and removed after the run.
fn held_and_lapsed_locks(t: &dyn Target, tmp: &Path) {
    let now = chrono_ms();
    let held = format!(
        r#"{{"owner":"someone","host":"node-7","pid":42,"acquired_unix_ms":{now},"expires_unix_ms":{}}}"#,
        now + 600_000
    );
    t.put(LOCK, held.as_bytes());
    let before = t.objects();
    let (code, _, err) = finish(spawn(t, &tmp.join("held"), &[]));
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("pid 42 on node-7"), "{err}");
    assert_eq!(t.objects(), before);

    let lapsed = held.replace(&(now + 600_000).to_string(), &(now - 1).to_string());
    t.put(LOCK, lapsed.as_bytes());
    // Not in the second of an earlier run's snapshot (the same name would exist: exit 3).
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (code, report, err) = finish(spawn(t, &tmp.join("lapsed"), &[]));
    assert_eq!(code, 0, "{err}");
    assert!(
        report["lock"]["took_over"]
            .as_str()
            .unwrap()
            .contains("someone"),
        "{report}"
    );
    assert!(!t.objects().iter().any(|o| o.starts_with('.')));
    // A dry run takes no lock (it writes nothing), even while one is held.
    t.put(LOCK, held.as_bytes());
    let (code, report, err) = finish(spawn(t, &tmp.join("dry"), &["--dry-run"]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(report["lock"], Value::Null);
    // Lapsed again: the concurrent runs that follow first race to take it over.
    t.put(LOCK, lapsed.as_bytes());
}

fn chrono_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Our restore and HashKV of the store after all the runs equal those of a copy of the
/// original compacted by one run alone: no run corrupted what the next restore selects.
fn restores_like(original: &Path, t: &dyn Target, tmp: &Path) {
    let alone = tmp.join("alone");
    testkit::tree::copy_dir(original, &alone).unwrap();
    let (code, _, err) = CLI.compact(&alone, &tmp.join("alone-temp"), &[]);
    assert_eq!(code, 0, "{err}");
    let want_dir = tmp.join("want.etcd");
    CLI.restore(&alone, &want_dir, &[]);
    let got_dir = tmp.join("got.etcd");
    let mut cmd = CLI.command();
    cmd.arg("restore");
    t.args(&mut cmd);
    cmd.arg("--data-dir")
        .arg(&got_dir)
        .arg("--snapstore-temp-directory")
        .arg(tmp);
    CLI.ok(&mut cmd, "restore after the concurrent compactions");
    assert_eq!(CLI.hashkv(&got_dir), CLI.hashkv(&want_dir));
}

#[test]
fn concurrent_compactions_of_a_file_store_publish_one_at_a_time() {
    let tmp = tempfile::tempdir().unwrap();
    let f = Fixture::load("3.5.1", "basic").unwrap();
    let store = tmp.path().join("store");
    testkit::tree::copy_dir(&f.store(), &store).unwrap();
    let t = Files(store);
    stalled_holder_loses_the_lock(&t, tmp.path());
    held_and_lapsed_locks(&t, tmp.path());
    concurrent_runs(&t, tmp.path());
    restores_like(&f.store(), &t, tmp.path());
}

#[test]
fn concurrent_compactions_of_an_s3_store_publish_one_at_a_time() {
    let Some(moto) = MotoServer::start().unwrap() else {
        return;
    };
    moto.create_bucket("bkt").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let creds = tmp.path().join("aws.json");
    std::fs::write(
        &creds,
        format!(
            r#"{{"accessKeyID":"{MOTO_ACCESS_KEY}","secretAccessKey":"x","region":"us-east-1"}}"#
        ),
    )
    .unwrap();
    let f = Fixture::load("3.5.1", "basic").unwrap();
    moto.upload_dir("bkt", "etcd-main", &f.store()).unwrap();
    let t = S3 { moto, creds };
    snapshot_timeout_bounds_publishing(&t, tmp.path());
    // moto refuses unsigned PUTs of JSON bodies (403), so this test cannot plant lock
    // objects on S3 itself; the runs' own locks are what is exercised here.
    concurrent_runs(&t, tmp.path());
    restores_like(&f.store(), &t, tmp.path());
}

/// `--etcd-snapshot-timeout` (druid passes its `etcdSnapshotTimeout`) bounds publishing: a
/// bound the upload cannot meet fails the run (exit 1) with nothing published under a
/// snapshot name and the lock released; the next run publishes and removes what the
/// abandoned upload left. (On the file store the upload never waits, so the bound has
/// nothing to cut there.)
fn snapshot_timeout_bounds_publishing(t: &dyn Target, tmp: &Path) {
    let before = fulls(t);
    let (code, _, err) = finish(spawn(
        t,
        &tmp.join("timeout"),
        &["--etcd-snapshot-timeout=1ns"],
    ));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--etcd-snapshot-timeout"), "{err}");
    assert_eq!(fulls(t), before);
    assert!(
        !t.objects()
            .iter()
            .any(|o| o == ".etcd-restore-compact.lock")
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (code, report, err) = finish(spawn(t, &tmp.join("after-timeout"), &[]));
    assert_eq!(code, 0, "{err}");
    let new: Vec<String> = fulls(t)
        .into_iter()
        .filter(|o| !before.contains(o))
        .collect();
    assert_eq!(
        new,
        vec![
            report["object"]
                .as_str()
                .unwrap()
                .trim_start_matches("v2/")
                .to_string()
        ]
    );
    assert!(
        !t.objects().iter().any(|o| o.starts_with('.')),
        "{:?}",
        t.objects()
    );
}

fn signal(c: &Child, sig: &str) {
    let st = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(c.id().to_string())
        .status()
        .unwrap();
    assert!(st.success(), "kill -{sig}");
}

/// A holder that stalls past its TTL (SIGSTOP: it cannot renew) loses the lock to the next
/// run, which takes it over and publishes; resumed, the stalled run finds the lock no longer
/// its own and publishes nothing.
fn stalled_holder_loses_the_lock(t: &Files, tmp: &Path) {
    let lock = t.0.join(LOCK);
    for attempt in 0..10 {
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let before = fulls(t);
        let a = spawn(
            t,
            &tmp.join(format!("stall-a{attempt}")),
            &["--lock-ttl=600ms"],
        );
        let t0 = std::time::Instant::now();
        while !lock.exists() && t0.elapsed() < std::time::Duration::from_secs(20) {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        signal(&a, "STOP");
        if !lock.exists() {
            // Stopped too late: it had finished already.
            signal(&a, "CONT");
            let _ = finish(a);
            continue;
        }
        // The lock lapses (its pid is alive, so only the TTL frees it).
        std::thread::sleep(std::time::Duration::from_millis(900));
        let (code_b, report_b, err_b) =
            finish(spawn(t, &tmp.join(format!("stall-b{attempt}")), &[]));
        signal(&a, "CONT");
        let (code_a, _, err_a) = finish(a);
        assert_eq!(code_b, 0, "{err_b}");
        assert!(report_b["lock"]["took_over"].is_string(), "{report_b}");
        let new: Vec<String> = fulls(t)
            .into_iter()
            .filter(|o| !before.contains(o))
            .collect();
        if code_a == 0 {
            // It passed its last check before it was stopped (the documented window); both
            // snapshots are complete. Try to catch it earlier.
            assert_eq!(new.len(), 2, "{new:?}");
            continue;
        }
        // 5: its check found the lock lost; 3: the new holder published the same name (same
        // second); 1: its temporary upload was removed under it. Never a publish.
        assert!(
            (code_a == 5 && err_a.contains("lost the compaction lock"))
                || (code_a == 3 && err_a.contains("already exists"))
                || code_a == 1,
            "stalled run: exit {code_a}: {err_a}"
        );
        assert_eq!(
            new,
            vec![
                report_b["object"]
                    .as_str()
                    .unwrap()
                    .trim_start_matches("v2/")
                    .to_string()
            ]
        );
        assert!(!lock.exists());
        println!("stalled holder: exit {code_a} on attempt {attempt}");
        return;
    }
    panic!("never stopped a holder before its last check");
}
