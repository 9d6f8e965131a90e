//! `etcd-restore validate`: is a data directory fit for etcd to start on? Read-only unless
//! `--repair`. Exit codes (docs/validate.md): 0 valid, 2 usage or IO error, 3 corrupt,
//! 4 repairable torn WAL tail, 5 stale, 6 wrong volume.

use std::path::PathBuf;
use std::process::ExitCode;

use super::metrics::{MetricsArgs, RunMetrics};
use anyhow::Context as _;
use etcd_restore::batch::{Purpose, ValidateSettings, validate_batch};
use etcd_restore::snapstore::{PlanOptions, Store, StoreArgs, plan};

use super::batch::BatchArgs;
use etcd_restore::validate::{Mode, Options, Verdict, auto_mode, validate};

pub const EXIT_VALID: u8 = 0;
pub const EXIT_ERROR: u8 = 2;
pub const EXIT_CORRUPT: u8 = super::db::EXIT_CORRUPT;
pub const EXIT_REPAIRABLE: u8 = 4;
pub const EXIT_STALE: u8 = 5;
pub const EXIT_WRONG_VOLUME: u8 = 6;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModeArg {
    /// Structure, both meta pages, the database opens, WAL readable, revision vs the store.
    Sanity,
    /// Sanity plus the complete bbolt check, the WAL CRC chain, every .snap and HashKV.
    Full,
    /// Sanity when <data-dir>/exit_code (or ../exit_code) says `terminated` or
    /// `interrupt`, else full (etcd-wrapper's rule).
    Auto,
}

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Exit codes: 0 valid, 2 usage or IO error, 3 corrupt (restore needed), \
4 only a torn WAL tail (etcd cuts it at start-up; --repair does the same), \
5 stale (behind the store's latest snapshot), 6 wrong volume (safe_guard names another namespace)."
)]
pub struct ValidateArgs {
    /// The etcd data directory.
    #[arg(
        short = 'd',
        long,
        value_name = "DIR",
        required_unless_present = "batch",
        conflicts_with = "batch"
    )]
    data_dir: Option<PathBuf>,

    /// The WAL directory, when etcd runs with --wal-dir (default: <data-dir>/member/wal).
    #[arg(long, value_name = "DIR", conflicts_with = "batch")]
    wal_dir: Option<PathBuf>,

    #[command(flatten)]
    batch: BatchArgs,

    #[arg(long, value_enum, default_value = "full")]
    mode: ModeArg,

    /// The namespace `<data-dir>/../safe_guard` must name (default: $POD_NAMESPACE).
    #[arg(long, value_name = "NAME", env = "POD_NAMESPACE")]
    namespace: Option<String>,

    /// Cut a torn WAL tail off as etcd does, keeping a copy of the segment (`*.broken`).
    #[arg(long)]
    repair: bool,

    /// Machine-readable report (one JSON document on stdout).
    #[arg(long)]
    json: bool,

    #[command(flatten)]
    metrics: MetricsArgs,

    // Compared with: the latest snapshot revision of this backup store.
    #[command(flatten)]
    store: StoreArgs,
}

pub async fn run(args: ValidateArgs) -> anyhow::Result<ExitCode> {
    if let Some(path) = args.batch.batch.clone() {
        return match run_batch(&args, &path).await {
            Ok(code) => Ok(code),
            Err(e) => {
                eprintln!("error: {}", etcd_restore::show::causes(e.chain()));
                Ok(ExitCode::from(EXIT_ERROR))
            }
        };
    }
    let run = RunMetrics::start("validate");
    let metrics = args.metrics.clone();
    let store_label = args.store.store.clone().unwrap_or_default();
    let result = run_inner(args).await;
    let (code, revision) = match &result {
        Ok((code, revision)) => (*code, *revision),
        Err(_) => (EXIT_ERROR, None),
    };
    // etcdbrctl's meaning: the data directory was found valid (etcd may start on it).
    let valid = code == EXIT_VALID || code == EXIT_REPAIRABLE;
    run.registry.observe(
        "etcdbr_validation_duration_seconds",
        "Total latency distribution of validating data directory.",
        &[("succeeded", if valid { "true" } else { "false" })],
        run.elapsed(),
    );
    run.registry.set(
        "etcd_restore_validation_exit_code",
        "Exit code of the last validation (docs/validate.md: 0 valid, 3 corrupt, 4 repairable, 5 stale, 6 wrong volume, 2 error).",
        &[],
        f64::from(code),
    );
    run.finish(result.is_ok(), revision);
    metrics.export(&run, &store_label, "").await;
    if let Err(e) = result {
        eprintln!("error: {}", etcd_restore::show::causes(e.chain()));
    }
    Ok(ExitCode::from(code))
}

async fn store_revision(args: &StoreArgs) -> anyhow::Result<Option<i64>> {
    if args.store.is_none() && args.storage_provider.is_none() {
        return Ok(None);
    }
    let config = args.resolve()?;
    let store = Store::open(&config)?;
    let listing = store
        .list_snapshots()
        .await
        .with_context(|| format!("listing {}", store.describe()))?;
    if listing.snapshots.is_empty() {
        return Ok(None);
    }
    let p = plan(&listing.snapshots, PlanOptions::default())
        .with_context(|| format!("planning from {}", store.describe()))?;
    Ok(Some(p.target_revision))
}

async fn run_batch(args: &ValidateArgs, path: &std::path::Path) -> anyhow::Result<ExitCode> {
    let (batch, schedule) = match args.batch.load(path, Purpose::Validate, &args.store) {
        Ok(b) => b,
        Err(code) => return Ok(code),
    };
    let settings = ValidateSettings {
        mode: match args.mode {
            ModeArg::Sanity => Some(Mode::Sanity),
            ModeArg::Full => Some(Mode::Full),
            ModeArg::Auto => None,
        },
        namespace: args.namespace.clone().filter(|s| !s.is_empty()),
        repair: args.repair,
        use_store: true,
    };
    let run = RunMetrics::start("validate");
    let report = validate_batch(&batch, schedule, settings).await;
    super::batch::finish(&report, args.json, &args.metrics, run).await
}

/// The exit code and the database revision found.
async fn run_inner(args: ValidateArgs) -> anyhow::Result<(u8, Option<i64>)> {
    args.batch.check_single()?;
    let data_dir = args
        .data_dir
        .clone()
        .context("--data-dir is required without --batch")?;
    let (mode, mode_reason) = match args.mode {
        ModeArg::Sanity => (Mode::Sanity, "asked for".to_string()),
        ModeArg::Full => (Mode::Full, "asked for".to_string()),
        ModeArg::Auto => auto_mode(&data_dir),
    };
    let opts = Options {
        mode,
        mode_reason,
        namespace: args.namespace.clone().filter(|s| !s.is_empty()),
        store_revision: store_revision(&args.store).await?,
        repair: args.repair,
        wal_dir: args.wal_dir.clone(),
    };
    let report = tokio::task::spawn_blocking(move || validate(&data_dir, &opts)).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_text());
    }
    let code = match report.verdict {
        Verdict::Valid => EXIT_VALID,
        Verdict::Repairable => EXIT_REPAIRABLE,
        Verdict::Stale => EXIT_STALE,
        Verdict::Corrupt => EXIT_CORRUPT,
        Verdict::WrongVolume => EXIT_WRONG_VOLUME,
    };
    Ok((code, report.db_revision))
}
