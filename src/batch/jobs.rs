//! What restore, compact and validate do for one batch member, and the batch runs built on
//! them. Settings shared by every member come from the command line; per-member ones (store,
//! targets, point in time, codec) from the batch file.

use std::sync::Arc;

use crate::compact::{
    CompactOptions, DEFAULT_COMPRESSION_BUFFER, DEFAULT_LOCK_RETENTION_SLACK, DEFAULT_LOCK_TTL,
    DEFAULT_SORT_BUDGET, compact,
};
use crate::replay::ReplayOptions;
use crate::restore::{MemberFlags, RestoreOptions, Targets, restore};
use crate::snapstore::{PlanOptions, Store, plan};
use crate::validate::{Mode, Options, Verdict, auto_mode, validate};

use super::config::{Batch, Member, MemberTargets};
use super::report::BatchReport;
use super::run::{Done, Failure, Schedule, run};

/// Replay settings for every member (`spool_dir` is replaced by each member's temp dir).
#[derive(Clone, Debug)]
pub struct SharedReplay {
    pub verify_hash: bool,
    pub max_fetchers: usize,
    pub strip_leases: bool,
    pub keep_unknown_leases: bool,
    pub unknown_lease_ttl: Option<i64>,
    /// Each member's share of `--memory-budget`.
    pub memory_budget: u64,
    /// `--restoration-temp-snapshots-dir` (each member spools in its own directory inside).
    pub restoration_dir: Option<std::path::PathBuf>,
}

impl SharedReplay {
    fn for_member(&self, m: &Member) -> ReplayOptions {
        let mut r =
            ReplayOptions::new(m.store.temp_dir.clone()).with_memory_budget(self.memory_budget);
        r.verify_hash = self.verify_hash;
        r.max_fetchers = self.max_fetchers.max(1);
        r.strip_leases = self.strip_leases;
        r.keep_unknown_leases = self.keep_unknown_leases;
        r.unknown_lease_ttl = self.unknown_lease_ttl;
        r.restoration_dir = self.restoration_dir.clone();
        r
    }
}

#[derive(Clone, Debug)]
pub struct RestoreSettings {
    pub replay: SharedReplay,
    pub force: bool,
    pub flavor: wal::RestoreFlavor,
    /// `--bump-revision --mark-compacted`, for every member.
    pub bump: Option<crate::mvcc::bump::Bump>,
}

#[derive(Clone, Debug)]
pub struct CompactSettings {
    pub replay: SharedReplay,
    pub keep_history: bool,
    pub dry_run: bool,
    pub sort_budget: usize,
    /// `--compression-level`, checked against each member's codec when it runs.
    pub compression_level: Option<i32>,
    /// Compressing threads per member (0: one per core).
    pub compression_threads: usize,
    /// Bytes of compression buffers per member.
    pub compression_buffer: usize,
    /// Bytes per gzip member / zstd frame (0: the codec's default).
    pub compression_chunk: usize,
}

impl Default for CompactSettings {
    fn default() -> Self {
        CompactSettings {
            replay: SharedReplay {
                verify_hash: true,
                max_fetchers: 6,
                strip_leases: false,
                // The compacted snapshot must describe the same cluster: leases granted after
                // the base are granted in it too.
                keep_unknown_leases: false,
                unknown_lease_ttl: None,
                memory_budget: crate::snapstore::config::DEFAULT_MEMORY_BUDGET,
                restoration_dir: None,
            },
            keep_history: false,
            dry_run: false,
            sort_budget: DEFAULT_SORT_BUDGET,
            compression_level: None,
            compression_threads: 0,
            compression_buffer: DEFAULT_COMPRESSION_BUFFER,
            compression_chunk: 0,
        }
    }
}

#[derive(Clone, Debug)]
pub struct ValidateSettings {
    /// None: auto per data directory (etcd-wrapper's rule).
    pub mode: Option<Mode>,
    pub namespace: Option<String>,
    pub repair: bool,
    /// Compare with the member's store (stale check).
    pub use_store: bool,
}

fn detail<T: serde::Serialize>(r: &T) -> Option<serde_json::Value> {
    serde_json::to_value(r).ok()
}

/// Restores every member; each member's directories appear only when it succeeded.
pub async fn restore_batch(
    batch: &Batch,
    schedule: Schedule,
    settings: RestoreSettings,
) -> BatchReport {
    let settings = Arc::new(settings);
    run(batch, schedule, move |m| {
        restore_member(m, settings.clone())
    })
    .await
}

async fn restore_member(m: Member, s: Arc<RestoreSettings>) -> Result<Done, Failure> {
    let (targets, members) = match &m.targets {
        MemberTargets::One(dir) => (Targets::One(dir.clone()), MemberFlags::default()),
        MemberTargets::Set { flags, dirs } => (Targets::Each(dirs.clone()), flags.clone()),
        MemberTargets::None => {
            return Err(Failure::new("no data directory to restore into"));
        }
    };
    let store = Store::open(&m.store).map_err(Failure::new)?;
    let opts = RestoreOptions {
        targets,
        members,
        plan: m.plan,
        replay: s.replay.for_member(&m),
        force: s.force,
        flavor: s.flavor,
        bump: s.bump,
        wal_dir: None,
    };
    let r = restore(&store, &opts).await.map_err(Failure::new)?;
    Ok(Done {
        summary: format!(
            "revision {}{}, {} data dir(s), cluster {}",
            r.replay.final_revision,
            r.bumped
                .map(|b| format!(" bumped to {} and marked compacted", b.revision))
                .unwrap_or_default(),
            r.members.len(),
            r.cluster_id
        ),
        detail: detail(&r),
    })
}

/// Compacts every member's store into a new full snapshot.
pub async fn compact_batch(
    batch: &Batch,
    schedule: Schedule,
    settings: CompactSettings,
) -> BatchReport {
    let settings = Arc::new(settings);
    run(batch, schedule, move |m| {
        compact_member(m, settings.clone())
    })
    .await
}

async fn compact_member(m: Member, s: Arc<CompactSettings>) -> Result<Done, Failure> {
    let store = Store::open(&m.store).map_err(Failure::new)?;
    let opts = CompactOptions {
        // A compacted snapshot always folds everything: a point in time is restore's business.
        plan: PlanOptions::default(),
        replay: s.replay.for_member(&m),
        keep_history: s.keep_history,
        compression: m.compression,
        compression_level: s.compression_level,
        compression_threads: s.compression_threads,
        compression_buffer: s.compression_buffer,
        compression_chunk: s.compression_chunk,
        dry_run: s.dry_run,
        sort_budget: s.sort_budget,
        upload_buffer: usize::try_from(s.replay.memory_budget / 4).unwrap_or(usize::MAX),
        temp_dir: m.store.temp_dir.clone(),
        created_on: None,
        publish_timeout: None,
        lock_ttl: DEFAULT_LOCK_TTL,
        lock_retention_slack: DEFAULT_LOCK_RETENTION_SLACK,
    };
    let r = compact(&store, &opts).await.map_err(Failure::new)?;
    Ok(Done {
        summary: format!(
            "{} ({} bytes, revision {}){}",
            r.object,
            r.object_bytes,
            r.fold.revision,
            if r.dry_run { ", dry run" } else { "" }
        ),
        detail: detail(&r),
    })
}

/// Validates every data directory of every member; a member succeeds when all are valid.
pub async fn validate_batch(
    batch: &Batch,
    schedule: Schedule,
    settings: ValidateSettings,
) -> BatchReport {
    let settings = Arc::new(settings);
    run(batch, schedule, move |m| {
        validate_member(m, settings.clone())
    })
    .await
}

async fn validate_member(m: Member, s: Arc<ValidateSettings>) -> Result<Done, Failure> {
    let dirs = m.targets.dirs();
    if dirs.is_empty() {
        return Err(Failure::new("no data directory to validate"));
    }
    let store_revision = if s.use_store {
        store_revision(&m).await?
    } else {
        None
    };
    let mut reports = Vec::new();
    for dir in dirs {
        let (mode, mode_reason) = match s.mode {
            Some(mode) => (mode, "asked for".to_string()),
            None => auto_mode(&dir),
        };
        let opts = Options {
            mode,
            mode_reason,
            namespace: s.namespace.clone(),
            store_revision,
            repair: s.repair,
            wal_dir: None,
        };
        let report = tokio::task::spawn_blocking(move || validate(&dir, &opts))
            .await
            .map_err(|e| Failure::new(format!("validation task: {e}")))?;
        reports.push(report);
    }
    let summary = reports
        .iter()
        .map(|r| {
            format!(
                "{} {}{}",
                r.data_dir.file_name().unwrap_or_default().to_string_lossy(),
                r.verdict.as_str(),
                r.db_revision
                    .map(|v| format!(" (revision {v})"))
                    .unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let bad: Vec<String> = reports
        .iter()
        .filter(|r| r.verdict != Verdict::Valid)
        .map(|r| {
            let why = r
                .findings
                .iter()
                .find(|f| f.verdict == r.verdict)
                .map(|f| format!(": [{}] {}", f.check, f.reason))
                .unwrap_or_default();
            format!("{} is {}{why}", r.data_dir.display(), r.verdict.as_str())
        })
        .collect();
    let detail = detail(&reports);
    if bad.is_empty() {
        Ok(Done { summary, detail })
    } else {
        Err(Failure {
            error: bad.join("; "),
            summary,
            detail,
        })
    }
}

/// The revision the member's data dirs should have: its plan's target in its store.
async fn store_revision(m: &Member) -> Result<Option<i64>, Failure> {
    let store = Store::open(&m.store).map_err(Failure::new)?;
    let listing = store
        .list_snapshots()
        .await
        .map_err(|e| Failure::new(format!("listing {}: {e}", store.describe())))?;
    if listing.snapshots.is_empty() {
        return Ok(None);
    }
    let p = plan(&listing.snapshots, m.plan)
        .map_err(|e| Failure::new(format!("planning from {}: {e}", store.describe())))?;
    Ok(Some(p.target_revision))
}
