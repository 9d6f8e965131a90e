//! End-to-end restore: `etcd-restore restore` next to the embedded-etcd way etcdbrctl restores,
//! on the same backup in the same run (issue 6).
//!
//! ```sh
//! cargo bench --bench restore_e2e                       # bench-data/etcd-3.5.1/bench, else a
//!                                                       # generated 20k-revision / 64 MiB input
//! RESTORE_E2E_REVISIONS=100000 RESTORE_E2E_DB_BYTES=1GiB cargo bench --bench restore_e2e
//! RESTORE_E2E_INPUT=DIR cargo bench --bench restore_e2e # DIR holds store/ (gen.py bench --out)
//! ```
//!
//! Baseline, as etcdbrctl v0.43 does it: download and decompress the full snapshot, `etcdutl
//! snapshot restore`, start etcd (`--unsafe-no-fsync`, 8 GiB quota), replay every source
//! revision as ONE `KV/Txn` with only `then` ops (put without lease, single-key delete) through
//! the gRPC API, stop etcd. Ours: `etcd-restore restore --store S --data-dir D`. Each side's
//! processes run under `/usr/bin/time -v` for their peak RSS; the baseline's figure is etcd's
//! plus the replay client's (which is this binary, re-executed in a client role). Both results
//! are then checked: same final revision, and the same keys, values, create/mod revisions and
//! versions, read back through `KV/Range` from etcd running on each data dir (the baseline drops
//! leases, so `hashkv` can only agree when no key holds a lease; both hashes are printed).
//! Also timed: plain decompress-and-write of the base object (`gzip -dc` and our codec).

#[path = "support/e2e.rs"]
mod e2e;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use e2e::{
    ETCD_VERSION, R, TIME, embedded_restore, input_dir, json, make_plan, mib, open_store, os,
    run_measured, runtime, secs,
};
use etcd_restore::snapstore;
use testkit::{EtcdBins, EtcdConfig, EtcdProcess};

fn main() -> ExitCode {
    e2e::main("restore_e2e", bench)
}

fn bench() -> R<()> {
    if !Path::new(TIME).exists() {
        return Err(format!("{TIME} is missing (Debian: apt-get install time)").into());
    }
    let bins = EtcdBins::get(ETCD_VERSION)
        .ok_or("etcd 3.5.1 is not installed (scripts/install-test-deps)")?;
    let input = input_dir("RESTORE_E2E")?;
    let store_dir = input.join("store");
    let store_s = store_dir.to_string_lossy().into_owned();
    let ours_bin = PathBuf::from(env!("CARGO_BIN_EXE_etcd-restore"));
    let me = std::env::current_exe()?;
    let work_parent = std::env::var("RESTORE_E2E_WORKDIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir());
    let work_dir = tempfile::Builder::new()
        .prefix("restore_e2e-")
        .tempdir_in(work_parent)?;
    let work = work_dir.path();
    let rt = runtime()?;
    let plan = rt.block_on(async { make_plan(&open_store(&store_s)?).await })?;
    let base_object = store_dir.join(&plan.base.path);
    let base_size = std::fs::metadata(&base_object)?.len();
    println!(
        "backup: base {} ({} bytes stored), {} deltas, target revision {}",
        plan.base.path,
        base_size,
        plan.deltas.len(),
        plan.target_revision
    );

    // Ours.
    let ours_dir = work.join("ours");
    println!("ours: etcd-restore restore ...");
    let ours = run_measured(
        &ours_bin,
        &os(&[
            &"restore",
            &"--store",
            &store_s,
            &"--data-dir",
            &ours_dir,
            &"--json",
        ]),
        &work.join("ours.time"),
    )?;

    // Baseline.
    println!("baseline: fetch + etcdutl snapshot restore + etcd + txn replay ...");
    let t0 = Instant::now();
    let theirs = embedded_restore(&bins, &me, &store_s, work, "theirs")?;
    let t_replayed = t0.elapsed();
    let (fetch, replay, mut etcd) = (theirs.fetch, theirs.replay, theirs.etcd);
    let t_restored = theirs.restored;
    let t_started = theirs.restored + theirs.started;
    // Verification reads happen while etcd still runs; that time is not counted.
    let v0 = Instant::now();
    let their_digest = run_measured(
        &me,
        &os(&[&"--digest-client", &etcd.etcd.endpoint()]),
        &work.join("digest1.time"),
    )?;
    let their_hash = etcd.etcd.hashkv(None)?;
    let verify_time = v0.elapsed();
    let (etcd_rss, etcd_cpu) = etcd.stop()?;
    let baseline_wall = t0.elapsed() - verify_time;
    let t_stop = baseline_wall - t_replayed;

    // Checks: etcd on our data dir must hold the same data.
    let ours_json = json(&ours.stdout).unwrap_or_default();
    let our_hash = json(
        &Command::new(&ours_bin)
            .args(["hashkv", "--json", "--data-dir"])
            .arg(&ours_dir)
            .output()?
            .stdout,
    )?;
    let ours_etcd = EtcdProcess::start(&bins, EtcdConfig::new(&ours_dir))?;
    let our_digest = run_measured(
        &me,
        &os(&[&"--digest-client", &ours_etcd.endpoint()]),
        &work.join("digest2.time"),
    )?;
    drop(ours_etcd);
    let replay_json = json(&replay.stdout)?;
    let their_digest = json(&their_digest.stdout)?;
    let our_digest = json(&our_digest.stdout)?;

    // Plain decompress-and-write of the base object.
    let plain = work.join("plain.db");
    let g0 = Instant::now();
    let st = Command::new("sh")
        .arg("-c")
        .arg("gzip -dc \"$1\" > \"$2\"")
        .arg("sh")
        .arg(&base_object)
        .arg(&plain)
        .status()?;
    let gzip_wall = g0.elapsed();
    if !st.success() {
        return Err(format!("gzip -dc {} failed", base_object.display()).into());
    }
    let plain_size = std::fs::metadata(&plain)?.len();
    std::fs::remove_file(&plain)?;
    let c0 = Instant::now();
    {
        let input = std::fs::File::open(&base_object)?;
        let mut out = std::io::BufWriter::new(std::fs::File::create(&plain)?);
        snapstore::decompress_to(plan.base.compression(), input, &plan.base.path, &mut out)?;
        out.flush()?;
    }
    let codec_wall = c0.elapsed();

    // Report.
    let ours_rev = our_hash["current_revision"].as_i64().unwrap_or(-1);
    let their_rev = replay_json["revision"].as_i64().unwrap_or(-2);
    let same_data = our_digest["sha256"] == their_digest["sha256"]
        && our_digest["revision"] == their_digest["revision"];
    let their_rss = etcd_rss + replay.rss_kib;
    let ratio = secs(baseline_wall) / secs(ours.wall);
    println!();
    println!("| | wall s | peak RSS MiB |");
    println!("|---|---:|---:|");
    println!(
        "| ours: etcd-restore restore | {:.2} | {:.1} |",
        secs(ours.wall),
        mib(ours.rss_kib)
    );
    println!(
        "| baseline total (fetch+etcdutl / start / replay / stop = {:.2} / {:.2} / {:.2} / {:.2}) | {:.2} | {:.1} (etcd {:.1} + client {:.1}; fetch {:.1}) |",
        secs(t_restored),
        secs(t_started - t_restored),
        secs(t_replayed - t_started),
        secs(t_stop),
        secs(baseline_wall),
        mib(their_rss),
        mib(etcd_rss),
        mib(replay.rss_kib),
        mib(fetch.rss_kib)
    );
    println!(
        "| gzip -dc base > file ({plain_size} bytes) | {:.2} | |",
        secs(gzip_wall)
    );
    println!(
        "| our codec: decompress base > file | {:.2} | |",
        secs(codec_wall)
    );
    println!();
    println!("speed-up (baseline / ours): {ratio:.1}x");
    let their_cpu = fetch.cpu + etcd_cpu + replay.cpu;
    println!(
        "CPU seconds: ours {:.2}; baseline >= {:.2} (fetch {:.2} + etcd {:.2} + client {:.2}; etcdutl/etcdctl not counted); ratio >= {:.1}x",
        ours.cpu,
        their_cpu,
        fetch.cpu,
        etcd_cpu,
        replay.cpu,
        their_cpu / ours.cpu.max(0.01)
    );
    println!(
        "ours / gzip -dc: {:.2}x; ours / our codec: {:.2}x",
        secs(ours.wall) / secs(gzip_wall),
        secs(ours.wall) / secs(codec_wall)
    );
    println!(
        "replay: {} txns, {} events, base revision {}",
        replay_json["txns"], replay_json["events"], replay_json["base_revision"]
    );
    println!("final revision: ours {ours_rev}, baseline {their_rev}");
    println!("data digest: ours {our_digest}");
    println!("data digest: base {their_digest}");
    println!(
        "hashkv: ours {} (etcd-restore hashkv), baseline {} (etcdctl; differs when keys hold leases, which the baseline drops)",
        our_hash["hash"], their_hash.hash
    );
    if ours_json.is_null() {
        println!("(our restore printed no JSON summary)");
    }
    if ours_rev != their_rev || !same_data {
        return Err(
            "the two restores DISAGREE: the timings above compare different results".into(),
        );
    }
    println!("check: same final revision and same data (keys, values, revisions, versions)");
    Ok(())
}
