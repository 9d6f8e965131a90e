//! Builds the database a plan describes: the base snapshot's bbolt file with every planned
//! delta applied as etcd's MVCC records. Shared by restore (which then adds membership, WAL and
//! `.snap`) and compact (which then compacts history and bulk-loads a new file).
//!
//! Data flows one way: the prefetcher downloads and decompresses deltas on the async side, the
//! decode thread ([`decode`]) turns them into owned batches of events, and a bounded channel
//! hands those to the apply thread, which writes them into a bbolt write transaction,
//! committing every `batch_bytes` at a revision boundary.

mod decode;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use bbolt::{Db, FreeSpace, OpenOptions, WriteTx};

use crate::mvcc::apply::{
    Applier, ApplyError, ApplyStats, BaseLookup, LeasePolicy, RecordSink, UnknownLeases,
};
use crate::mvcc::kv::Lease;
use crate::progress::{Phase, Progress};
use crate::snapstore::{self, DeltaError, Plan, PlannedDelta, PrefetchOptions, Prefetcher, Store};

use decode::Decoded;

use crate::backend::{BaseStateError, BucketScan, read_base_state};
pub use crate::backend::{KEY_BUCKET, LEASE_BUCKET, META_BUCKET};
/// etcd writes the `key` bucket with this fill percent (sequential revision keys).
pub const KEY_FILL_PERCENT: f64 = 0.9;
/// TTL of a granted lease when the base has no lease to take the longest TTL from: the TTL
/// of the Kubernetes API server's Event leases (`--event-ttl`, 1 h), the commonest lease.
pub const DEFAULT_UNKNOWN_LEASE_TTL: i64 = 3600;

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Fetch(#[from] snapstore::FetchError),
    #[error(transparent)]
    Plan(#[from] snapstore::PlanError),
    #[error("base snapshot {object}: {source}")]
    BaseDb {
        object: String,
        #[source]
        source: bbolt::Error,
    },
    #[error(transparent)]
    BaseState(#[from] BaseStateError),
    #[error("{object}: {source}")]
    Delta {
        object: String,
        // Boxed: the decode error carries the offending event, which would make every
        // `Result<_, ReplayError>` on the hot path that much larger.
        #[source]
        source: Box<snapstore::DeltaError<ApplyError>>,
    },
    #[error("after applying the deltas: {0}")]
    Verify(#[source] ApplyError),
    #[error("writing the database {path}: {source}")]
    Db {
        path: PathBuf,
        #[source]
        source: bbolt::Error,
    },
    #[error("the apply thread stopped unexpectedly: {0}")]
    Thread(String),
}

/// Knobs of a replay.
#[derive(Clone, Debug)]
pub struct ReplayOptions {
    pub verify_hash: bool,
    pub strip_leases: bool,
    /// Keep the IDs of leases granted after the base but grant no lease
    /// ([`UnknownLeases::KeepId`]); by default they are granted.
    pub keep_unknown_leases: bool,
    /// TTL (seconds) of the leases granted for keys whose lease the base does not have;
    /// default: the base's longest lease TTL, or [`DEFAULT_UNKNOWN_LEASE_TTL`].
    pub unknown_lease_ttl: Option<i64>,
    pub max_fetchers: usize,
    /// Where large deltas are spooled while waiting to be applied.
    pub spool_dir: PathBuf,
    /// `--restoration-temp-snapshots-dir`: restore and compact spool in a fresh directory
    /// inside it (created when missing) instead of their own work directory.
    pub restoration_dir: Option<PathBuf>,
    /// Commit after this many bytes of new records (at a revision boundary).
    pub batch_bytes: usize,
    /// Bytes of per-key history state the applier keeps in memory before spilling the rest
    /// to a scratch file in `spool_dir`.
    pub key_state_bytes: usize,
    /// Skip fdatasync inside the build (the caller fsyncs the finished file once).
    pub no_sync: bool,
    /// Counters for a progress display.
    pub progress: Option<Arc<Progress>>,
}

impl ReplayOptions {
    /// Sizes the in-memory parts of a replay from a memory budget (`--memory-budget`): an
    /// eighth for per-key state, a sixteenth for the open commit batch. The rest is for what
    /// does not scale with the budget: the mapped program and database pages (8 MiB
    /// windows), prefetched deltas (at most a MiB each in memory), the runtime.
    pub fn with_memory_budget(mut self, budget: u64) -> Self {
        let b = usize::try_from(budget).unwrap_or(usize::MAX);
        self.key_state_bytes = b / 8;
        self.batch_bytes = b / 16;
        self
    }

    pub fn new(spool_dir: PathBuf) -> Self {
        Self {
            verify_hash: true,
            strip_leases: false,
            keep_unknown_leases: false,
            unknown_lease_ttl: None,
            max_fetchers: 6,
            spool_dir,
            restoration_dir: None,
            // The open transaction holds its records and their nodes on the heap; 4 MiB keeps
            // restore's peak RSS low at a few more (unsynced, append-only) commits.
            batch_bytes: 4 << 20,
            key_state_bytes: 8 << 20,
            no_sync: true,
            progress: None,
        }
    }
}

/// What a replay did, for the report.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ReplayReport {
    pub base: String,
    /// Revision in the base's name.
    pub base_name_revision: i64,
    /// Highest revision inside the base's database (can exceed the name: upstream 1044).
    pub base_db_revision: i64,
    pub base_db_bytes: u64,
    pub base_object_bytes: u64,
    pub base_hash_verified: bool,
    pub deltas_applied: Vec<String>,
    pub deltas_skipped: Vec<String>,
    pub delta_object_bytes: u64,
    pub delta_json_bytes: u64,
    /// The revision the database reaches.
    pub final_revision: i64,
    #[serde(flatten)]
    pub apply: ApplyStats,
    pub commits: u64,
    pub seconds_fetching_base: f64,
    pub seconds_applying: f64,
}

/// Downloads the base into `db_path` (which must not exist) and applies the plan's deltas.
pub async fn replay(
    store: &Store,
    plan: &mut Plan,
    db_path: &Path,
    opts: &ReplayOptions,
) -> Result<ReplayReport, ReplayError> {
    let t0 = Instant::now();
    let base_object = plan.base.path.clone();
    let progress = opts.progress.clone().unwrap_or_default();
    progress.set_phase(Phase::Base);
    progress.set_deltas_total(plan.deltas.len() as u64);
    // The deltas download, decompress and decode (on the other cores) while the base does.
    let runtime = tokio::runtime::Handle::current();
    let early = decode::spawn(
        Prefetcher::new(
            store.clone(),
            plan.deltas.clone(),
            PrefetchOptions::new(opts.max_fetchers, opts.spool_dir.clone()),
        ),
        runtime.clone(),
    )?;
    let info = snapstore::fetch_full_with_progress(
        store,
        &plan.base,
        db_path,
        opts.verify_hash,
        Some(progress.clone()),
    )
    .await?;
    // etcd keeps its db private; the download was created with the process umask.
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(
            db_path,
            std::fs::Permissions::from_mode(crate::datadir::FILE_MODE),
        );
    }
    tracing::info!(object = %base_object, bytes = info.db_size, hash_verified = info.hash_verified, "base snapshot downloaded");
    let mut report = ReplayReport {
        base: base_object.clone(),
        base_name_revision: plan.base.last_revision(),
        base_db_bytes: info.db_size,
        base_object_bytes: info.object_size,
        base_hash_verified: info.hash_verified,
        seconds_fetching_base: t0.elapsed().as_secs_f64(),
        ..Default::default()
    };

    let base_db = |source| ReplayError::BaseDb {
        object: base_object.clone(),
        source,
    };
    let db = Db::open(
        db_path,
        OpenOptions {
            free_space: FreeSpace::AppendOnly,
            no_sync: opts.no_sync,
            // Mapped pages count in RSS; the base is read in a few sequential scans, so a
            // smaller window costs only more (cheap) MADV_DONTNEED calls.
            mapped_budget: 4 << 20,
            // The applier commits every `batch_bytes`: keeping the last commit's buffers for
            // the next spares each one faulting in fresh memory (about a tenth of a restore's
            // CPU). Counted in the memory budget as the commit batch's second half.
            keep_buffers: 2 * opts.batch_bytes,
            ..Default::default()
        },
    )
    .map_err(base_db)?;
    let base = read_base_state(&db, &base_object)?;
    let base_rev = base.revision;
    report.base_db_revision = base_rev;
    progress.set_revision(base_rev);
    progress.set_phase(Phase::Deltas);
    let planned_deltas = plan.deltas.len();
    plan.apply_base_revision(base_rev)?;
    report.deltas_skipped = plan
        .skipped
        .iter()
        .map(|s| format!("{} ({})", s.snapshot.path, s.reason))
        .collect();

    let t1 = Instant::now();
    let policy = LeasePolicy {
        known: base.leases,
        strip_all: opts.strip_leases,
        unknown: if opts.keep_unknown_leases {
            UnknownLeases::KeepId
        } else {
            UnknownLeases::Grant
        },
    };
    // The longest TTL the cluster used: no granted lease runs out before the source's could
    // have, and a key of a shorter lease lives at most that much longer.
    let lease_ttl = opts
        .unknown_lease_ttl
        .or(base.max_lease_ttl.filter(|&t| t > 0))
        .unwrap_or(DEFAULT_UNKNOWN_LEASE_TTL);
    // A base newer than its name (upstream 1044) covers some deltas: those must be neither
    // applied nor even fetched (a damaged covered delta is no reason to fail), so start over
    // with the deltas that remain. Otherwise the early downloads are the plan's.
    let decoded = if plan.deltas.len() == planned_deltas {
        early
    } else {
        drop(early);
        decode::spawn(
            Prefetcher::new(
                store.clone(),
                plan.deltas.clone(),
                PrefetchOptions::new(opts.max_fetchers, opts.spool_dir.clone()),
            ),
            runtime,
        )?
    };
    let job = ApplyJob {
        base_rev,
        policy,
        stop_at: plan.stop_at_revision,
        // apply_base_revision may have raised a delta's skip-through revision.
        planned: plan.deltas.clone(),
        batch_bytes: opts.batch_bytes,
        key_state_bytes: opts.key_state_bytes,
        lease_ttl,
        spool_dir: opts.spool_dir.clone(),
        path: db_path.to_path_buf(),
        progress,
    };
    let worker = std::thread::Builder::new()
        .name("apply".into())
        .spawn(move || apply_all(db, job, decoded))
        .map_err(|e| ReplayError::Thread(e.to_string()))?;
    let outcome = tokio::task::spawn_blocking(move || worker.join())
        .await
        .map_err(|e| ReplayError::Thread(e.to_string()))?
        .map_err(|_| ReplayError::Thread("the apply thread panicked".into()))?;
    let Applied {
        stats,
        final_revision,
        commits,
        deltas,
    } = outcome?;
    for d in deltas {
        report.delta_object_bytes += d.object_size;
        report.delta_json_bytes += d.json_bytes;
        report.deltas_applied.push(d.object);
    }
    report.apply = stats;
    report.final_revision = final_revision;
    report.commits = commits;
    report.seconds_applying = t1.elapsed().as_secs_f64();
    Ok(report)
}

/// A bbolt write transaction as the applier's record sink, committing in batches.
struct DbSink<'db> {
    db: &'db Db,
    tx: Option<WriteTx<'db>>,
    pending: usize,
    batch_bytes: usize,
    commits: u64,
}

impl<'db> DbSink<'db> {
    fn tx(&mut self) -> Result<&mut WriteTx<'db>, bbolt::Error> {
        if self.tx.is_none() {
            let mut tx = self.db.begin_write()?;
            tx.create_bucket_if_not_exists(KEY_BUCKET)?;
            self.tx = Some(tx);
        }
        match self.tx.as_mut() {
            Some(tx) => Ok(tx),
            None => unreachable!("set above"),
        }
    }

    fn commit(&mut self) -> Result<(), bbolt::Error> {
        if let Some(tx) = self.tx.take() {
            tx.commit()?;
            self.commits += 1;
        }
        self.pending = 0;
        Ok(())
    }
}

fn key_bucket<'t>(tx: &'t mut WriteTx<'_>) -> Result<bbolt::BucketMut<'t>, bbolt::Error> {
    let mut b = tx.create_bucket_if_not_exists(KEY_BUCKET)?;
    b.set_fill_percent(KEY_FILL_PERCENT);
    Ok(b)
}

impl RecordSink for DbSink<'_> {
    type Error = bbolt::Error;
    fn put(&mut self, rev_key: &[u8], value: &[u8]) -> Result<(), bbolt::Error> {
        key_bucket(self.tx()?)?.put(rev_key, value)?;
        self.pending += rev_key.len() + value.len();
        Ok(())
    }
    fn end_revision(&mut self, _main: i64) -> Result<(), bbolt::Error> {
        if self.pending >= self.batch_bytes {
            self.commit()?;
        }
        Ok(())
    }
}

impl BaseLookup for DbSink<'_> {
    type Error = bbolt::Error;
    fn get(&mut self, rev_key: &[u8]) -> Result<Option<Vec<u8>>, bbolt::Error> {
        Ok(key_bucket(self.tx()?)?.get(rev_key)?.map(<[u8]>::to_vec))
    }
}

/// What the apply thread did.
struct Applied {
    stats: ApplyStats,
    final_revision: i64,
    commits: u64,
    deltas: Vec<decode::DeltaDone>,
}

/// What the apply thread needs besides the database and the deltas.
struct ApplyJob {
    base_rev: i64,
    policy: LeasePolicy,
    stop_at: Option<i64>,
    planned: Vec<PlannedDelta>,
    batch_bytes: usize,
    key_state_bytes: usize,
    /// TTL of the leases granted for keys whose lease the base does not have.
    lease_ttl: i64,
    spool_dir: PathBuf,
    path: PathBuf,
    progress: Arc<Progress>,
}

fn apply_all(db: Db, job: ApplyJob, rx: decode::Stage) -> Result<Applied, ReplayError> {
    let ApplyJob {
        base_rev,
        policy,
        stop_at,
        planned,
        batch_bytes,
        key_state_bytes,
        lease_ttl,
        spool_dir,
        path,
        progress,
    } = job;
    let grant = !policy.strip_all && policy.unknown == UnknownLeases::Grant;
    let db_err = |source| ReplayError::Db {
        path: path.clone(),
        source,
    };
    let mut applier = Applier::new(base_rev, policy).bound_memory(key_state_bytes, &spool_dir);
    let mut sink = DbSink {
        db: &db,
        tx: None,
        pending: 0,
        batch_bytes,
        commits: 0,
    };
    let mut deltas = Vec::with_capacity(planned.len());
    loop {
        let batch = match rx.recv() {
            Ok(Decoded::Batch(b)) => b,
            Ok(Decoded::DeltaDone(d)) => {
                tracing::info!(object = %d.object, revision = applier.current_revision(), "delta applied");
                progress.delta_done(applier.current_revision());
                deltas.push(d);
                continue;
            }
            Ok(Decoded::Failed(e)) => return Err(e),
            Ok(Decoded::End) => break,
            Err(_) => {
                return Err(ReplayError::Thread(
                    "the decode thread stopped unexpectedly".into(),
                ));
            }
        };
        let Some(delta) = planned.get(batch.delta) else {
            return Err(ReplayError::Thread(format!(
                "the decode thread sent delta {} of a plan of {}",
                batch.delta,
                planned.len()
            )));
        };
        // Events the plan already covers through another delta (overlaps, upstream 1043) were
        // compared by the prefetcher; events at or below the base are checked by the applier.
        let skip_through = delta.skip_through_revision.unwrap_or(0);
        for (index, ev) in batch.events() {
            if stop_at.is_some_and(|s| ev.mod_revision > s) {
                continue;
            }
            if ev.mod_revision <= skip_through && ev.mod_revision > base_rev {
                continue;
            }
            applier.apply(&ev, &mut sink).map_err(|source| {
                let object = delta.snapshot.path.clone();
                ReplayError::Delta {
                    source: Box::new(DeltaError::Callback {
                        object: object.clone(),
                        index,
                        revision: ev.mod_revision,
                        source,
                    }),
                    object,
                }
            })?;
        }
        rx.recycle(batch);
    }
    progress.set_phase(Phase::Verifying);
    applier.finish(&mut sink).map_err(ReplayError::Verify)?;
    sink.commit().map_err(db_err)?;
    let commits = sink.commits;

    // One sequential pass over the base's records checks what the deltas assumed about keys
    // that existed before them.
    {
        let tx = db.begin_read();
        if let Some(b) = tx.bucket(KEY_BUCKET).map_err(db_err)? {
            applier
                .verify_base(BucketScan::new(b.cursor()))
                .map_err(ReplayError::Verify)?;
        }
    }
    let mut stats = applier.stats();
    if grant {
        let leases = applier.unknown_leases().map_err(ReplayError::Verify)?;
        if !leases.is_empty() {
            let mut tx = db.begin_write().map_err(db_err)?;
            let mut b = tx
                .create_bucket_if_not_exists(LEASE_BUCKET)
                .map_err(db_err)?;
            let mut buf = Vec::new();
            for &id in &leases {
                buf.clear();
                Lease {
                    id,
                    ttl: lease_ttl,
                    remaining_ttl: 0,
                }
                .encode(&mut buf);
                b.put(&id.to_be_bytes(), &buf).map_err(db_err)?;
            }
            tx.commit().map_err(db_err)?;
            tracing::info!(
                leases = leases.len(),
                ttl = lease_ttl,
                "granted the leases the base snapshot does not have"
            );
        }
        stats.leases_granted = leases.len() as u64;
    }
    Ok(Applied {
        stats,
        final_revision: applier.current_revision(),
        commits: commits + u64::from(stats.leases_granted > 0),
        deltas,
    })
}
