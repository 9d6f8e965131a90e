//! Initialization: the job behind `/initialization/start` — validate the data directory, then
//! restore it from the backups when it is missing, corrupt or behind them. The state machine
//! that runs it and answers `/initialization/status`: [`super::init_state`].
//!
//! The job never writes into the data directory in place: a restore builds a sibling staging
//! directory and swaps it in atomically ([`crate::datadir::Staging`]); a wrong volume, a lock
//! held by another process (a running etcd) or an unreadable store fail without touching it.
//!
//! In a multi-member cluster that runs, the member is not restored: it is (removed and)
//! added as a learner and gets its data from the leader ([`super::member`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::datadir::{self, Layout};
use crate::metrics::Registry;
use crate::replay::ReplayOptions;
use crate::restore::{MemberFlags, RestoreError, RestoreOptions, Targets, restore};
use crate::snapstore::{PlanError, PlanOptions, Store, StoreError, plan};
use crate::validate::{Mode, Options, Verdict, validate};

use super::member::{MemberControl, MemberError, Presence};

/// etcdbrctl's `mode` query value: `sanity`, anything else is `full`.
pub fn parse_mode(q: Option<&str>) -> Mode {
    match q {
        Some("sanity") => Mode::Sanity,
        _ => Mode::Full,
    }
}

/// What the job needs.
#[derive(Clone, Debug)]
pub struct InitConfig {
    pub data_dir: PathBuf,
    /// The backup store; `None`: nothing to compare with or restore from.
    pub store: Option<Store>,
    /// `$POD_NAMESPACE`: the `safe_guard` file beside the data directory must name it (it is
    /// created when missing, as etcdbrctl does).
    pub namespace: Option<String>,
    pub members: MemberFlags,
    pub replay: ReplayOptions,
    pub flavor: wal::RestoreFlavor,
    /// How long to wait for another process's lock on the database before failing.
    pub lock_timeout: Duration,
    /// How this member joins a running multi-member cluster (`None`: never asks etcd).
    pub member: Option<Arc<MemberControl>>,
}

/// What a successful initialization did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The data directory was fit (valid, or only a torn WAL tail etcd cuts itself).
    Kept(Verdict),
    /// Restored from the backups up to this revision.
    Restored { revision: i64, because: String },
    /// The store holds no snapshot: the unusable data directory was removed so etcd starts a
    /// new, empty member.
    Removed { because: String },
    /// No data directory and nothing to restore: etcd starts a new, empty member.
    Empty,
    /// The cluster runs: the data directory was removed and this member (re-)added as a
    /// learner, which gets its data from the leader.
    Learner { because: String },
}

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("wrong volume mounted: {0}; not touching it")]
    WrongVolume(String),
    #[error(
        "{}: another process holds the lock (is etcd still running on this data directory?); not touching it",
        path.display()
    )]
    Locked { path: PathBuf },
    #[error("listing the backup store: {0}")]
    Store(#[from] StoreError),
    #[error("planning a restore from the backup store: {0}")]
    Plan(#[from] PlanError),
    #[error("restoring: {0}")]
    Restore(Box<RestoreError>),
    #[error(
        "data directory {data_dir} is {verdict} and no backup store is configured to restore it from: {reason}"
    )]
    NoStore {
        data_dir: PathBuf,
        verdict: &'static str,
        reason: String,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the initialization task failed: {0}")]
    Task(String),
    #[error("joining the running cluster: {0}")]
    Member(#[from] MemberError),
}

impl From<RestoreError> for InitError {
    fn from(e: RestoreError) -> Self {
        InitError::Restore(Box::new(e))
    }
}

const VALIDATION: &str = "etcdbr_validation_duration_seconds";
const VALIDATION_HELP: &str = "Total latency distribution of validating data directory.";
const RESTORATION: &str = "etcdbr_restoration_duration_seconds";
const RESTORATION_HELP: &str = "Total latency distribution required to restore the etcd member.";
const INITIALIZATION: &str = "etcd_restore_initialization_duration_seconds";
const INITIALIZATION_HELP: &str =
    "Duration of initializations (validate, then restore when needed), by mode and result.";
const VERDICTS: &str = "etcd_restore_validation_verdicts_total";
const VERDICTS_HELP: &str = "Validation verdicts of initializations.";
const OUTCOMES: &str = "etcd_restore_initializations_total";
const OUTCOMES_HELP: &str = "Initializations by outcome (kept, restored, removed, empty, failed).";

fn tf(ok: bool) -> &'static str {
    if ok { "true" } else { "false" }
}

/// Runs one initialization.
pub async fn initialize(
    cfg: &InitConfig,
    mode: Mode,
    metrics: &Registry,
) -> Result<Outcome, InitError> {
    let t0 = Instant::now();
    let r = initialize_inner(cfg, mode, metrics).await;
    let mode_s = match mode {
        Mode::Sanity => "sanity",
        Mode::Full => "full",
    };
    let (result, outcome) = match &r {
        Ok(Outcome::Kept(_)) => ("successful", "kept"),
        Ok(Outcome::Restored { .. }) => ("successful", "restored"),
        Ok(Outcome::Removed { .. }) => ("successful", "removed"),
        Ok(Outcome::Empty) => ("successful", "empty"),
        Ok(Outcome::Learner { .. }) => ("successful", "learner"),
        Err(_) => ("failed", "failed"),
    };
    metrics.observe(
        INITIALIZATION,
        INITIALIZATION_HELP,
        &[("mode", mode_s), ("result", result)],
        t0.elapsed().as_secs_f64(),
    );
    metrics.inc(OUTCOMES, OUTCOMES_HELP, &[("outcome", outcome)]);
    r
}

async fn initialize_inner(
    cfg: &InitConfig,
    mode: Mode,
    metrics: &Registry,
) -> Result<Outcome, InitError> {
    let t0 = Instant::now();
    let validation_failed = |e: InitError| {
        metrics.observe(
            VALIDATION,
            VALIDATION_HELP,
            &[("succeeded", "false")],
            t0.elapsed().as_secs_f64(),
        );
        e
    };
    if let Some(ns) = &cfg.namespace {
        ensure_safe_guard(&cfg.data_dir, ns).map_err(validation_failed)?;
    }
    let lock_probe = {
        let db = Layout::new(&cfg.data_dir).db();
        let timeout = cfg.lock_timeout;
        tokio::task::spawn_blocking(move || probe_lock(&db, timeout))
            .await
            .map_err(|e| InitError::Task(e.to_string()))
    };
    lock_probe.and_then(|r| r).map_err(validation_failed)?;

    // A multi-member cluster (etcdbrctl's `Initialize`): a member the running cluster does
    // not list is a scale-up and joins as a learner without validation or restore.
    let multi = cfg.member.as_ref().filter(|m| m.is_multi_node());
    let mut listed = false;
    if let Some(m) = multi {
        match m.presence().await {
            Presence::Listed => listed = true,
            Presence::NotListed => {
                m.join_as_learner(&cfg.data_dir).await?;
                return Ok(Outcome::Learner {
                    because: "scale-up: the running cluster does not list this member".into(),
                });
            }
            Presence::Unknown(e) => {
                tracing::info!(error = %e, "cannot ask the cluster about this member (bootstrapping?); validating");
            }
        }
    }

    // The store's latest revision (etcdbrctl: last delta's, else the base's).
    let (store_revision, store_empty) = match &cfg.store {
        None => (None, false),
        Some(store) => {
            let listing = store
                .list_snapshots()
                .await
                .map_err(|e| validation_failed(e.into()))?;
            if listing.snapshots.is_empty() {
                (None, true)
            } else {
                let p = plan(&listing.snapshots, PlanOptions::default())
                    .map_err(|e| validation_failed(e.into()))?;
                (Some(p.target_revision), false)
            }
        }
    };
    let opts = Options {
        mode,
        mode_reason: "requested by /initialization/start".into(),
        namespace: cfg.namespace.clone(),
        // A member of a multi-member cluster catches up from the leader, not the store.
        store_revision: if multi.is_some() {
            None
        } else {
            store_revision
        },
        // etcd cuts a torn WAL tail itself at start-up; the data directory stays untouched.
        repair: false,
        wal_dir: None,
    };
    let dir = cfg.data_dir.clone();
    let report = tokio::task::spawn_blocking(move || validate(&dir, &opts))
        .await
        .map_err(|e| validation_failed(InitError::Task(e.to_string())))?;
    let reason = report
        .findings
        .iter()
        .find(|f| f.verdict == report.verdict)
        .map(|f| {
            let file = f
                .file
                .as_ref()
                .map(|p| format!("{}: ", p.display()))
                .unwrap_or_default();
            format!("[{}] {file}{}", f.check, f.reason)
        })
        .unwrap_or_default();
    metrics.inc(
        VERDICTS,
        VERDICTS_HELP,
        &[
            ("verdict", report.verdict.as_str()),
            (
                "mode",
                match mode {
                    Mode::Sanity => "sanity",
                    Mode::Full => "full",
                },
            ),
        ],
    );
    if report.verdict == Verdict::WrongVolume {
        return Err(validation_failed(InitError::WrongVolume(reason)));
    }
    metrics.observe(
        VALIDATION,
        VALIDATION_HELP,
        &[("succeeded", "true")],
        t0.elapsed().as_secs_f64(),
    );
    tracing::info!(
        data_dir = %cfg.data_dir.display(),
        verdict = report.verdict.as_str(),
        reason = %reason,
        "validated"
    );
    if matches!(report.verdict, Verdict::Valid | Verdict::Repairable) {
        return Ok(Outcome::Kept(report.verdict));
    }
    let missing = datadir::is_missing_or_empty(&cfg.data_dir).map_err(|e| InitError::Io {
        path: cfg.data_dir.clone(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let because = format!("{}: {reason}", report.verdict.as_str());
    // etcdbrctl's `DataDirStatusInvalidInMultiNode` (an unusable data directory and a
    // non-empty store), a corrupt one, or a listed member: remove, re-add as a learner.
    if let Some(m) = multi
        && (listed
            || (!missing && report.verdict == Verdict::Corrupt)
            || (cfg.store.is_some() && !store_empty))
    {
        m.rejoin(&cfg.data_dir).await?;
        return Ok(Outcome::Learner { because });
    }
    let Some(store) = &cfg.store else {
        if missing {
            return Ok(Outcome::Empty);
        }
        return Err(InitError::NoStore {
            data_dir: cfg.data_dir.clone(),
            verdict: report.verdict.as_str(),
            reason,
        });
    };
    if store_empty {
        if missing {
            return Ok(Outcome::Empty);
        }
        remove_data_dir(&cfg.data_dir)?;
        tracing::warn!(data_dir = %cfg.data_dir.display(), %because, "the store holds no snapshot: removed the data directory, etcd starts empty");
        return Ok(Outcome::Removed { because });
    }
    let t1 = Instant::now();
    let ropts = RestoreOptions {
        targets: Targets::One(cfg.data_dir.clone()),
        members: cfg.members.clone(),
        plan: PlanOptions::default(),
        replay: cfg.replay.clone(),
        force: true,
        flavor: cfg.flavor,
        bump: None,
        wal_dir: None,
    };
    let r = restore(store, &ropts).await;
    metrics.observe(
        RESTORATION,
        RESTORATION_HELP,
        &[("restore", "single_node"), ("succeeded", tf(r.is_ok()))],
        t1.elapsed().as_secs_f64(),
    );
    let report = r?;
    tracing::info!(
        data_dir = %cfg.data_dir.display(),
        revision = report.replay.final_revision,
        seconds = report.seconds,
        %because,
        "restored"
    );
    Ok(Outcome::Restored {
        revision: report.replay.final_revision,
        because,
    })
}

/// etcdbrctl's guard: `<parent of data dir>/safe_guard` holds the namespace; written when
/// missing, compared by `validate` otherwise.
fn ensure_safe_guard(data_dir: &Path, namespace: &str) -> Result<(), InitError> {
    let Some(parent) = data_dir.parent().filter(|p| !p.as_os_str().is_empty()) else {
        return Ok(());
    };
    let p = parent.join("safe_guard");
    if p.exists() {
        return Ok(());
    }
    let io = |source| InitError::Io {
        path: p.clone(),
        source,
    };
    std::fs::create_dir_all(parent).map_err(io)?;
    std::fs::write(&p, namespace).map_err(io)?;
    Ok(())
}

/// Fails when another process (etcd) holds bbolt's lock on the database for `timeout`.
fn probe_lock(db: &Path, timeout: Duration) -> Result<(), InitError> {
    let f = match std::fs::File::open(db) {
        Ok(f) => f,
        // Missing or unreadable: validation reports it.
        Err(_) => return Ok(()),
    };
    let start = Instant::now();
    loop {
        match f.try_lock_shared() {
            Ok(()) => return Ok(()),
            Err(std::fs::TryLockError::WouldBlock) => {
                if start.elapsed() >= timeout {
                    return Err(InitError::Locked {
                        path: db.to_path_buf(),
                    });
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(InitError::Io {
                    path: db.to_path_buf(),
                    source,
                });
            }
        }
    }
}

/// Moves the directory aside atomically, then deletes it.
fn remove_data_dir(dir: &Path) -> Result<(), InitError> {
    datadir::remove_dir_atomically(dir).map_err(|(path, source)| InitError::Io { path, source })
}
