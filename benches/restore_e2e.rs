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

#[path = "support/etcd_grpc.rs"]
mod etcd_grpc;

use std::convert::Infallible;
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use etcd_grpc::{BoxError, KvClient, RangeRequest, RequestOp};
use etcd_restore::snapstore::{
    self, EventKind, PlanOptions, PrefetchOptions, Prefetcher, Store, StoreArgs,
};
use sha2::{Digest, Sha256};
use testkit::{EtcdBins, EtcdConfig, EtcdProcess};

type R<T> = Result<T, BoxError>;

const ETCD_VERSION: &str = "3.5.1";
const TIME: &str = "/usr/bin/time";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let rest = args.get(2..).unwrap_or_default();
    let result = match args.get(1).map(String::as_str) {
        Some("--fetch-base") => runtime().and_then(|rt| rt.block_on(fetch_base(rest))),
        Some("--replay-client") => runtime().and_then(|rt| rt.block_on(replay_client(rest))),
        Some("--digest-client") => runtime().and_then(|rt| rt.block_on(digest_client(rest))),
        _ => bench(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("restore_e2e: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> R<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

fn arg(args: &[String], i: usize, what: &str) -> R<String> {
    args.get(i)
        .cloned()
        .ok_or_else(|| format!("missing argument {what}").into())
}

fn open_store(dir: &str) -> R<Store> {
    let args = StoreArgs {
        store: Some(dir.to_string()),
        ..Default::default()
    };
    Ok(Store::open(&args.resolve()?)?)
}

async fn make_plan(store: &Store) -> R<snapstore::Plan> {
    let listing = store.list_snapshots().await?;
    Ok(snapstore::plan(&listing.snapshots, PlanOptions::default())?)
}

// ---------------------------------------------------------------------------------------------
// Client roles (child processes, so that /usr/bin/time measures them alone)

/// `--fetch-base STORE DEST`: the baseline's download + decompress of the full snapshot.
async fn fetch_base(args: &[String]) -> R<()> {
    let store = open_store(&arg(args, 0, "STORE")?)?;
    let dest = PathBuf::from(arg(args, 1, "DEST")?);
    let plan = make_plan(&store).await?;
    snapstore::fetch_full(&store, &plan.base, &dest, true).await?;
    println!("{}", plan.base.path);
    Ok(())
}

/// `--replay-client STORE ENDPOINT SPOOL`: etcdbrctl's delta replay. Events with equal
/// mod_revision become one txn; each txn is sent and awaited before the next, as
/// `applyEventsToEtcd` does.
async fn replay_client(args: &[String]) -> R<()> {
    let store = open_store(&arg(args, 0, "STORE")?)?;
    let endpoint = arg(args, 1, "ENDPOINT")?;
    let spool = PathBuf::from(arg(args, 2, "SPOOL")?);
    let mut plan = make_plan(&store).await?;
    let mut kv = KvClient::connect(&endpoint).await?;
    let base_rev = kv
        .range(RangeRequest {
            key: b"\0".to_vec(),
            ..Default::default()
        })
        .await?
        .header
        .map(|h| h.revision)
        .unwrap_or(0);
    plan.apply_base_revision(base_rev)?;
    let mut prefetcher =
        Prefetcher::new(store, plan.deltas.clone(), PrefetchOptions::new(4, spool));
    let (mut txns, mut events, mut revision) = (0u64, 0u64, base_rev);
    while let Some(delta) = prefetcher.next().await {
        let delta = delta?;
        let skip = delta
            .planned
            .skip_through_revision
            .unwrap_or(0)
            .max(base_rev);
        let mut batches: Vec<Vec<RequestOp>> = Vec::new();
        let mut last = 0i64;
        let object = delta.planned.snapshot.path.clone();
        snapstore::decode_delta(&delta.data, &object, |e| -> Result<(), Infallible> {
            if e.mod_revision <= skip {
                return Ok(());
            }
            if e.mod_revision != last || batches.is_empty() {
                batches.push(Vec::new());
                last = e.mod_revision;
            }
            if let Some(ops) = batches.last_mut() {
                ops.push(match e.kind {
                    EventKind::Put => RequestOp::put(e.key, e.value),
                    EventKind::Delete => RequestOp::delete(e.key),
                });
            }
            Ok(())
        })
        .map_err(|e| format!("{object}: {e}"))?;
        for ops in batches {
            events += ops.len() as u64;
            let resp = kv.txn(ops).await?;
            txns += 1;
            revision = resp.header.map(|h| h.revision).unwrap_or(revision);
        }
    }
    println!(
        "{}",
        serde_json::json!({"base_revision": base_rev, "txns": txns, "events": events, "revision": revision})
    );
    Ok(())
}

/// `--digest-client ENDPOINT`: SHA-256 over every key's (key, value, create, mod, version) at
/// the current revision, read in pages through `KV/Range`; leases are left out on purpose.
async fn digest_client(args: &[String]) -> R<()> {
    let mut kv = KvClient::connect(&arg(args, 0, "ENDPOINT")?).await?;
    let mut hasher = Sha256::new();
    let (mut key, mut rev, mut keys, mut leased) = (b"\0".to_vec(), 0i64, 0u64, 0u64);
    for _page in 0..100_000_000u64 {
        let resp = kv
            .range(RangeRequest {
                key: key.clone(),
                range_end: b"\0".to_vec(),
                limit: 64,
                revision: rev,
                count_only: false,
            })
            .await?;
        if rev == 0 {
            rev = resp.header.as_ref().map(|h| h.revision).unwrap_or(0);
        }
        for kv in &resp.kvs {
            for part in [&kv.key, &kv.value] {
                hasher.update((part.len() as u64).to_le_bytes());
                hasher.update(part);
            }
            for n in [kv.create_revision, kv.mod_revision, kv.version] {
                hasher.update(n.to_le_bytes());
            }
            keys += 1;
            leased += u64::from(kv.lease != 0);
        }
        match resp.kvs.last() {
            Some(last) if resp.more => {
                key = last.key.clone();
                key.push(0);
            }
            _ => break,
        }
    }
    let digest: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    println!(
        "{}",
        serde_json::json!({"revision": rev, "keys": keys, "leased_keys": leased, "sha256": digest})
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Measuring

struct Measured {
    wall: Duration,
    rss_kib: u64,
    stdout: Vec<u8>,
}

/// Runs `prog args` under `/usr/bin/time -v`; fails on a non-zero exit.
fn run_measured(prog: &Path, args: &[OsString], rss_file: &Path) -> R<Measured> {
    let start = Instant::now();
    let out = Command::new(TIME)
        .arg("-v")
        .arg("-o")
        .arg(rss_file)
        .arg(prog)
        .args(args)
        .stdin(Stdio::null())
        .output()?;
    let wall = start.elapsed();
    if !out.status.success() {
        return Err(format!(
            "{} failed ({}): {}",
            prog.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(Measured {
        wall,
        rss_kib: max_rss(rss_file)?,
        stdout: out.stdout,
    })
}

/// "Maximum resident set size (kbytes): N" from GNU time's report.
fn max_rss(file: &Path) -> R<u64> {
    let text = std::fs::read_to_string(file)?;
    text.lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Maximum resident set size (kbytes):")
                .and_then(|v| v.trim().parse().ok())
        })
        .ok_or_else(|| format!("no peak RSS in {}", file.display()).into())
}

fn json(bytes: &[u8]) -> R<serde_json::Value> {
    Ok(serde_json::from_slice(bytes)?)
}

fn os(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Vec<OsString> {
    args.iter().map(|a| a.as_ref().to_os_string()).collect()
}

/// The direct children of `pid` (scanning /proc; the etcd under `/usr/bin/time`).
fn children(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let child: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).ok()?;
        let ppid: u32 = stat
            .rsplit_once(')')?
            .1
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        (ppid == pid).then_some(child)
    })
    .collect()
}

/// etcd started through a `/usr/bin/time -v -o RSS etcd ...` wrapper, so its peak RSS is
/// known once it exits.
struct MeasuredEtcd {
    etcd: EtcdProcess,
    rss_file: PathBuf,
}

impl MeasuredEtcd {
    fn start(bins: &EtcdBins, cfg: EtcdConfig, work: &Path, tag: &str) -> R<MeasuredEtcd> {
        let rss_file = work.join(format!("{tag}.etcd.time"));
        let wrapper = work.join(format!("{tag}.etcd.sh"));
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nexec {TIME} -v -o '{}' '{}' \"$@\"\n",
                rss_file.display(),
                bins.etcd.display()
            ),
        )?;
        Command::new("chmod").arg("+x").arg(&wrapper).status()?;
        let mut wrapped = bins.clone();
        wrapped.etcd = wrapper;
        let etcd = EtcdProcess::start(&wrapped, cfg)?;
        Ok(MeasuredEtcd { etcd, rss_file })
    }

    /// SIGTERM to etcd itself (GNU time dies on SIGTERM without reporting), wait for time's
    /// report, then let testkit reap the wrapper. Returns etcd's peak RSS.
    fn stop(&mut self) -> R<u64> {
        self.term_etcd();
        for _ in 0..1200 {
            if max_rss(&self.rss_file).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.etcd.stop()?;
        max_rss(&self.rss_file)
    }

    fn term_etcd(&self) {
        for child in children(self.etcd.pid()) {
            // SAFETY: plain kill(2) on a pid we started (etcd, the wrapper's only child).
            unsafe { libc::kill(child as libc::pid_t, libc::SIGTERM) };
        }
    }
}

impl Drop for MeasuredEtcd {
    // testkit's Drop would only end the wrapper (time), orphaning etcd.
    fn drop(&mut self) {
        self.term_etcd();
    }
}

// ---------------------------------------------------------------------------------------------
// The bench

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

/// The input directory (holding store/): `$RESTORE_E2E_INPUT`, else the full-size
/// bench-data/etcd-3.5.1/bench when present and no size was asked for, else one generated
/// with gen.py (cached under target/).
fn input_dir() -> R<PathBuf> {
    let root = testkit::deps::workspace_root();
    if let Ok(dir) = std::env::var("RESTORE_E2E_INPUT") {
        return Ok(PathBuf::from(dir));
    }
    let sized = std::env::var("RESTORE_E2E_REVISIONS").is_ok()
        || std::env::var("RESTORE_E2E_DB_BYTES").is_ok();
    let full = root.join("bench-data/etcd-3.5.1/bench");
    if !sized && full.join("oracle.json").exists() {
        println!("input: {} (the full-size bench input)", full.display());
        return Ok(full);
    }
    let revisions = env_or("RESTORE_E2E_REVISIONS", "20000");
    let db_bytes = env_or("RESTORE_E2E_DB_BYTES", "64MiB");
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target"));
    let dir = target.join(format!("restore_e2e-input-{revisions}-{db_bytes}"));
    if dir.join("oracle.json").exists() {
        println!(
            "input: {} (generated earlier: {revisions} revisions, {db_bytes} base)",
            dir.display()
        );
        return Ok(dir);
    }
    if !sized {
        println!(
            "bench-data/etcd-3.5.1/bench is missing: generating a SMALLER input ({revisions} \
             revisions, {db_bytes} base). Full size: see docs/performance.md"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    let status = Command::new("python3")
        .arg(root.join("testdata/gen/gen.py"))
        .args([
            "bench",
            "--version",
            ETCD_VERSION,
            "--revisions",
            &revisions,
        ])
        .args(["--db-bytes", &db_bytes, "--out"])
        .arg(&dir)
        .status()?;
    if !status.success() {
        return Err(format!("gen.py bench failed: {status}").into());
    }
    Ok(dir)
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn bench() -> R<()> {
    if !Path::new(TIME).exists() {
        return Err(format!("{TIME} is missing (Debian: apt-get install time)").into());
    }
    let bins = EtcdBins::get(ETCD_VERSION)
        .ok_or("etcd 3.5.1 is not installed (scripts/install-test-deps)")?;
    let input = input_dir()?;
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
    let base_db = work.join("base.db");
    let t0 = Instant::now();
    let fetch = run_measured(
        &me,
        &os(&[&"--fetch-base", &store_s, &base_db]),
        &work.join("fetch.time"),
    )?;
    let mut cfg = EtcdConfig::new(work.join("theirs"));
    cfg.extra_args = vec![
        "--unsafe-no-fsync".into(),
        "--quota-backend-bytes=8589934592".into(),
        // etcdbrctl's embedded-etcd defaults for request size and txn ops.
        "--max-request-bytes=10485760".into(),
        "--max-txn-ops=10240".into(),
    ];
    bins.snapshot_restore(&base_db, &cfg, true)?;
    let t_restored = t0.elapsed();
    let mut etcd = MeasuredEtcd::start(&bins, cfg, work, "theirs")?;
    let t_started = t0.elapsed();
    let spool = work.join("spool");
    std::fs::create_dir_all(&spool)?;
    let replay = run_measured(
        &me,
        &os(&[&"--replay-client", &store_s, &etcd.etcd.endpoint(), &spool]),
        &work.join("replay.time"),
    )?;
    let t_replayed = t0.elapsed();
    // Verification reads happen while etcd still runs; that time is not counted.
    let v0 = Instant::now();
    let their_digest = run_measured(
        &me,
        &os(&[&"--digest-client", &etcd.etcd.endpoint()]),
        &work.join("digest1.time"),
    )?;
    let their_hash = etcd.etcd.hashkv(None)?;
    let verify_time = v0.elapsed();
    let etcd_rss = etcd.stop()?;
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
