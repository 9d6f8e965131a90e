//! Faults under the real binary.
//!
//! * File writes that fail part-way: the child runs with `RLIMIT_FSIZE` (and SIGXFSZ ignored),
//!   so a write crossing the limit is cut short and the next one fails with EFBIG — the same
//!   shape as a disk filling up. restore and compact must end with a clean error (exit 1, an
//!   `error:` line, no panic), leave the target untouched and no half output or leftovers.
//!   ENOSPC, EIO, short writes and failed fsync inside the engines are injected through their
//!   IO traits in `bbolt/tests/faults.rs` and `wal/tests/writer.rs`.
//! * Object-store faults: a proxy in front of moto (S3) or fake-gcs-server (GCS)
//!   ([`testkit::faultproxy`]) answers 20 % of requests with 500, 503 SlowDown, a reset
//!   connection or a truncated body. Each run either succeeds with exactly the fault-free result
//!   or fails cleanly with nothing published.
//!
//! `ETCD_RESTORE_FAULT_RUNS` (default 3 per command) sets the object-store runs.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use testkit::faultproxy::{FaultPlan, FaultProxy, FaultStats};
use testkit::objstore::{FakeGcsServer, MOTO_ACCESS_KEY, MotoServer};
use testkit::tree::{copy_dir, digest, entries_with_prefix, env_count, file_sha256};
use testkit::{EtcdBins, EtcdConfig, EtcdProcess, Fixture, tempfile};

const VERSION: &str = "3.5.1";
const SCENARIO: &str = "basic";

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_etcd-restore")
}

/// Runs `cmd` with files limited to `limit` bytes.
fn with_fsize_limit(cmd: &mut Command, limit: u64) {
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let lim = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// A clean failure: exit code 1 (not a signal, not Rust's 101), one `error:` line, no panic.
/// A clean failure: exit `codes`, an `error:` line, no panic. `Err` says what was not.
fn clean_failure(out: &Output, codes: &[i32]) -> Result<(), String> {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let code = out.status.code();
    if !code.is_some_and(|c| codes.contains(&c)) {
        return Err(format!(
            "exit {code:?} (expected one of {codes:?}): {stderr}"
        ));
    }
    if !stderr.contains("error: ") || stderr.contains("panicked") {
        return Err(format!("no clean error line: {stderr}"));
    }
    Ok(())
}

fn assert_clean_failure(out: &Output, what: &str) {
    if let Err(e) = clean_failure(out, &[1]) {
        panic!("{what}: {e}");
    }
}

fn last_line(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .last()
        .unwrap_or_default()
        .to_string()
}

fn restore_cmd(store: &str, target: &Path) -> Command {
    let mut c = Command::new(bin());
    c.arg("restore")
        .arg("--store")
        .arg(store)
        .arg("--data-dir")
        .arg(target)
        .arg("--keep-unknown-leases");
    c
}

#[test]
fn restore_with_writes_failing_part_way_fails_cleanly_and_leaves_nothing() {
    let fixture = Fixture::load(VERSION, SCENARIO).unwrap();
    let store = fixture.store().display().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let reference = tmp.path().join("ref.etcd");
    let out = restore_cmd(&store, &reference).output().unwrap();
    assert!(out.status.success());
    let db_len = std::fs::metadata(reference.join("member/snap/db"))
        .unwrap()
        .len();
    // Limits from "the first page" to "just short of the whole database", plus the WAL's
    // preallocated 64 MB segment (a limit above the db fails in the WAL writer).
    let mut limits = vec![4096, 64 << 10, db_len / 3, db_len - 1, db_len + 4096];
    limits.sort();
    let mut failures = 0;
    for limit in limits {
        let trial = tempfile::tempdir_in(tmp.path()).unwrap();
        let target = trial.path().join("d.etcd");
        let mut cmd = restore_cmd(&store, &target);
        with_fsize_limit(&mut cmd, limit);
        let out = cmd.output().unwrap();
        if out.status.success() {
            // Only possible when nothing needed a larger file; the result must then be right.
            assert_eq!(digest(&target).unwrap(), digest(&reference).unwrap());
            continue;
        }
        failures += 1;
        assert_clean_failure(&out, &format!("restore with files ≤ {limit} bytes"));
        assert!(!target.exists(), "limit {limit}: target was created");
        assert_eq!(
            std::fs::read_dir(trial.path()).unwrap().count(),
            0,
            "limit {limit}: leftovers {:?}",
            entries_with_prefix(trial.path(), "")
        );
    }
    assert!(failures >= 4, "the limits must make restore fail");
}

#[test]
fn compact_with_writes_failing_part_way_fails_cleanly_and_publishes_nothing() {
    let fixture = Fixture::load(VERSION, SCENARIO).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let original: Vec<_> = std::fs::read_dir(fixture.store().join("v2"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let mut failures = 0;
    for limit in [4096u64, 256 << 10, 2 << 20, 6 << 20] {
        let trial = tempfile::tempdir_in(tmp.path()).unwrap();
        let store = trial.path().join("store");
        copy_dir(&fixture.store(), &store).unwrap();
        let temp = trial.path().join("temp");
        std::fs::create_dir(&temp).unwrap();
        let mut cmd = Command::new(bin());
        cmd.arg("compact")
            .arg("--store")
            .arg(&store)
            .arg("--snapstore-temp-directory")
            .arg(&temp);
        with_fsize_limit(&mut cmd, limit);
        let out = cmd.output().unwrap();
        let now: Vec<_> = std::fs::read_dir(store.join("v2"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        if out.status.success() {
            continue;
        }
        failures += 1;
        assert_clean_failure(&out, &format!("compact with files ≤ {limit} bytes"));
        let mut added: Vec<_> = now.iter().filter(|n| !original.contains(n)).collect();
        added.sort();
        assert!(added.is_empty(), "limit {limit}: new objects {added:?}");
        assert_eq!(
            std::fs::read_dir(&temp).unwrap().count(),
            0,
            "limit {limit}: work files left"
        );
    }
    assert!(failures >= 3, "the limits must make compact fail");
}

// ---------------------------------------------------------------------------------------------
// Object-store faults

/// A real object-store server the fault test runs against, and how the CLI reaches it.
trait Remote {
    fn name(&self) -> &'static str;
    fn port(&self) -> u16;
    /// The server itself, no proxy.
    fn endpoint(&self) -> String;
    fn upload_dir(&self, prefix: &str, dir: &Path);
    fn list_keys(&self, prefix: &str) -> Vec<String>;
    fn get_object(&self, key: &str) -> Vec<u8>;
    /// `etcd-restore <args>` on the store at bucket `bkt`, `prefix`, reached at `endpoint`.
    fn cmd(&self, endpoint: &str, prefix: &str, args: &[&str]) -> Command;
}

/// moto, through etcdbrctl's S3 credential file.
struct S3Remote {
    moto: MotoServer,
    _creds_dir: tempfile::TempDir,
    creds: PathBuf,
}

impl S3Remote {
    fn start() -> Option<S3Remote> {
        let moto = MotoServer::start().unwrap()?;
        moto.create_bucket("bkt").unwrap();
        let d = tempfile::tempdir().unwrap();
        let creds = d.path().join("aws.json");
        std::fs::write(
            &creds,
            format!(
                r#"{{"accessKeyID":"{MOTO_ACCESS_KEY}","secretAccessKey":"x","region":"us-east-1"}}"#
            ),
        )
        .unwrap();
        Some(S3Remote {
            moto,
            _creds_dir: d,
            creds,
        })
    }
}

impl Remote for S3Remote {
    fn name(&self) -> &'static str {
        "S3"
    }
    fn port(&self) -> u16 {
        self.moto.port()
    }
    fn endpoint(&self) -> String {
        self.moto.endpoint()
    }
    fn upload_dir(&self, prefix: &str, dir: &Path) {
        self.moto.upload_dir("bkt", prefix, dir).unwrap();
    }
    fn list_keys(&self, prefix: &str) -> Vec<String> {
        self.moto.list_keys("bkt", prefix).unwrap()
    }
    fn get_object(&self, key: &str) -> Vec<u8> {
        self.moto.get_object("bkt", key).unwrap()
    }
    fn cmd(&self, endpoint: &str, prefix: &str, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.args(args)
            .arg("--store")
            .arg(format!("s3://bkt/{prefix}"))
            .arg("--store-endpoint-override")
            .arg(endpoint)
            .env("AWS_APPLICATION_CREDENTIALS_JSON", &self.creds)
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY");
        c
    }
}

/// fake-gcs-server, through etcdbrctl's GCS flags (`--storage-provider GCS`, the JSON API
/// endpoint form `.../storage/v1/`); an http endpoint is an emulator, so no credentials.
struct GcsRemote {
    gcs: FakeGcsServer,
}

impl GcsRemote {
    fn start() -> Option<GcsRemote> {
        let gcs = FakeGcsServer::start().unwrap()?;
        gcs.create_bucket("bkt").unwrap();
        Some(GcsRemote { gcs })
    }
}

impl Remote for GcsRemote {
    fn name(&self) -> &'static str {
        "GCS"
    }
    fn port(&self) -> u16 {
        self.gcs.port()
    }
    fn endpoint(&self) -> String {
        self.gcs.endpoint()
    }
    fn upload_dir(&self, prefix: &str, dir: &Path) {
        self.gcs.upload_dir("bkt", prefix, dir).unwrap();
    }
    fn list_keys(&self, prefix: &str) -> Vec<String> {
        self.gcs.list_keys("bkt", prefix).unwrap()
    }
    fn get_object(&self, key: &str) -> Vec<u8> {
        self.gcs.get_object("bkt", key).unwrap()
    }
    fn cmd(&self, endpoint: &str, prefix: &str, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.args(args)
            .args(["--storage-provider", "GCS", "--store-container", "bkt"])
            .arg("--store-prefix")
            .arg(prefix)
            .arg("--store-endpoint-override")
            .arg(format!("{endpoint}/storage/v1/"))
            .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
            .env_remove("STORAGE_EMULATOR_HOST")
            .env_remove("STORAGE_CONTAINER");
        c
    }
}

fn runs() -> u64 {
    env_count("ETCD_RESTORE_FAULT_RUNS", 3).max(1)
}

#[derive(Debug, Default)]
struct Outcomes {
    runs: u64,
    succeeded: u64,
    failed_cleanly: u64,
    stats: FaultStats,
}

impl Outcomes {
    fn add(&mut self, s: &FaultStats) {
        let t = &mut self.stats;
        t.requests += s.requests;
        t.forwarded += s.forwarded;
        t.server_errors += s.server_errors;
        t.throttled += s.throttled;
        t.resets += s.resets;
        t.truncated += s.truncated;
    }
}

#[test]
fn object_store_faults_give_the_right_result_or_a_clean_failure() {
    if let Some(remote) = S3Remote::start() {
        object_store_faults(&remote);
        remote.moto.stop().unwrap();
    }
}

#[test]
fn gcs_faults_give_the_right_result_or_a_clean_failure() {
    if let Some(remote) = GcsRemote::start() {
        object_store_faults(&remote);
        remote.gcs.stop().unwrap();
    }
}

fn object_store_faults(remote: &dyn Remote) {
    let name = remote.name();
    let fixture = Fixture::load(VERSION, SCENARIO).unwrap();
    remote.upload_dir("base", &fixture.store());
    let tmp = tempfile::tempdir().unwrap();

    // Fault-free references, straight to the server.
    let reference = tmp.path().join("ref.etcd");
    let out = remote
        .cmd(
            &remote.endpoint(),
            "base",
            &["restore", "--keep-unknown-leases"],
        )
        .arg("--data-dir")
        .arg(&reference)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want = digest(&reference).unwrap();
    let local = tmp.path().join("local.etcd");
    assert!(
        restore_cmd(&fixture.store().display().to_string(), &local)
            .output()
            .unwrap()
            .status
            .success()
    );
    assert_eq!(
        digest(&local).unwrap(),
        want,
        "{name} and local restores agree"
    );
    // Compact reference: the object bytes of a fault-free compaction of a local copy.
    let ref_store = tmp.path().join("ref-store");
    copy_dir(&fixture.store(), &ref_store).unwrap();
    let out = Command::new(bin())
        .args(["compact", "--json", "--store"])
        .arg(&ref_store)
        .arg("--snapstore-temp-directory")
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let want_object = file_sha256(&ref_store.join(v["object"].as_str().unwrap())).unwrap();

    let mut restore = Outcomes::default();
    let mut compact = Outcomes::default();
    let mut etcd_checked = false;
    // Every outcome that breaks the promise, described; counted (and printed as a count)
    // rather than panicking at the first, the test fails unless it is empty.
    let mut wrong: Vec<String> = Vec::new();
    let mut check = |ok: bool, what: &dyn Fn() -> String| {
        if !ok {
            wrong.push(what());
        }
    };
    for run in 0..runs() {
        // restore through the proxy
        let proxy = FaultProxy::start(
            remote.port(),
            FaultPlan {
                rate: 0.2,
                seed: 1000 + run,
                ..FaultPlan::default()
            },
        )
        .unwrap();
        let target = tmp.path().join(format!("r{run}.etcd"));
        let out = remote
            .cmd(
                &proxy.endpoint(),
                "base",
                &["restore", "--keep-unknown-leases", "--max-fetchers", "2"],
            )
            .arg("--data-dir")
            .arg(&target)
            .output()
            .unwrap();
        restore.runs += 1;
        restore.add(&proxy.stats());
        if out.status.success() {
            restore.succeeded += 1;
            check(digest(&target).unwrap() == want, &|| {
                format!("restore run {run}: succeeded with a result unlike the fault-free one")
            });
            if !etcd_checked {
                etcd_checked = true;
                if let Some(bins) = EtcdBins::get(VERSION) {
                    let mut etcd = EtcdProcess::start(&bins, EtcdConfig::new(&target)).unwrap();
                    fixture
                        .oracle
                        .assert_matches(&etcd, fixture.oracle.final_revision);
                    etcd.stop().unwrap();
                }
            }
        } else {
            restore.failed_cleanly += 1;
            println!("restore run {run}: {}", last_line(&out));
            let clean = clean_failure(&out, &[1]);
            check(clean.is_ok(), &|| format!("restore run {run}: {clean:?}"));
            check(!target.exists(), &|| {
                format!("restore run {run}: failed and left half a data directory")
            });
        }
        let staging = entries_with_prefix(tmp.path(), &format!(".r{run}.etcd."));
        check(staging.is_empty(), &|| {
            format!("restore run {run}: staging left behind: {staging:?}")
        });
        drop(proxy);

        // compact through the proxy, each run on its own copy of the store
        let prefix = format!("c{run}");
        remote.upload_dir(&prefix, &fixture.store());
        let before = remote.list_keys(&format!("{prefix}/"));
        let proxy = FaultProxy::start(
            remote.port(),
            FaultPlan {
                rate: 0.2,
                seed: 2000 + run,
                ..FaultPlan::default()
            },
        )
        .unwrap();
        let work = tmp.path().join(format!("w{run}"));
        std::fs::create_dir(&work).unwrap();
        let out = remote
            .cmd(&proxy.endpoint(), &prefix, &["compact"])
            .arg("--snapstore-temp-directory")
            .arg(&work)
            .output()
            .unwrap();
        compact.runs += 1;
        compact.add(&proxy.stats());
        drop(proxy);
        let after = remote.list_keys(&format!("{prefix}/"));
        let added: Vec<&String> = after.iter().filter(|k| !before.contains(k)).collect();
        let fulls: Vec<&&String> = added.iter().filter(|k| k.contains("/Full-")).collect();
        // Any new snapshot, whatever the outcome, is exactly the fault-free one.
        for k in &fulls {
            let bytes = remote.get_object(k);
            let sha = <[u8; 32]>::from(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
            check(sha == want_object, &|| {
                format!("compact run {run}: {k} differs from a fault-free compaction")
            });
        }
        if out.status.success() {
            compact.succeeded += 1;
            check(fulls.len() == 1, &|| {
                format!("compact run {run}: succeeded but added {added:?}")
            });
        } else {
            compact.failed_cleanly += 1;
            println!("compact run {run}: {}", last_line(&out));
            // 4: the upload did not read back intact.
            let clean = clean_failure(&out, &[1, 4]);
            check(clean.is_ok(), &|| format!("compact run {run}: {clean:?}"));
        }
        let left = std::fs::read_dir(&work).unwrap().count();
        check(left == 0, &|| {
            format!("compact run {run}: {left} entries left in the temp directory")
        });
        // A fault-free re-run reclaims any temporary upload the faults left behind.
        let out = remote
            .cmd(&remote.endpoint(), &prefix, &["compact"])
            .arg("--snapstore-temp-directory")
            .arg(&work)
            .output()
            .unwrap();
        let code = out.status.code();
        check(
            code == Some(0) || (code == Some(3) && !fulls.is_empty()),
            &|| {
                format!(
                    "compact run {run}: fault-free re-run exit {code:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                )
            },
        );
        let final_keys = remote.list_keys(&format!("{prefix}/"));
        check(
            !final_keys
                .iter()
                .any(|k| k.contains(".etcd-restore-upload-")),
            &|| format!("compact run {run}: temporary uploads left: {final_keys:?}"),
        );
    }
    println!(
        "{name} object-store faults, rate 20 %: restore {restore:?}; compact {compact:?}; wrong {}",
        wrong.len()
    );
    assert!(
        wrong.is_empty(),
        "{} wrong outcomes:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert!(restore.stats.faults() > 0 && compact.stats.faults() > 0);
}
