//! End-to-end compaction: `etcd-restore compact` next to the embedded-etcd way etcdbrctl
//! compacts, on the same backup in the same run (issue 7).
//!
//! ```sh
//! cargo bench --bench compact_e2e                        # like restore_e2e's default input
//! COMPACT_E2E_REVISIONS=100000 COMPACT_E2E_DB_BYTES=16MiB cargo bench --bench compact_e2e
//! COMPACT_E2E_INPUT=DIR cargo bench --bench compact_e2e  # DIR holds store/ (gen.py bench --out)
//! ```
//!
//! Baseline, as `etcdbrctl compact` does it: restore into an embedded etcd exactly as
//! restore_e2e's baseline (fetch + `etcdutl snapshot restore`, etcd 3.5.1 with
//! `--unsafe-no-fsync`, every delta revision replayed as one `KV/Txn`), then `etcdctl compact
//! <last revision> --physical`, `etcdctl defrag`, `etcdctl snapshot save`, and `gzip` of the
//! snapshot into the new full object (etcdbrctl compresses with the deltas' codec, gzip here).
//! Ours: `etcd-restore compact --store <copy of the store>`, which also uploads the object,
//! downloads it again and checks its hash. Peak RSS from `/usr/bin/time -v`: ours is the
//! compact process; the baseline's is etcd's plus the replay client's.
//!
//! Check (the bench fails when it does not hold): our new full snapshot, restored by
//! `etcd-restore restore` and served by etcd, holds the same keys, values, create/mod
//! revisions and versions at the same revision as the baseline's etcd after its compaction.

#[path = "support/e2e.rs"]
mod e2e;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use e2e::{
    ETCD_VERSION, R, TIME, embedded_compact, embedded_restore, input_dir, json, make_plan, mib,
    open_store, os, run_measured, runtime, secs,
};
use testkit::{EtcdBins, EtcdConfig, EtcdProcess};

fn main() -> ExitCode {
    e2e::main("compact_e2e", bench)
}

fn copy_dir(from: &Path, to: &Path) -> R<()> {
    let st = Command::new("cp").arg("-a").arg(from).arg(to).status()?;
    if !st.success() {
        return Err(format!("cp -a {} {} failed", from.display(), to.display()).into());
    }
    Ok(())
}

fn bench() -> R<()> {
    if !Path::new(TIME).exists() {
        return Err(format!("{TIME} is missing (Debian: apt-get install time)").into());
    }
    let bins = EtcdBins::get(ETCD_VERSION)
        .ok_or("etcd 3.5.1 is not installed (scripts/install-test-deps)")?;
    let input = input_dir("COMPACT_E2E")?;
    let store_dir = input.join("store");
    let store_s = store_dir.to_string_lossy().into_owned();
    let ours_bin = PathBuf::from(env!("CARGO_BIN_EXE_etcd-restore"));
    let me = std::env::current_exe()?;
    let work_parent = std::env::var("COMPACT_E2E_WORKDIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir());
    let work_dir = tempfile::Builder::new()
        .prefix("compact_e2e-")
        .tempdir_in(work_parent)?;
    let work = work_dir.path();
    let rt = runtime()?;
    let plan = rt.block_on(async { make_plan(&open_store(&store_s)?).await })?;
    println!(
        "backup: base {} ({} bytes stored), {} deltas, target revision {}",
        plan.base.path,
        std::fs::metadata(store_dir.join(&plan.base.path))?.len(),
        plan.deltas.len(),
        plan.target_revision
    );

    // Ours, on a copy: compact adds an object to the store.
    let ours_store = work.join("ours-store");
    copy_dir(&store_dir, &ours_store)?;
    let ours_tmp = work.join("ours-tmp");
    std::fs::create_dir_all(&ours_tmp)?;
    println!("ours: etcd-restore compact ...");
    let ours = run_measured(
        &ours_bin,
        &os(&[
            &"compact",
            &"--store",
            &ours_store,
            &"--snapstore-temp-directory",
            &ours_tmp,
            &"--json",
        ]),
        &work.join("ours.time"),
    )?;
    let ours_json = json(&ours.stdout)?;

    // Baseline.
    println!(
        "baseline: restore into etcd + compact --physical + defrag + snapshot save + gzip ..."
    );
    let t0 = Instant::now();
    let theirs = embedded_restore(&bins, &me, &store_s, work, "theirs")?;
    let t_restore = t0.elapsed();
    let theirs_fetch_cpu = theirs.fetch.cpu;
    let (replay, mut etcd) = (theirs.replay, theirs.etcd);
    let replay_json = json(&replay.stdout)?;
    let revision = replay_json["revision"]
        .as_i64()
        .ok_or("the replay client printed no revision")?;
    let c = embedded_compact(&etcd, revision, work, "theirs")?;
    let baseline_wall = t_restore + c.total();
    let (their_snap_bytes, their_gz_bytes) = (c.snapshot_bytes, c.gzip_bytes);

    // Verification (not timed): the baseline's data, then etcd on our restored object.
    let their_digest = json(
        &run_measured(
            &me,
            &os(&[&"--digest-client", &etcd.etcd.endpoint()]),
            &work.join("digest1.time"),
        )?
        .stdout,
    )?;
    let (etcd_rss, etcd_cpu) = etcd.stop()?;
    let check_dir = work.join("ours-check");
    let restored = Command::new(&ours_bin)
        .arg("restore")
        .arg("--store")
        .arg(&ours_store)
        .arg("--data-dir")
        .arg(&check_dir)
        .arg("--json")
        .output()?;
    if !restored.status.success() {
        return Err(format!(
            "restoring our compacted store failed: {}",
            String::from_utf8_lossy(&restored.stderr)
        )
        .into());
    }
    let restored_json = json(&restored.stdout)?;
    let ours_etcd = EtcdProcess::start(&bins, EtcdConfig::new(&check_dir))?;
    let our_digest = json(
        &run_measured(
            &me,
            &os(&[&"--digest-client", &ours_etcd.endpoint()]),
            &work.join("digest2.time"),
        )?
        .stdout,
    )?;
    // etcd must refuse reads below the compaction revision, as on the baseline.
    let below = ours_etcd.etcdctl(&["get", "--prefix", "/", &format!("--rev={}", revision - 1)]);
    drop(ours_etcd);

    // Report.
    let their_rss = etcd_rss + replay.rss_kib;
    let ratio = secs(baseline_wall) / secs(ours.wall);
    println!();
    println!("| | wall s | peak RSS MiB |");
    println!("|---|---:|---:|");
    println!(
        "| ours: etcd-restore compact (replay {:.2}, fold {:.2}, pack {:.2}, upload {:.2}) | {:.2} | {:.1} |",
        ours_json["seconds_replay"].as_f64().unwrap_or(f64::NAN),
        ours_json["seconds_fold"].as_f64().unwrap_or(f64::NAN),
        ours_json["seconds_pack"].as_f64().unwrap_or(f64::NAN),
        ours_json["seconds_upload"].as_f64().unwrap_or(f64::NAN),
        secs(ours.wall),
        mib(ours.rss_kib)
    );
    println!(
        "| baseline total (restore {:.2} [fetch+etcdutl {:.2}, start {:.2}, replay {:.2}], compact {:.2}, defrag {:.2}, snapshot save {:.2}, gzip {:.2}) | {:.2} | {:.1} (etcd {:.1} + client {:.1}) |",
        secs(t_restore),
        secs(theirs.restored),
        secs(theirs.started),
        secs(theirs.replayed),
        secs(c.compact),
        secs(c.defrag),
        secs(c.snapshot),
        secs(c.gzip),
        secs(baseline_wall),
        mib(their_rss),
        mib(etcd_rss),
        mib(replay.rss_kib)
    );
    println!();
    println!("speed-up (baseline / ours): {ratio:.1}x");
    let their_cpu = theirs_fetch_cpu + etcd_cpu + replay.cpu;
    println!(
        "CPU seconds: ours {:.2}; baseline >= {:.2} (fetch {:.2} + etcd {:.2} + client {:.2}; etcdutl/etcdctl not counted); ratio >= {:.1}x",
        ours.cpu,
        their_cpu,
        theirs_fetch_cpu,
        etcd_cpu,
        replay.cpu,
        their_cpu / ours.cpu.max(0.01)
    );
    println!(
        "replay: {} txns, {} events; compacted at revision {revision}",
        replay_json["txns"], replay_json["events"]
    );
    println!(
        "ours: {} ({} bytes; db {} bytes, {} of {} key-bucket records kept); baseline: snapshot {their_snap_bytes} bytes, gzip {their_gz_bytes} bytes",
        ours_json["object"],
        ours_json["object_bytes"],
        ours_json["fold"]["bytes_out"],
        ours_json["fold"]["records_out"],
        ours_json["fold"]["records_in"]
    );
    println!("data digest: ours {our_digest}");
    println!("data digest: base {their_digest}");
    let our_base = restored_json["plan"]["base"]["path"].as_str().unwrap_or("");
    let same = our_digest["sha256"] == their_digest["sha256"]
        && our_digest["revision"] == their_digest["revision"]
        && their_digest["revision"].as_i64() == Some(revision);
    if Some(our_base) != ours_json["object"].as_str() {
        return Err(format!("restore chose {our_base}, not the compacted object").into());
    }
    if below.is_ok() {
        return Err(format!(
            "etcd on our compacted snapshot still serves revision {}",
            revision - 1
        )
        .into());
    }
    if !same {
        return Err(
            "the two compactions DISAGREE: the timings above compare different results".into(),
        );
    }
    println!(
        "check: same revision and data (keys, values, revisions, versions); revision {} is compacted on ours",
        revision - 1
    );
    Ok(())
}
