//! `etcd-restore initialize`: etcdbrctl's `initialize` — validate the data directory and
//! restore it from the backups when it is missing, corrupt or behind them — as one short-lived
//! process, for an init container that must finish before etcd starts. The job is the one
//! `serve` runs behind `/initialization/start` (src/serve/init.rs).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use etcd_restore::replay::ReplayOptions;
use etcd_restore::serve::init::{InitConfig, InitError, Outcome, initialize};
use etcd_restore::snapstore::{FetchArgs, Store, StoreArgs};
use etcd_restore::validate::{Mode, auto_mode};

use super::metrics::{MetricsArgs, RunMetrics};
use super::restore::MemberArgs;
use super::validate::ModeArg;

pub const EXIT_FAILED: u8 = 1;
pub const EXIT_WRONG_VOLUME: u8 = super::validate::EXIT_WRONG_VOLUME;
pub const EXIT_LOCKED: u8 = 7;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Exit codes: 0 the data directory is fit for etcd (kept, restored, or \
removed because the store holds no snapshot so etcd starts empty), 1 failed (nothing half-done \
is left), 6 wrong volume (safe_guard names another namespace; untouched), 7 another process \
holds the database lock (untouched)."
)]
pub struct InitializeArgs {
    /// The etcd data directory.
    #[arg(short = 'd', long, value_name = "DIR", default_value = "default.etcd")]
    data_dir: PathBuf,

    /// How thoroughly to validate (auto: sanity after a clean shutdown recorded in
    /// `exit_code`, else full — etcd-wrapper's rule).
    #[arg(long, value_enum, default_value = "full", alias = "validation-mode")]
    mode: ModeArg,

    /// The namespace `<data-dir>/../safe_guard` must name (written when missing).
    #[arg(long, value_name = "NAME", env = "POD_NAMESPACE")]
    namespace: Option<String>,

    /// How long to wait for another process's lock on the database before failing.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    lock_timeout: u64,

    /// Which etcdutl/etcdctl output a restore reproduces byte for byte: 3.5 or 3.4.
    #[arg(long, value_name = "VERSION", default_value = "3.5", value_parser = ["3.4", "3.5"])]
    etcd_version: String,

    /// Machine-readable result on stdout.
    #[arg(long)]
    json: bool,

    #[command(flatten)]
    member: MemberArgs,

    #[command(flatten)]
    store: StoreArgs,

    #[command(flatten)]
    fetch: FetchArgs,

    #[command(flatten)]
    metrics: MetricsArgs,
}

#[derive(serde::Serialize)]
struct InitResult {
    data_dir: PathBuf,
    mode: &'static str,
    outcome: &'static str,
    detail: String,
    seconds: f64,
}

pub async fn run(args: InitializeArgs) -> anyhow::Result<ExitCode> {
    let run = RunMetrics::start("initialize");
    let (mode, mode_name) = match args.mode {
        ModeArg::Sanity => (Mode::Sanity, "sanity"),
        ModeArg::Full => (Mode::Full, "full"),
        ModeArg::Auto => match auto_mode(&args.data_dir).0 {
            Mode::Sanity => (Mode::Sanity, "sanity"),
            Mode::Full => (Mode::Full, "full"),
        },
    };
    let (store, temp_dir) = if args.store.store.is_none() && args.store.storage_provider.is_none() {
        (None, args.store.snapstore_temp_directory.clone())
    } else {
        let config = args.store.resolve()?;
        (Some(Store::open(&config)?), config.temp_dir.clone())
    };
    let store_label = store
        .as_ref()
        .map(|s| s.describe().to_string())
        .unwrap_or_default();
    let mut replay = ReplayOptions::new(temp_dir);
    replay.verify_hash = !args.fetch.skip_hash_check;
    replay.max_fetchers = args.fetch.max_fetchers as usize;
    let cfg = InitConfig {
        data_dir: args.data_dir.clone(),
        store,
        namespace: args.namespace.clone().filter(|s| !s.is_empty()),
        members: args.member.flags(),
        replay,
        flavor: if args.etcd_version == "3.4" {
            wal::RestoreFlavor::V3_4
        } else {
            wal::RestoreFlavor::V3_5
        },
        lock_timeout: Duration::from_secs(args.lock_timeout),
    };
    let result = initialize(&cfg, mode, &run.registry).await;
    let revision = match &result {
        Ok(Outcome::Restored { revision, .. }) => Some(*revision),
        _ => None,
    };
    run.finish(result.is_ok(), revision);
    args.metrics.export(&run, &store_label, "").await;

    let (code, outcome, detail) = match &result {
        Ok(Outcome::Kept(v)) => (0, "kept", format!("the data directory is {}", v.as_str())),
        Ok(Outcome::Restored { revision, because }) => (
            0,
            "restored",
            format!("restored to revision {revision} because {because}"),
        ),
        Ok(Outcome::Removed { because }) => (
            0,
            "removed",
            format!("removed (the store holds no snapshot) because {because}"),
        ),
        Ok(Outcome::Empty) => (
            0,
            "empty",
            "no data directory and nothing to restore".into(),
        ),
        Err(e @ InitError::WrongVolume(_)) => (EXIT_WRONG_VOLUME, "failed", e.to_string()),
        Err(e @ InitError::Locked { .. }) => (EXIT_LOCKED, "failed", e.to_string()),
        Err(e) => (EXIT_FAILED, "failed", e.to_string()),
    };
    if args.json {
        let r = InitResult {
            data_dir: args.data_dir.clone(),
            mode: mode_name,
            outcome,
            detail,
            seconds: run.elapsed(),
        };
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else if code == 0 {
        println!("{} ({mode_name}): {detail}", args.data_dir.display());
    } else {
        eprintln!("error: initializing {}: {detail}", args.data_dir.display());
    }
    Ok(ExitCode::from(code))
}
