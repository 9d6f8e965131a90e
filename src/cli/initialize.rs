//! `etcd-restore initialize`: etcdbrctl's `initialize` — validate the data directory and
//! restore it from the backups when it is missing, corrupt or behind them — as one short-lived
//! process, for an init container that must finish before etcd starts. The job is the one
//! `serve` runs behind `/initialization/start` (src/serve/init.rs).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use etcd_restore::replay::ReplayOptions;
use etcd_restore::serve::init::{InitConfig, InitError, Outcome, initialize};
use etcd_restore::snapstore::{Backend, FetchArgs, Store, StoreArgs};
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
    /// How thoroughly to validate (auto: sanity after a clean shutdown recorded in
    /// `exit_code`, else full — etcd-wrapper's rule).
    #[arg(long, value_enum, default_value = "full", alias = "validation-mode")]
    mode: ModeArg,

    /// Machine-readable result on stdout.
    #[arg(long)]
    json: bool,

    #[command(flatten)]
    job: InitJobArgs,

    #[command(flatten)]
    metrics: MetricsArgs,
}

/// What the validate-then-restore job needs; shared by `initialize` and `serve`.
#[derive(clap::Args, Debug)]
pub struct InitJobArgs {
    /// The etcd data directory to validate and, when needed, restore.
    #[arg(short = 'd', long, value_name = "DIR", default_value = "default.etcd")]
    pub data_dir: PathBuf,

    /// The namespace `<data-dir>/../safe_guard` must name (written when missing); a
    /// mismatch fails initialization without touching the data directory.
    #[arg(long, value_name = "NAME", env = "POD_NAMESPACE")]
    namespace: Option<String>,

    /// How long to wait for another process's lock on the database (a running etcd) before
    /// failing the initialization.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    lock_timeout: u64,

    /// Which etcdutl/etcdctl output a restore reproduces byte for byte: 3.5 (also read by
    /// 3.4) or 3.4.
    #[arg(long, value_name = "VERSION", default_value = "3.5", value_parser = ["3.4", "3.5"])]
    etcd_version: String,

    /// Remove the lease from every restored key, like etcdbrctl (see `restore --help`).
    #[arg(long)]
    strip_leases: bool,

    /// Keep lease IDs the base snapshot does not know, granting no lease (see `restore --help`).
    #[arg(long, conflicts_with = "strip_leases")]
    keep_unknown_leases: bool,

    /// TTL of the leases granted after the base snapshot (see `restore --help`).
    #[arg(long, value_name = "DURATION", value_parser = super::parse_ttl, conflicts_with_all = ["strip_leases", "keep_unknown_leases"])]
    unknown_lease_ttl: Option<i64>,

    #[command(flatten)]
    member: MemberArgs,

    #[command(flatten)]
    store: StoreArgs,

    #[command(flatten)]
    fetch: FetchArgs,
}

/// The job's configuration, and how its store is named in `/snapshot/latest` and metrics.
pub struct PreparedJob {
    pub config: InitConfig,
    /// etcdbrctl's `prefix` field: the local root or the prefix inside the bucket.
    pub store_prefix: String,
    pub store_label: String,
}

impl InitJobArgs {
    pub fn prepare(&self) -> anyhow::Result<PreparedJob> {
        let (store, store_prefix, temp_dir) =
            if self.store.store.is_none() && self.store.storage_provider.is_none() {
                (
                    None,
                    String::new(),
                    self.store.snapstore_temp_directory.clone(),
                )
            } else {
                let config = self.store.resolve()?;
                let store = Store::open(&config)?;
                let prefix = match &config.backend {
                    Backend::Local { root } => root.display().to_string(),
                    _ => config.prefix.clone(),
                };
                (Some(store), prefix, config.temp_dir.clone())
            };
        let store_label = store
            .as_ref()
            .map(|s| s.describe().to_string())
            .unwrap_or_default();
        let mut replay = ReplayOptions::new(temp_dir).with_memory_budget(self.fetch.memory_budget);
        replay.verify_hash = !self.fetch.skip_hash_check;
        replay.max_fetchers = self.fetch.max_fetchers as usize;
        replay.strip_leases = self.strip_leases;
        replay.keep_unknown_leases = self.keep_unknown_leases;
        replay.unknown_lease_ttl = self.unknown_lease_ttl;
        let config = InitConfig {
            data_dir: self.data_dir.clone(),
            store,
            namespace: self.namespace.clone().filter(|s| !s.is_empty()),
            members: self.member.flags(),
            replay,
            flavor: if self.etcd_version == "3.4" {
                wal::RestoreFlavor::V3_4
            } else {
                wal::RestoreFlavor::V3_5
            },
            lock_timeout: Duration::from_secs(self.lock_timeout),
            member: None,
        };
        Ok(PreparedJob {
            config,
            store_prefix,
            store_label,
        })
    }
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
        ModeArg::Auto => match auto_mode(&args.job.data_dir).0 {
            Mode::Sanity => (Mode::Sanity, "sanity"),
            Mode::Full => (Mode::Full, "full"),
        },
    };
    let job = args.job.prepare()?;
    let (cfg, store_label) = (job.config, job.store_label);
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
        Ok(Outcome::Learner { because }) => (
            0,
            "learner",
            format!("joined the running cluster as a learner because {because}"),
        ),
        Err(e @ InitError::WrongVolume(_)) => (EXIT_WRONG_VOLUME, "failed", e.to_string()),
        Err(e @ InitError::Locked { .. }) => (EXIT_LOCKED, "failed", e.to_string()),
        Err(e) => (EXIT_FAILED, "failed", e.to_string()),
    };
    if args.json {
        let r = InitResult {
            data_dir: args.job.data_dir.clone(),
            mode: mode_name,
            outcome,
            detail,
            seconds: run.elapsed(),
        };
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else if code == 0 {
        println!("{} ({mode_name}): {detail}", args.job.data_dir.display());
    } else {
        eprintln!(
            "error: initializing {}: {detail}",
            args.job.data_dir.display()
        );
    }
    Ok(ExitCode::from(code))
}
