//! The README's quick start runs as written: every ```sh block marked
//! `<!-- readme-test: quickstart -->` is executed, in order, by one bash, from the repository
//! root, with this build's etcd-restore on PATH. Only what a shared CI machine needs is
//! changed: `/tmp/` becomes a private temp dir and the fixed ports (2379, 2380, 5000) become
//! free ones. Then the outcome is checked against the sample's oracle (made by real etcd), not
//! against our own output.

use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const MARKER: &str = "<!-- readme-test: quickstart -->";

/// The marked blocks, concatenated.
fn quickstart_script(readme: &str) -> String {
    let mut script = String::new();
    let mut lines = readme.lines();
    let mut blocks = 0;
    while let Some(line) = lines.next() {
        if line.trim() != MARKER {
            continue;
        }
        let fence = lines.next().unwrap_or_default();
        assert_eq!(
            fence.trim(),
            "```sh",
            "a readme-test marker must precede a ```sh block"
        );
        for l in lines.by_ref() {
            if l.trim() == "```" {
                break;
            }
            script.push_str(l);
            script.push('\n');
        }
        blocks += 1;
    }
    assert!(
        blocks >= 3,
        "expected the restore, etcd and S3 blocks, found {blocks}"
    );
    script
}

#[test]
fn readme_quickstart_runs_as_written() {
    let Some(_etcd) = testkit::deps::require("etcd-3.5.1", "etcd-3.5.1/etcd") else {
        return;
    };
    let Some(_moto) = testkit::deps::require("moto", "venv/bin/moto_server") else {
        return;
    };
    let root = testkit::deps::workspace_root();
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let work = tempfile::tempdir().expect("temp dir");
    let work_dir = work.path().display().to_string();
    let (client, peer, s3) = (
        testkit::ports::free_port(),
        testkit::ports::free_port(),
        testkit::ports::free_port(),
    );
    let script = quickstart_script(&readme)
        .replace("/tmp/", &format!("{work_dir}/"))
        .replace("2379", &client.to_string())
        .replace("2380", &peer.to_string())
        .replace("5000", &s3.to_string());

    let bin_dir = Path::new(env!("CARGO_BIN_EXE_etcd-restore"))
        .parent()
        .expect("binary dir")
        .to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let log = work.path().join("script.out");
    let err = work.path().join("script.err");
    let mut child = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(&root)
        .env("PATH", path)
        .env_remove("ETCDCTL_ENDPOINTS")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).expect("log"))
        .stderr(std::fs::File::create(&err).expect("log"))
        // Its own process group, so etcd and moto it starts in the background are killed
        // with it below even when the script fails half-way.
        .process_group(0)
        .spawn()
        .expect("run bash");
    let pgid = child.id() as i32;
    let deadline = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break Some(s);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // SAFETY: kill(2) on our own process group; harmless if it is already gone.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
    let _ = child.wait();
    let out = std::fs::read_to_string(&log).unwrap_or_default();
    let errs = std::fs::read_to_string(&err).unwrap_or_default();
    let status =
        status.unwrap_or_else(|| panic!("the quick start did not finish in 180 s\n{out}\n{errs}"));
    assert!(
        status.success(),
        "the quick start failed ({status}):\n--- stdout\n{out}\n--- stderr\n{errs}"
    );

    let sample = testkit::Oracle::load(&root.join("testdata/sample/oracle.json")).expect("oracle");
    let expect = sample
        .hashkv
        .iter()
        .find(|h| h.revision == sample.final_revision)
        .expect("the oracle's hash at the final revision");
    // etcd-restore hashkv (offline) and etcdctl endpoint hashkv (the started etcd) both print
    // the source cluster's hash.
    assert!(
        out.contains(&format!(
            "hash {} (revision {}",
            expect.hash, sample.final_revision
        )),
        "etcd-restore hashkv should print the source's hash {}:\n{out}",
        expect.hash
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with(&format!("http://127.0.0.1:{client}, {}", expect.hash))),
        "etcdctl endpoint hashkv should print the source's hash {}:\n{out}",
        expect.hash
    );
    let dump = sample
        .dumps
        .iter()
        .find(|d| d.revision == sample.final_revision)
        .expect("the oracle's dump at the final revision");
    for kv in &dump.kvs {
        let key = String::from_utf8_lossy(&kv.key);
        assert!(
            out.lines().any(|l| l == key),
            "etcdctl should list key {key:?}:\n{out}"
        );
    }
    // The compaction uploaded a new full snapshot at the final revision, and its metrics say so.
    let full = format!("Full-00000000-{:08}-", sample.final_revision);
    assert!(
        out.contains(&full),
        "ls after compact should show {full}…:\n{out}"
    );
    assert!(
        out.contains(&format!(
            "etcd_restore_compact_revision {}",
            sample.final_revision
        )),
        "the metrics file should carry the compacted revision:\n{out}"
    );
}
