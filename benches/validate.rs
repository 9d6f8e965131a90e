//! Full validation of a large data dir (issue 8): `etcd-restore validate --mode full` next to
//! the Go oracle's `tx.Check()` (`.deps/bin/bboltoracle check`, bbolt 1.3.6) on the same
//! database, in the same run, with a warm page cache.
//!
//! ```sh
//! cargo bench --bench validate                          # like restore_e2e's default input
//! VALIDATE_REVISIONS=100000 VALIDATE_DB_BYTES=1GiB cargo bench --bench validate
//! VALIDATE_DATA_DIR=DIR cargo bench --bench validate    # an existing etcd data dir
//! VALIDATE_RUNS=5                                       # timed runs per side (default 3)
//! ```
//!
//! Without `VALIDATE_DATA_DIR` the bench input's store (see restore_e2e) is restored with
//! `etcd-restore restore` into a temporary data dir first (not timed). The database is read
//! once before timing so that both sides run on a warm cache; each side then runs
//! `VALIDATE_RUNS` times alternately, under `/usr/bin/time -v`, and the best and median wall
//! times and the peak RSS are printed. Our full mode does more than `tx.Check()`: also the WAL
//! CRC chain, the `.snap` files and the offline HashKV over every revision.

#[path = "support/e2e.rs"]
mod e2e;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use e2e::{R, TIME, env_or, input_dir, json, mib, os, run_measured, secs};

fn main() -> ExitCode {
    e2e::main("validate", bench)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn bench() -> R<()> {
    if !Path::new(TIME).exists() {
        return Err(format!("{TIME} is missing (Debian: apt-get install time)").into());
    }
    let oracle = testkit::deps::bboltoracle()
        .ok_or("the Go oracle .deps/bin/bboltoracle is missing (scripts/install-test-deps)")?;
    let ours_bin = PathBuf::from(env!("CARGO_BIN_EXE_etcd-restore"));
    let runs: usize = env_or("VALIDATE_RUNS", "3").parse()?;
    let work_dir = tempfile::Builder::new()
        .prefix("validate-bench-")
        .tempdir_in(
            std::env::var("VALIDATE_WORKDIR")
                .map(PathBuf::from)
                .unwrap_or_else(|_| std::env::temp_dir()),
        )?;
    let work = work_dir.path();
    let data_dir = match std::env::var("VALIDATE_DATA_DIR") {
        Ok(dir) => PathBuf::from(dir),
        Err(_) => {
            let store = input_dir("VALIDATE")?.join("store");
            let dir = work.join("data");
            println!(
                "restoring {} into {} (not timed) ...",
                store.display(),
                dir.display()
            );
            let out = Command::new(&ours_bin)
                .arg("restore")
                .arg("--store")
                .arg(&store)
                .arg("--data-dir")
                .arg(&dir)
                .output()?;
            if !out.status.success() {
                return Err(
                    format!("restore failed: {}", String::from_utf8_lossy(&out.stderr)).into(),
                );
            }
            dir
        }
    };
    let db = data_dir.join("member/snap/db");
    let db_bytes = std::fs::metadata(&db)?.len();
    println!("database: {} ({db_bytes} bytes)", db.display());

    // Warm the cache: read every byte once.
    let st = Command::new("sh")
        .arg("-c")
        .arg("cat \"$1\" > /dev/null")
        .arg("sh")
        .arg(&db)
        .status()?;
    if !st.success() {
        return Err(format!("reading {} failed", db.display()).into());
    }

    let (mut ours_t, mut theirs_t) = (Vec::new(), Vec::new());
    let (mut ours_rss, mut theirs_rss) = (0u64, 0u64);
    let mut report = serde_json::Value::Null;
    for i in 0..runs {
        let ours = run_measured(
            &ours_bin,
            &os(&[
                &"validate",
                &"--mode",
                &"full",
                &"--data-dir",
                &data_dir,
                &"--json",
            ]),
            &work.join(format!("ours{i}.time")),
        )?;
        report = json(&ours.stdout)?;
        if report["verdict"] != "valid" {
            return Err(format!("validate did not say valid: {report}").into());
        }
        ours_t.push(ours.wall);
        ours_rss = ours_rss.max(ours.rss_kib);
        let theirs = run_measured(
            &oracle,
            &os(&[&"check", &db]),
            &work.join(format!("theirs{i}.time")),
        )?;
        if !String::from_utf8_lossy(&theirs.stdout).contains("OK") {
            return Err("bboltoracle check did not say OK".into());
        }
        theirs_t.push(theirs.wall);
        theirs_rss = theirs_rss.max(theirs.rss_kib);
    }
    let (ours_best, theirs_best) = (
        ours_t.iter().min().copied().unwrap_or_default(),
        theirs_t.iter().min().copied().unwrap_or_default(),
    );
    let (ours_med, theirs_med) = (median(ours_t), median(theirs_t));
    println!();
    println!("| {db_bytes}-byte db, warm cache, {runs} runs | best s | median s | peak RSS MiB |");
    println!("|---|---:|---:|---:|");
    println!(
        "| ours: etcd-restore validate --mode full | {:.2} | {:.2} | {:.1} |",
        secs(ours_best),
        secs(ours_med),
        mib(ours_rss)
    );
    println!(
        "| Go oracle: bbolt 1.3.6 tx.Check() | {:.2} | {:.2} | {:.1} |",
        secs(theirs_best),
        secs(theirs_med),
        mib(theirs_rss)
    );
    println!();
    println!(
        "oracle / ours (median): {:.1}x; hashkv {} at revision {}",
        secs(theirs_med) / secs(ours_med),
        report["hashkv"]["hash"],
        report["hashkv"]["hash_revision"]
    );
    Ok(())
}
