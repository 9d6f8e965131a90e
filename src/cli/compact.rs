//! `etcd-restore compact`: a drop-in for `etcdbrctl compact` in CronJob specs.
//!
//! Exit codes: 0 written and checked (or dry run), 1 any other failure, 2 usage (including a
//! compression level the codec cannot take), 3 the target object already exists, 4 what was
//! sent or published is not what was written (sha256 of the bytes sent, or the published
//! object's size), 5 another compaction of the store holds its lock (or took it over before
//! this run published): nothing was published.

use std::path::PathBuf;
use std::process::ExitCode;

use super::metrics::{MetricsArgs, RunMetrics};
use etcd_restore::batch::config::parse_compression;
use etcd_restore::batch::{CompactSettings, Purpose, SharedReplay, compact_batch};
use etcd_restore::compact::{CompactError, CompactOptions, CompactReport, compact};
use etcd_restore::replay::ReplayOptions;
use etcd_restore::snapstore::codec::check_level;
use etcd_restore::snapstore::{FetchArgs, PlanOptions, Store, StoreArgs};

use super::batch::BatchArgs;
use super::compactor::{CompactorArgs, LeaseOutcome};
use super::restore::{EmbeddedEtcdArgs, MemberArgs};

#[derive(clap::Args, Debug)]
// Go's pflag: a flag given twice takes the last value (Job specs get patched by appending).
#[command(args_override_self = true)]
pub struct CompactArgs {
    #[command(flatten)]
    store: StoreArgs,

    #[command(flatten)]
    fetch: FetchArgs,

    /// Keep every revision (only defragment and fold the deltas in).
    #[arg(long)]
    keep_history: bool,

    /// Compression of the new full snapshot (default: the last delta's, like etcdbrctl).
    #[arg(long, value_name = "CODEC", value_parser = ["gzip", "zlib", "lzw", "zstd", "none"], conflicts_with = "batch")]
    compression: Option<String>,

    /// Compression level: gzip and zlib 0-9 (default 6, Go's default), zstd -7..22 (default
    /// 3); lzw and none have none. Checked against the codec before any work starts.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    compression_level: Option<i32>,

    /// Threads compressing gzip or zstd (default: one per available core). zlib and lzw are
    /// single streams and use one.
    #[arg(long, value_name = "N", hide = true)]
    compression_threads: Option<usize>,

    /// Uncompressed bytes per gzip member / zstd frame (default 1 MiB / 2 MiB); for tests,
    /// which need many members from a small fixture.
    #[arg(long, value_name = "BYTES", hide = true)]
    compression_chunk: Option<usize>,

    #[command(flatten)]
    batch: BatchArgs,

    /// TTL of the leases granted for keys whose lease was granted after the base snapshot
    /// (default: the base's longest lease TTL, or 1h; see `restore --help`).
    #[arg(long, value_name = "DURATION", value_parser = super::parse_ttl)]
    unknown_lease_ttl: Option<i64>,

    /// Build and check everything, upload nothing.
    #[arg(long)]
    dry_run: bool,

    /// Lifetime of the store's compaction lock (`v2/.etcd-restore-compact.lock`) between
    /// renewals: a killed run's lock lapses after it (Go duration).
    #[arg(long, value_name = "DURATION", default_value = "1m0s", value_parser = super::duration::parse_positive_go_duration)]
    lock_ttl: std::time::Duration,

    /// In an S3 bucket with an Object Lock default retention: how long after its expiry each
    /// version of the lock stays retained (GOVERNANCE) before the next run deletes it.
    #[arg(long, value_name = "DURATION", default_value = "15m0s", hide = true, value_parser = super::duration::parse_go_duration)]
    lock_retention_slack: std::time::Duration,

    /// Bytes of sort records kept in memory before spilling to disk (default: a quarter of
    /// --memory-budget).
    #[arg(long, value_name = "BYTES", hide = true)]
    sort_budget: Option<usize>,

    /// Machine-readable report on stdout.
    #[arg(long)]
    json: bool,

    #[command(flatten)]
    metrics: MetricsArgs,

    #[command(flatten)]
    compactor: CompactorArgs,

    /// etcdbrctl compact takes restore's member flags; a compacted snapshot has no members.
    #[command(flatten)]
    member: MemberArgs,

    #[arg(short = 'd', long, hide = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,

    #[command(flatten)]
    ignored: EmbeddedEtcdArgs,
}

pub async fn run(args: CompactArgs) -> anyhow::Result<ExitCode> {
    args.ignored.notice();
    // etcdbrctl validates these and builds its Kubernetes client before any work.
    let lease = match args.compactor.prepare() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {}", etcd_restore::show::causes(e.chain()));
            return Ok(ExitCode::from(1));
        }
    };
    if args.data_dir.is_some() {
        eprintln!("notice: --data-dir is accepted for etcdbrctl compatibility and ignored");
    }
    if let Some(path) = &args.batch.batch {
        if lease.is_some() {
            eprintln!(
                "error: --enable-snapshot-lease-renewal names one etcd's lease; it cannot be used with --batch"
            );
            return Ok(ExitCode::from(2));
        }
        let (batch, schedule) = match args.batch.load(path, Purpose::Compact, &args.store) {
            Ok(b) => b,
            Err(code) => return Ok(code),
        };
        let settings = CompactSettings {
            replay: SharedReplay {
                verify_hash: !args.fetch.skip_hash_check,
                max_fetchers: args.fetch.max_fetchers as usize,
                strip_leases: false,
                keep_unknown_leases: false,
                unknown_lease_ttl: args.unknown_lease_ttl,
                memory_budget: args.fetch.memory_budget / schedule.concurrency() as u64,
                restoration_dir: args.ignored.restoration_dir(),
            },
            keep_history: args.keep_history,
            dry_run: args.dry_run,
            sort_budget: args.sort_budget.unwrap_or(budget_share(
                args.fetch.memory_budget / schedule.concurrency() as u64,
                4,
            )),
            compression_level: args.compression_level,
            compression_threads: args.compression_threads.unwrap_or(0),
            compression_buffer: budget_share(
                args.fetch.memory_budget / schedule.concurrency() as u64,
                4,
            ),
            compression_chunk: args.compression_chunk.unwrap_or(0),
        };
        let run = RunMetrics::start("compact");
        let report = compact_batch(&batch, schedule, settings).await;
        return super::batch::finish(&report, args.json, &args.metrics, run).await;
    }
    args.batch.check_single()?;
    let config = args.store.resolve()?;
    let store = Store::open(&config)?;
    let mut replay =
        ReplayOptions::new(config.temp_dir.clone()).with_memory_budget(args.fetch.memory_budget);
    replay.verify_hash = !args.fetch.skip_hash_check;
    replay.max_fetchers = args.fetch.max_fetchers as usize;
    // The compacted snapshot must describe the same cluster: every key keeps its lease, and
    // leases granted after the base are granted in it too.
    replay.unknown_lease_ttl = args.unknown_lease_ttl;
    replay.restoration_dir = args.ignored.restoration_dir();
    let progress = std::sync::Arc::new(etcd_restore::progress::Progress::new());
    replay.progress = Some(progress.clone());
    // The names clap accepts; "lzw" used to fall through to the plan's codec (its extension
    // is ".Z"), so `--compression lzw` wrote gzip.
    let compression = args.compression.as_deref().and_then(parse_compression);
    // With the codec named, a level it cannot take is a usage error now; otherwise the codec
    // comes from the plan and compact() checks it before the replay.
    if let Some(c) = compression
        && let Err(e) = check_level(c, args.compression_level)
    {
        eprintln!("error: --compression-level: {e}");
        return Ok(ExitCode::from(2));
    }
    let opts = CompactOptions {
        plan: PlanOptions::default(),
        replay,
        keep_history: args.keep_history,
        compression,
        compression_level: args.compression_level,
        compression_threads: args.compression_threads.unwrap_or(0),
        compression_buffer: budget_share(args.fetch.memory_budget, 4),
        compression_chunk: args.compression_chunk.unwrap_or(0),
        dry_run: args.dry_run,
        sort_budget: args
            .sort_budget
            .unwrap_or(budget_share(args.fetch.memory_budget, 4)),
        upload_buffer: budget_share(args.fetch.memory_budget, 4),
        temp_dir: config.temp_dir.clone(),
        created_on: None,
        publish_timeout: Some(args.compactor.etcd_snapshot_timeout),
        lock_ttl: args.lock_ttl,
        lock_retention_slack: args.lock_retention_slack,
    };
    let run = RunMetrics::start("compact");
    let ui = super::progress::ProgressUi::start(&progress, "compact");
    let report = compact(&store, &opts).await;
    drop(ui);
    run.finish(
        report.is_ok(),
        report.as_ref().ok().map(|r| r.fold.revision),
    );
    let extra = report.as_ref().map(|r| r.metrics()).unwrap_or_default();
    args.metrics.export(&run, store.describe(), &extra).await;
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            let code = match &e {
                CompactError::Level(_) => 2,
                CompactError::Exists { .. } => 3,
                CompactError::Verify { .. } => 4,
                CompactError::Locked { .. } | CompactError::LockLost { .. } => 5,
                _ => 1,
            };
            eprintln!(
                "error: compacting {}: {}",
                store.describe(),
                etcd_restore::show::error(&e)
            );
            return Ok(ExitCode::from(code));
        }
    };
    let snapshot_lease = match &lease {
        Some(l) if report.uploaded => Some(l.renew(&report.object, report.fold.revision).await),
        _ => None,
    };
    if args.json {
        #[derive(serde::Serialize)]
        struct Out<'a> {
            #[serde(flatten)]
            report: &'a CompactReport,
            #[serde(skip_serializing_if = "Option::is_none")]
            snapshot_lease: Option<LeaseOutcome>,
        }
        let out = Out {
            report: &report,
            snapshot_lease,
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print!("{}", render(&report));
    }
    // etcd-druid#648: the Job's metrics must stay scrapable for a while.
    let wait = args.compactor.metrics_scrape_wait_duration;
    if !wait.is_zero() {
        eprintln!("waiting {wait:?} (--metrics-scrape-wait-duration) before exiting");
        tokio::time::sleep(wait).await;
    }
    Ok(ExitCode::SUCCESS)
}

fn render(r: &CompactReport) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(s, "compacted {}", r.store);
    let _ = writeln!(
        s,
        "  input       {} + {} deltas ({} events folded), revision {}",
        r.replay.base,
        r.replay.deltas_applied.len(),
        r.replay.apply.events_applied,
        r.fold.revision
    );
    let _ = writeln!(
        s,
        "  records     {} in, {} out ({} keys){}",
        r.fold.records_in,
        r.fold.records_out,
        r.fold.keys,
        match r.fold.compact_revision {
            Some(c) => format!(", compacted at {c}"),
            None => ", history kept".into(),
        }
    );
    let _ = writeln!(
        s,
        "  output      {} ({} bytes, db {} bytes, sha256 {})",
        r.object, r.object_bytes, r.fold.bytes_out, r.db_sha256
    );
    let _ = writeln!(
        s,
        "  compression {}{} on {} thread(s)",
        r.compression,
        r.compression_level
            .map(|l| format!(" level {l}"))
            .unwrap_or_default(),
        r.compression_threads
    );
    let state = if r.dry_run {
        "dry run: nothing uploaded"
    } else if r.verified {
        "uploaded; the bytes sent hashed to what was written, published at that size"
    } else {
        "uploaded"
    };
    let _ = writeln!(s, "  state       {state}");
    let _ = writeln!(
        s,
        "  took        {:.2}s (replay {:.2}, fold {:.2}, pack {:.2}, upload {:.2})",
        r.seconds, r.seconds_replay, r.seconds_fold, r.seconds_pack, r.seconds_upload
    );
    s
}

/// `budget / parts` as a buffer size.
fn budget_share(budget: u64, parts: u64) -> usize {
    usize::try_from(budget / parts).unwrap_or(usize::MAX)
}
