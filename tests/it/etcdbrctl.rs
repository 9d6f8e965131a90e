//! `etcd-restore etcdbrctl -- ARGS`, the image entrypoint (src/entrypoint): the dispatch table
//! against a stand-in upstream binary (tests/standin/etcdbrctl, via `testkit::standin`): every
//! command but `compact`, `initialize` and `server` is exec'd with argv and environment
//! untouched, and `compact` and `initialize` run natively with druid's flags.
//! `tests/it/etcdbrctl/server.rs` covers `server`.

mod real;
mod server;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use testkit::standin::{Scene, exit_code, wait_exit};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_etcd-restore")
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn everything_else_execs_the_upstream_binary_with_argv_and_env_untouched() {
    let cases: [&[&str]; 9] = [
        &[
            "snapshot",
            "--storage-provider=S3",
            "--schedule",
            "*/5 * * * *",
        ],
        &[
            "copy",
            "--snapstore-temp-directory=/home/nonroot/data/tmp",
            "--max-backups-to-copy=3",
        ],
        &["restore", "--data-dir=/x", "-d", "/y"],
        &["--help"],
        &["-v"],
        &[],
        &["no-such-command", "a b", ""],
        &["server", "--server-port=8080", "--help"],
        &["compact", "-h"],
    ];
    for args in cases {
        let mut sc = Scene::new(bin());
        sc.env.insert("STANDIN_EXIT".into(), "42".into());
        let mut child = sc.command(&[], args).stdout(Stdio::null()).spawn().unwrap();
        let pid = child.id();
        let st = wait_exit(&mut child, Duration::from_secs(30));
        assert_eq!(exit_code(st), 42, "{args:?}: the upstream's exit code");
        let start = sc.assert_started_with(&strings(args));
        // exec, not a child: the upstream runs as the process we started.
        assert_eq!(start["pid"], pid, "{args:?}");
    }
}

#[test]
fn a_missing_upstream_binary_is_a_clear_error() {
    let sc = Scene::new(bin());
    let out = Command::new(bin())
        .args(["etcdbrctl", "--upstream"])
        .arg(sc.path("nowhere/etcdbrctl"))
        .args(["--", "snapshot"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nowhere/etcdbrctl") && err.contains("--upstream"),
        "{err}"
    );
}

/// A copy of a committed backup as etcdbrctl's Local store `$HOME/store`.
fn local_store(sc: &Scene) -> testkit::Fixture {
    let f = testkit::Fixture::load("3.5.1", "basic").unwrap();
    testkit::tree::copy_dir(&f.store(), &sc.path("store")).unwrap();
    f
}

fn full_snapshots(store: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(store.join("v2"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("Full-"))
        .collect();
    out.sort();
    out
}

#[test]
fn compact_runs_natively_with_druids_compaction_job_flags() {
    let sc = Scene::new(bin());
    let f = local_store(&sc);
    let before = full_snapshots(&sc.path("store"));
    let data = sc.path("data");
    // internal/controller/compaction/reconciler.go getCompactionJobArgs, plus a flag no
    // etcd-restore command has (as a later etcdbrctl might add).
    let args = [
        "compact".to_string(),
        format!("--data-dir={}/compaction.etcd", data.display()),
        format!(
            "--restoration-temp-snapshots-dir={}/compaction.restoration.temp",
            data.display()
        ),
        format!("--snapstore-temp-directory={}/tmp", data.display()),
        "--metrics-scrape-wait-duration=0s".into(),
        "--enable-snapshot-lease-renewal=false".into(),
        "--full-snapshot-lease-name=etcd-main-full-snap".into(),
        "--delta-snapshot-lease-name=etcd-main-delta-snap".into(),
        "--embedded-etcd-quota-bytes=8589934592".into(),
        "--etcd-defrag-timeout=8m0s".into(),
        "--etcd-snapshot-timeout=30m0s".into(),
        "--storage-provider=Local".into(),
        "--store-prefix=".into(),
        "--store-container=store".into(),
        "--a-flag-from-a-later-etcdbrctl=1".into(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = sc.command(&[], &args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        sc.records().is_empty(),
        "the upstream ran: {:?}",
        sc.records()
    );
    assert!(
        err.contains("ignored: --a-flag-from-a-later-etcdbrctl=1"),
        "{err}"
    );
    let after = full_snapshots(&sc.path("store"));
    assert_eq!(after.len(), before.len() + 1, "{before:?} -> {after:?}");
    let new = after.iter().find(|n| !before.contains(n)).unwrap();
    let last = f.oracle.final_revision;
    assert!(
        new.starts_with("Full-00000000-") && new.contains(&format!("{last:08}")),
        "{new} does not end at revision {last}"
    );
}

#[test]
fn initialize_runs_natively() {
    let sc = Scene::new(bin());
    let f = local_store(&sc);
    let data = sc.path("data/new.etcd");
    let args = [
        "initialize".to_string(),
        format!("--data-dir={}", data.display()),
        "--validation-mode=full".into(),
        "--storage-provider=Local".into(),
        "--store-container=store".into(),
        "--embedded-etcd-quota-bytes=8589934592".into(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = sc.command(&[], &args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(sc.records().is_empty(), "the upstream ran");
    // Restored from the store: the same key space as `etcd-restore restore` builds from it.
    let cli = testkit::Cli(bin());
    let reference = sc.path("reference.etcd");
    cli.restore(&f.store(), &reference, &[]);
    assert_eq!(cli.hashkv(&data), cli.hashkv(&reference));
}
