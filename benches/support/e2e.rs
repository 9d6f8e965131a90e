//! Support shared by the end-to-end benches (restore_e2e, compact_e2e): the embedded-etcd
//! baseline's client roles (run as child processes of the bench binary so that
//! `/usr/bin/time -v` measures them alone), measuring helpers, etcd under GNU time, and the
//! bench input (generated with testdata/gen/gen.py and cached in the target dir).

#![allow(dead_code)]

use std::convert::Infallible;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use etcd_restore::etcdclient::proto::{RangeRequest, RequestOp};
use etcd_restore::etcdclient::{Client, Connection, Kv, TlsFiles};
use etcd_restore::snapstore::{
    self, EventKind, PlanOptions, PrefetchOptions, Prefetcher, Store, StoreArgs,
};
use sha2::{Digest, Sha256};
use testkit::{EtcdBins, EtcdConfig, EtcdProcess};

pub type R<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

pub const ETCD_VERSION: &str = "3.5.1";
pub const TIME: &str = "/usr/bin/time";

/// A bench binary's `main`: a client role when re-executed as one, else `bench`.
pub fn main(name: &str, bench: fn() -> R<()>) -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    match client_role(&args).unwrap_or_else(bench) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Runs a client role when the bench binary was re-executed as one (`--fetch-base`,
/// `--replay-client`, `--digest-client`); `None` when `args` name no role.
pub fn client_role(args: &[String]) -> Option<R<()>> {
    let rest = args.get(2..).unwrap_or_default();
    Some(match args.get(1).map(String::as_str)? {
        "--fetch-base" => runtime().and_then(|rt| rt.block_on(fetch_base(rest))),
        "--replay-client" => runtime().and_then(|rt| rt.block_on(replay_client(rest))),
        "--digest-client" => runtime().and_then(|rt| rt.block_on(digest_client(rest))),
        _ => return None,
    })
}

pub fn runtime() -> R<tokio::runtime::Runtime> {
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

pub fn open_store(dir: &str) -> R<Store> {
    let args = StoreArgs {
        store: Some(dir.to_string()),
        ..Default::default()
    };
    Ok(Store::open(&args.resolve()?)?)
}

pub async fn make_plan(store: &Store) -> R<snapstore::Plan> {
    let listing = store.list_snapshots().await?;
    Ok(snapstore::plan(&listing.snapshots, PlanOptions::default())?)
}

// ---------------------------------------------------------------------------------------------
// Client roles

/// `--fetch-base STORE DEST`: the baseline's download + decompress of the full snapshot.
pub async fn fetch_base(args: &[String]) -> R<()> {
    let store = open_store(&arg(args, 0, "STORE")?)?;
    let dest = PathBuf::from(arg(args, 1, "DEST")?);
    let plan = make_plan(&store).await?;
    snapstore::fetch_full(&store, &plan.base, &dest, true).await?;
    println!("{}", plan.base.path);
    Ok(())
}

/// The product's etcd client (`etcdclient`) on one plain-HTTP endpoint, one connection for
/// the whole role; a call that takes longer than five minutes fails.
async fn kv_client(endpoint: &str) -> R<Kv> {
    let client = Client::new(&Connection {
        endpoints: vec![endpoint.to_string()],
        tls: TlsFiles::default(),
        insecure_transport: true,
        auth: None,
    })?;
    Ok(client.kv(Duration::from_secs(300)).await?)
}

/// `--replay-client STORE ENDPOINT SPOOL`: etcdbrctl's delta replay. Events with equal
/// mod_revision become one txn; each txn is sent and awaited before the next, as
/// `applyEventsToEtcd` does.
pub async fn replay_client(args: &[String]) -> R<()> {
    let store = open_store(&arg(args, 0, "STORE")?)?;
    let endpoint = arg(args, 1, "ENDPOINT")?;
    let spool = PathBuf::from(arg(args, 2, "SPOOL")?);
    let mut plan = make_plan(&store).await?;
    let kv = kv_client(&endpoint).await?;
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
        snapstore::decode_delta(delta.bytes(), &object, |e| -> Result<(), Infallible> {
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
pub async fn digest_client(args: &[String]) -> R<()> {
    let kv = kv_client(&arg(args, 0, "ENDPOINT")?).await?;
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

pub struct Measured {
    pub wall: Duration,
    pub rss_kib: u64,
    /// User + system CPU seconds (GNU time): on a shared machine wall time also measures the
    /// neighbours, CPU time only the work.
    pub cpu: f64,
    pub stdout: Vec<u8>,
}

/// Runs `prog args` under `/usr/bin/time -v`; fails on a non-zero exit.
pub fn run_measured(prog: &Path, args: &[OsString], rss_file: &Path) -> R<Measured> {
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
        cpu: cpu_seconds(rss_file)?,
        stdout: out.stdout,
    })
}

/// "Maximum resident set size (kbytes): N" from GNU time's report.
pub fn max_rss(file: &Path) -> R<u64> {
    let text = std::fs::read_to_string(file)?;
    text.lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Maximum resident set size (kbytes):")
                .and_then(|v| v.trim().parse().ok())
        })
        .ok_or_else(|| format!("no peak RSS in {}", file.display()).into())
}

/// "User time (seconds)" + "System time (seconds)" from GNU time's report.
pub fn cpu_seconds(file: &Path) -> R<f64> {
    let text = std::fs::read_to_string(file)?;
    let field = |name: &str| -> R<f64> {
        text.lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix(name)
                    .and_then(|v| v.trim().parse().ok())
            })
            .ok_or_else(|| format!("no {name} in {}", file.display()).into())
    };
    Ok(field("User time (seconds):")? + field("System time (seconds):")?)
}

pub fn json(bytes: &[u8]) -> R<serde_json::Value> {
    Ok(serde_json::from_slice(bytes)?)
}

pub fn os(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Vec<OsString> {
    args.iter().map(|a| a.as_ref().to_os_string()).collect()
}

/// The direct children of `pid` (scanning /proc; the etcd under `/usr/bin/time`).
pub fn children(pid: u32) -> Vec<u32> {
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
pub struct MeasuredEtcd {
    pub etcd: EtcdProcess,
    rss_file: PathBuf,
}

impl MeasuredEtcd {
    pub fn start(bins: &EtcdBins, cfg: EtcdConfig, work: &Path, tag: &str) -> R<MeasuredEtcd> {
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
    /// report, then let testkit reap the wrapper. Returns etcd's peak RSS (KiB) and CPU
    /// seconds.
    pub fn stop(&mut self) -> R<(u64, f64)> {
        self.term_etcd();
        for _ in 0..1200 {
            if max_rss(&self.rss_file).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.etcd.stop()?;
        Ok((max_rss(&self.rss_file)?, cpu_seconds(&self.rss_file)?))
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

pub fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

/// The input directory (holding store/): `$<PREFIX>_INPUT`, else the full-size
/// bench-data/etcd-3.5.1/bench when present and no size was asked for, else one generated
/// with gen.py and cached in the target dir (`$<PREFIX>_REVISIONS`, `$<PREFIX>_DB_BYTES`;
/// default 20,000 revisions on a 64 MiB base; see [`generate_input`]).
pub fn input_dir(prefix: &str) -> R<PathBuf> {
    let root = testkit::deps::workspace_root();
    if let Ok(dir) = std::env::var(format!("{prefix}_INPUT")) {
        return Ok(PathBuf::from(dir));
    }
    let revisions_var = format!("{prefix}_REVISIONS");
    let db_bytes_var = format!("{prefix}_DB_BYTES");
    let sized = std::env::var(&revisions_var).is_ok() || std::env::var(&db_bytes_var).is_ok();
    let full = root.join("bench-data/etcd-3.5.1/bench");
    if !sized && full.join("oracle.json").exists() {
        println!("input: {} (the full-size bench input)", full.display());
        return Ok(full);
    }
    let revisions = env_or(&revisions_var, "20000");
    let db_bytes = env_or(&db_bytes_var, "64MiB");
    if !sized
        && !generated_input_dir(&revisions, &db_bytes)
            .join("oracle.json")
            .exists()
    {
        println!(
            "bench-data/etcd-3.5.1/bench is missing: generating a SMALLER input ({revisions} \
             revisions, {db_bytes} base). Full size: see docs/performance.md"
        );
    }
    generate_input(&revisions, &db_bytes)
}

/// Where [`generate_input`] caches its output: the target dir, by size.
pub fn generated_input_dir(revisions: &str, db_bytes: &str) -> PathBuf {
    let root = testkit::deps::workspace_root();
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target"));
    target.join(format!("bench-input-k8s-{revisions}-{db_bytes}"))
}

/// A `gen.py bench` input (Kubernetes-like mix, real etcd 3.5.1) of `revisions` revisions of
/// deltas on a base of `db_bytes` (gen.py's size syntax, e.g. `100MiB`), generated once and
/// cached in the target dir; shared by the benches.
pub fn generate_input(revisions: &str, db_bytes: &str) -> R<PathBuf> {
    let root = testkit::deps::workspace_root();
    let dir = generated_input_dir(revisions, db_bytes);
    if dir.join("oracle.json").exists() {
        println!(
            "input: {} (generated earlier: {revisions} revisions, {db_bytes} base)",
            dir.display()
        );
        return Ok(dir);
    }
    println!(
        "generating {} ({revisions} revisions, {db_bytes} base) ...",
        dir.display()
    );
    let _ = std::fs::remove_dir_all(&dir);
    let status = Command::new("python3")
        .arg(root.join("testdata/gen/gen.py"))
        .args(["bench", "--version", ETCD_VERSION, "--revisions", revisions])
        .args(["--db-bytes", db_bytes, "--out"])
        .arg(&dir)
        .status()?;
    if !status.success() {
        return Err(format!("gen.py bench failed: {status}").into());
    }
    Ok(dir)
}

/// A size with an optional `KiB`/`MiB`/`GiB` suffix (the benches' environment knobs).
pub fn parse_size(s: &str) -> R<u64> {
    let s = s.trim();
    for (unit, mul) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if let Some(n) = s.strip_suffix(unit) {
            return Ok((n.trim().parse::<f64>()? * mul as f64) as u64);
        }
    }
    Ok(s.parse()?)
}

pub fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

// ---------------------------------------------------------------------------------------------
// The embedded-etcd restore

/// A store restored the way etcdbrctl v0.43 does it, with etcd still running.
pub struct EmbeddedRestore {
    pub etcd: MeasuredEtcd,
    pub fetch: Measured,
    pub replay: Measured,
    /// fetch + `etcdutl snapshot restore`.
    pub restored: Duration,
    /// Starting etcd until healthy.
    pub started: Duration,
    /// The client's txn replay.
    pub replayed: Duration,
}

/// Downloads and decompresses the base (child process), `etcdutl snapshot restore` into
/// `work/<tag>`, starts etcd 3.5.1 under GNU time (`--unsafe-no-fsync`, 8 GiB quota,
/// etcdbrctl's request-size and txn-ops limits) and replays every delta revision as one txn
/// (child process). `me` is the bench binary (it must dispatch [`client_role`]).
pub fn embedded_restore(
    bins: &EtcdBins,
    me: &Path,
    store: &str,
    work: &Path,
    tag: &str,
) -> R<EmbeddedRestore> {
    let base_db = work.join(format!("{tag}.base.db"));
    let t0 = Instant::now();
    let fetch = run_measured(
        me,
        &os(&[&"--fetch-base", &store, &base_db]),
        &work.join(format!("{tag}.fetch.time")),
    )?;
    let mut cfg = EtcdConfig::new(work.join(tag));
    cfg.extra_args = vec![
        "--unsafe-no-fsync".into(),
        "--quota-backend-bytes=8589934592".into(),
        // etcdbrctl's embedded-etcd defaults for request size and txn ops.
        "--max-request-bytes=10485760".into(),
        "--max-txn-ops=10240".into(),
    ];
    bins.snapshot_restore(&base_db, &cfg, true)?;
    let restored = t0.elapsed();
    let etcd = MeasuredEtcd::start(bins, cfg, work, tag)?;
    let started = t0.elapsed() - restored;
    let spool = work.join(format!("{tag}.spool"));
    std::fs::create_dir_all(&spool)?;
    let replay = run_measured(
        me,
        &os(&[&"--replay-client", &store, &etcd.etcd.endpoint(), &spool]),
        &work.join(format!("{tag}.replay.time")),
    )?;
    let replayed = t0.elapsed() - restored - started;
    Ok(EmbeddedRestore {
        etcd,
        fetch,
        replay,
        restored,
        started,
        replayed,
    })
}

// ---------------------------------------------------------------------------------------------
// The embedded-etcd compaction

/// What etcdbrctl's compaction does after its embedded restore, timed step by step.
pub struct EmbeddedCompact {
    pub compact: Duration,
    pub defrag: Duration,
    pub snapshot: Duration,
    pub gzip: Duration,
    /// The saved snapshot (`work/<tag>.snapshot.db`) and its size.
    pub snapshot_path: PathBuf,
    pub snapshot_bytes: u64,
    pub gzip_bytes: u64,
}

impl EmbeddedCompact {
    pub fn total(&self) -> Duration {
        self.compact + self.defrag + self.snapshot + self.gzip
    }
}

/// On the etcd an [`embedded_restore`] left running at `revision`: `etcdctl compact
/// <revision> --physical`, `etcdctl defrag`, `etcdctl snapshot save`, and `gzip` of the snapshot
/// into the new full object (etcdbrctl compresses with the deltas' codec, gzip here).
pub fn embedded_compact(
    etcd: &MeasuredEtcd,
    revision: i64,
    work: &Path,
    tag: &str,
) -> R<EmbeddedCompact> {
    let timeout = "--command-timeout=600s";
    let t = Instant::now();
    etcd.etcd
        .etcdctl(&["compact", &revision.to_string(), "--physical", timeout])?;
    let compact = t.elapsed();
    let t = Instant::now();
    etcd.etcd.etcdctl(&["defrag", timeout])?;
    let defrag = t.elapsed();
    let snap = work.join(format!("{tag}.snapshot.db"));
    let snap_s = snap.to_string_lossy().into_owned();
    let t = Instant::now();
    etcd.etcd
        .etcdctl(&["snapshot", "save", snap_s.as_str(), timeout])?;
    let snapshot = t.elapsed();
    let gz = work.join(format!("{tag}.snapshot.gz"));
    let t = Instant::now();
    let st = Command::new("sh")
        .arg("-c")
        .arg("gzip -c \"$1\" > \"$2\"")
        .arg("sh")
        .arg(&snap)
        .arg(&gz)
        .status()?;
    if !st.success() {
        return Err("gzip of the baseline's snapshot failed".into());
    }
    let gzip = t.elapsed();
    Ok(EmbeddedCompact {
        compact,
        defrag,
        snapshot,
        gzip,
        snapshot_bytes: std::fs::metadata(&snap)?.len(),
        gzip_bytes: std::fs::metadata(&gz)?.len(),
        snapshot_path: snap,
    })
}
