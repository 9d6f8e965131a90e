//! Security properties of the real binary:
//!
//! * hostile object names in a store (`..`, absolute, percent-encoded, backslashes, NUL, very
//!   long) never make a file appear outside the data and temp directories — the run either
//!   ignores them (same result as without them) or refuses cleanly;
//! * hostile object names never reach a terminal or a log line unescaped: no control
//!   character to rewrite the screen, no newline to forge a line;
//! * a restored data directory is 0700 with 0600 files, whatever the umask;
//! * credentials (the S3 secret key from a credentials file) never appear in output, logs at
//!   the highest verbosity, JSON logs, or error messages.
//!
//! TLS for `serve` is checked by the serve command's own tests (docs/reliability.md).

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, Output};

use testkit::objstore::MotoServer;
use testkit::tree::{copy_dir, digest};
use testkit::{Fixture, tempfile};

const VERSION: &str = "3.5.1";
const SCENARIO: &str = "basic";
const SECRET: &str = "s3cr3t-Must-Not-Leak-7f3a9c";

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_etcd-restore")
}

fn creds_file(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("aws.json");
    std::fs::write(
        &p,
        format!(
            r#"{{"accessKeyID":"AKIDLEAKCHECK","secretAccessKey":"{SECRET}","region":"us-east-1"}}"#
        ),
    )
    .unwrap();
    p
}

fn s3(endpoint: &str, creds: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.args(args)
        .arg("--store-endpoint-override")
        .arg(endpoint)
        .env("AWS_APPLICATION_CREDENTIALS_JSON", creds)
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("RUST_LOG");
    c
}

/// Files anywhere below `root` (depth-limited) whose name contains `needle`.
fn find_named(root: &Path, needle: &str, depth: u32, found: &mut Vec<String>) {
    let Ok(rd) = std::fs::read_dir(root) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.contains(needle) {
            found.push(e.path().display().to_string());
        }
        if depth > 0 && e.file_type().is_ok_and(|t| t.is_dir()) {
            find_named(&e.path(), needle, depth - 1, found);
        }
    }
}

fn clean_or_ok(out: &Output, what: &str) -> bool {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    if !out.status.success() {
        assert_eq!(out.status.code(), Some(1), "{what}: {stderr}");
    }
    out.status.success()
}

#[test]
fn hostile_object_names_never_escape_into_the_filesystem() {
    let Some(moto) = MotoServer::start().unwrap() else {
        return;
    };
    let fixture = Fixture::load(VERSION, SCENARIO).unwrap();
    moto.create_bucket("bkt").unwrap();
    moto.upload_dir("bkt", "clean", &fixture.store()).unwrap();
    moto.upload_dir("bkt", "hostile", &fixture.store()).unwrap();
    let tag = format!("escaped{}", std::process::id());
    let full = "Full-00000000-00000001-1700000000";
    let long = "x".repeat(900);
    let hostile = [
        format!("hostile/v2/../../{tag}"),
        format!("hostile/v2/../../../../../../../../tmp/{tag}"),
        format!("hostile/v2/{full}/../../{tag}"),
        format!("hostile/v2/..%2f..%2f{tag}"),
        format!("hostile/v2/%2e%2e/%2e%2e/{tag}"),
        format!("hostile/v2/..\\..\\{tag}"),
        format!("hostile//v2/{tag}"),
        format!("hostile/v2//{tag}"),
        format!("hostile/v2/{full}/0000000001/../../../{tag}"),
        format!("hostile/v1/../v2/{tag}"),
        format!("hostile/v2/Incr-00000001-00000002-1700000000\0{tag}"),
        format!("hostile/v2/{full}/{tag}"),
        format!("hostile/v2/{long}{tag}"),
        format!("/hostile/v2/{tag}"),
    ];
    // "hostile" gets every name; "soft" only those that are valid object_store paths (no `.`,
    // `..` or empty segment, no NUL), which the listing therefore classifies instead of
    // refusing.
    moto.upload_dir("bkt", "soft", &fixture.store()).unwrap();
    let mut stored = 0;
    let mut soft_stored = 0;
    for k in &hostile {
        // moto may refuse some names; the ones it keeps are the test.
        if moto.put_object("bkt", k, b"payload").is_ok() {
            stored += 1;
        }
        let dotted =
            k.contains('\0') || k.split('/').any(|s| s.is_empty() || s == "." || s == "..");
        if !dotted
            && moto
                .put_object("bkt", &k.replacen("hostile/", "soft/", 1), b"payload")
                .is_ok()
        {
            soft_stored += 1;
        }
    }
    assert!(stored >= 8, "moto kept only {stored} hostile names");
    assert!(soft_stored >= 5, "moto kept only {soft_stored} soft names");
    let keys = moto.list_keys("bkt", "hostile/").unwrap();
    let soft_keys = moto.list_keys("bkt", "soft/").unwrap();

    let tmp = tempfile::tempdir().unwrap();
    let creds = creds_file(tmp.path());
    let cwd = tmp.path().join("cwd");
    std::fs::create_dir(&cwd).unwrap();
    let temp = tmp.path().join("temp");
    std::fs::create_dir(&temp).unwrap();
    let reference = tmp.path().join("ref.etcd");
    let out = s3(
        &moto.endpoint(),
        &creds,
        &[
            "restore",
            "--store",
            "s3://bkt/clean",
            "--keep-unknown-leases",
        ],
    )
    .arg("--data-dir")
    .arg(&reference)
    .output()
    .unwrap();
    assert!(clean_or_ok(&out, "clean restore"));

    for (i, args) in [
        vec!["ls", "--json", "--store", "s3://bkt/hostile"],
        vec![
            "restore",
            "--store",
            "s3://bkt/hostile",
            "--keep-unknown-leases",
        ],
        vec!["compact", "--store", "s3://bkt/hostile"],
        vec!["ls", "--json", "--store", "s3://bkt/soft"],
        vec![
            "restore",
            "--store",
            "s3://bkt/soft",
            "--keep-unknown-leases",
        ],
        vec!["compact", "--store", "s3://bkt/soft"],
    ]
    .into_iter()
    .enumerate()
    {
        let target = tmp.path().join(format!("h{i}.etcd"));
        let url = args
            .iter()
            .copied()
            .find(|a| a.starts_with("s3://"))
            .unwrap_or_default();
        let soft = url.ends_with("soft");
        let mut c = s3(&moto.endpoint(), &creds, &args);
        c.current_dir(&cwd)
            .arg("--snapstore-temp-directory")
            .arg(&temp);
        if args[0] == "restore" {
            c.arg("--data-dir").arg(&target);
        }
        let out = c.output().unwrap();
        let ok = clean_or_ok(&out, args[0]);
        // Names that are valid paths are classified and ignored, never refused.
        assert!(
            ok || !soft,
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if args[0] == "restore" && ok {
            assert_eq!(
                digest(&target).unwrap(),
                digest(&reference).unwrap(),
                "hostile names must not change the restore"
            );
        }
        println!(
            "{} {} ({} keys): {}",
            args[0],
            url,
            if soft { soft_keys.len() } else { keys.len() },
            if ok {
                "ok".to_string()
            } else {
                String::from_utf8_lossy(&out.stderr).trim().to_string()
            }
        );
    }
    assert_eq!(std::fs::read_dir(&cwd).unwrap().count(), 0, "files in cwd");
    assert_eq!(
        std::fs::read_dir(&temp).unwrap().count(),
        0,
        "files in temp"
    );
    let mut found = Vec::new();
    find_named(&std::env::temp_dir(), &tag, 4, &mut found);
    find_named(tmp.path(), &tag, 8, &mut found);
    assert!(found.is_empty(), "escaped into the filesystem: {found:?}");
    moto.stop().unwrap();
}

#[test]
fn hostile_object_names_are_escaped_in_output_and_logs() {
    let fixture = Fixture::load(VERSION, SCENARIO).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    copy_dir(&fixture.store(), &store).unwrap();
    let forged = "FORGED: restore complete";
    let names = [
        format!("Full-x\x1b]0;pwned\x07\n{forged}"),
        format!("junk\r\n{forged}\x1b[2J"),
    ];
    for n in &names {
        std::fs::write(store.join("v2").join(n), b"payload").unwrap();
    }
    let store = store.to_str().unwrap();
    for (args, log) in [
        (vec!["ls", "--store", store], "debug"),
        (vec!["ls", "--json", "--store", store], "debug"),
        (
            vec!["restore", "--store", store, "--keep-unknown-leases"],
            "trace",
        ),
    ] {
        let mut c = Command::new(bin());
        c.args(&args).env("RUST_LOG", log);
        if args[0] == "restore" {
            c.arg("--data-dir").arg(tmp.path().join("r.etcd"));
        }
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for (stream, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
            let text = String::from_utf8_lossy(bytes);
            assert!(
                !text.contains(['\x1b', '\x07', '\r']),
                "{args:?} {stream} carries a control character: {text:?}"
            );
            assert!(
                !text.lines().any(|l| l.trim_start().starts_with("FORGED")),
                "{args:?} {stream} has a forged line: {text}"
            );
        }
        if args[0] == "ls" && args[1] != "--json" {
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(text.contains("2 other objects"), "{text}");
            assert!(text.contains("\\u{1b}"), "escaped name missing: {text}");
        }
    }
}

#[test]
fn restored_data_dirs_are_0700_with_0600_files_whatever_the_umask() {
    let fixture = Fixture::load(VERSION, SCENARIO).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    for (i, template) in [false, true].into_iter().enumerate() {
        let mut c = Command::new(bin());
        c.arg("restore")
            .arg("--store")
            .arg(fixture.store())
            .arg("--keep-unknown-leases");
        let dirs: Vec<std::path::PathBuf> = if template {
            c.args([
                "--name",
                "a",
                "--initial-cluster",
                "a=http://10.0.0.1:2380,b=http://10.0.0.2:2380",
                "--initial-advertise-peer-urls",
                "http://10.0.0.1:2380",
                "--data-dir-template",
            ])
            .arg(tmp.path().join(format!("t{i}-{{name}}.etcd")));
            vec![
                tmp.path().join(format!("t{i}-a.etcd")),
                tmp.path().join(format!("t{i}-b.etcd")),
            ]
        } else {
            let d = tmp.path().join(format!("d{i}.etcd"));
            c.arg("--data-dir").arg(&d);
            vec![d]
        };
        // SAFETY: umask is async-signal-safe.
        unsafe {
            c.pre_exec(|| {
                libc::umask(0);
                Ok(())
            });
        }
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for d in dirs {
            let mode = std::fs::metadata(&d).unwrap().permissions().mode() & 0o7777;
            assert_eq!(mode, 0o700, "{}", d.display());
            let tree = digest(&d).unwrap().unwrap();
            assert!(tree.contains_key("member/snap/db") && tree.contains_key("member/wal"));
            for (p, e) in tree {
                let want = if e.sha256.is_some() { 0o600 } else { 0o700 };
                assert_eq!(e.mode, want, "{}/{p}: {:o}", d.display(), e.mode);
            }
        }
    }
}

#[test]
fn secrets_never_appear_in_output_logs_or_errors() {
    let Some(moto) = MotoServer::start().unwrap() else {
        return;
    };
    let fixture = Fixture::load(VERSION, SCENARIO).unwrap();
    moto.create_bucket("bkt").unwrap();
    moto.upload_dir("bkt", "p", &fixture.store()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let creds = creds_file(tmp.path());
    let runs: Vec<(&str, Vec<String>, bool)> = vec![
        (
            "ls -vvv",
            vec![
                "ls".into(),
                "-vvv".into(),
                "--store".into(),
                "s3://bkt/p".into(),
            ],
            true,
        ),
        (
            "restore -vv json logs",
            vec![
                "restore".into(),
                "-vv".into(),
                "--log-format".into(),
                "json".into(),
                "--json".into(),
                "--store".into(),
                "s3://bkt/p".into(),
                "--data-dir".into(),
                tmp.path().join("r.etcd").display().to_string(),
            ],
            true,
        ),
        (
            "restore from a missing bucket",
            vec![
                "restore".into(),
                "-vvv".into(),
                "--store".into(),
                "s3://nope/p".into(),
                "--data-dir".into(),
                tmp.path().join("x.etcd").display().to_string(),
            ],
            false,
        ),
        (
            "compact -vv dry run",
            vec![
                "compact".into(),
                "-vv".into(),
                "--dry-run".into(),
                "--json".into(),
                "--store".into(),
                "s3://bkt/p".into(),
                "--snapstore-temp-directory".into(),
                tmp.path().display().to_string(),
            ],
            true,
        ),
    ];
    for (what, args, should_succeed) in runs {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = s3(&moto.endpoint(), &creds, &args).output().unwrap();
        assert_eq!(
            out.status.success(),
            should_succeed,
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for (stream, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
            let text = String::from_utf8_lossy(bytes);
            assert!(
                !text.contains(SECRET),
                "{what}: the secret key appears on {stream}"
            );
        }
        assert!(
            !out.stderr.is_empty() || !should_succeed || what.contains("json"),
            "{what}: logging at high verbosity produced nothing, the check would be empty"
        );
    }
    moto.stop().unwrap();
}
