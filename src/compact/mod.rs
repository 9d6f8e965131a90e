//! `compact`: fold a store's base and deltas into one new full snapshot, without etcd.
//!
//! 1. replay the plan (base + deltas) into a scratch bbolt file ([`crate::replay`]);
//! 2. [`fold`]: pass 1 over the `key` bucket feeds (user key, revision, tombstone) into an
//!    external sort ([`sort`]) by user key; the merged stream goes through etcd's compaction
//!    rule ([`crate::mvcc::compact`]), and the kept revisions go into a second external sort
//!    by revision; pass 2 walks the `key` bucket and the kept revisions together and
//!    bulk-loads the kept records into a new, defragmented file (fill 0.9, no freelist, like
//!    etcd's defrag); every other bucket is copied as it is, `meta` gets the compaction
//!    revisions;
//! 3. [`pack`]: one read of that file hashes it, appends etcd's sha256 trailer and compresses
//!    it on every core (gzip members / zstd frames, [`crate::snapstore::codec`]), hashing the
//!    compressed bytes as they are written;
//! 4. [`upload`]: the packed file goes to a temporary object that is not a snapshot name
//!    (`v2/.etcd-restore-upload-<pid>-<name>`, ignored by listing and planning), hashed again
//!    as it is sent and compared with what was written before anything is published, is copied
//!    create-only to `Full-00000000-<rev>-<unix><ext>`, and the published object's size is
//!    checked. Nothing is downloaded again: the db hash is taken from the bytes that were
//!    compressed, and the object is known to be those compressed bytes.
//!
//! A run that dies leaves at most a temporary object and a work directory
//! (`.etcd-restore-compact-<pid>-*` in the temp directory); the next run removes both.
//!
//! Memory does not depend on the database: the sorts spill runs of `sort_budget` bytes to disk,
//! the source is read through a bounded mapping, the bulk loader keeps one node per level, the
//! compressor holds `compression_buffer` bytes of chunks at most.

pub mod fold;
pub mod lock;
pub mod pack;
pub mod sort;
mod upload;

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::mvcc::compact::RuleError;
use crate::replay::{self, ReplayError, ReplayOptions, ReplayReport};
use crate::show::hex;
use crate::snapstore::codec::{LevelError, Parallelism, check_level};
use crate::snapstore::name::{Kind, SnapshotName, format_snapshot_name};
use crate::snapstore::{
    self, Compression, ObjectKind, Plan, PlanError, PlanOptions, Store, StoreError, classify_object,
};

pub use fold::{FoldOptions, FoldReport, fold_db};
pub use lock::{
    DEFAULT_LOCK_RETENTION_SLACK, DEFAULT_LOCK_TTL, LOCK_OBJECT, LockReport, StoreLock,
};
pub use pack::{Packed, pack};
pub use sort::{ExternalSort, SortedRecords};

/// Bytes of sort records held in memory before a run is spilled.
pub const DEFAULT_SORT_BUDGET: usize = 16 << 20;
/// Bytes of compression buffers (chunks in flight) by default: a quarter of the default
/// memory budget, like the sorts and the upload parts (docs/memory.md).
pub const DEFAULT_COMPRESSION_BUFFER: usize = 16 << 20;
/// Name prefix of compact's temporary upload objects (below `v2/`). The leading dot and the
/// extra `-` fields keep them from ever parsing as a snapshot name.
pub const UPLOAD_TEMP_PREFIX: &str = ".etcd-restore-upload-";
/// Name prefix of compact's local work directories (followed by `<pid>-`).
pub const WORK_DIR_PREFIX: &str = ".etcd-restore-compact-";

#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Replay(#[from] ReplayError),
    /// `--compression-level` does not fit the codec (given, or chosen from the plan).
    #[error(transparent)]
    Level(#[from] LevelError),
    #[error(transparent)]
    TempDir(#[from] crate::tempdir::TempDirError),
    #[error("{path}: {source}")]
    Db {
        path: PathBuf,
        #[source]
        source: bbolt::Error,
    },
    #[error("{path}: key bucket record at {rev_key:02x?}: {detail}")]
    Record {
        path: PathBuf,
        rev_key: Vec<u8>,
        detail: String,
    },
    #[error("{path}: {source}")]
    Rule {
        path: PathBuf,
        #[source]
        source: RuleError,
    },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("sort run {path} is corrupt at byte {offset}")]
    Run { path: PathBuf, offset: u64 },
    #[error("{object} already exists; compact never overwrites")]
    Exists { object: String },
    #[error(
        "publishing {object} took longer than --etcd-snapshot-timeout ({seconds} s) and was abandoned; the name appears only complete if at all, and the next run removes the temporary upload"
    )]
    Timeout { object: String, seconds: u64 },
    /// Another compaction of the store holds the lock (exit 5).
    #[error(
        "another compaction of this store is running: {object} is held by {holder}; it is retried by the next run (a lock whose run died lapses after its TTL)"
    )]
    Locked { object: String, holder: String },
    /// The lock was taken over before publishing (exit 5): nothing was published.
    #[error(
        "lost the compaction lock {object} before publishing ({detail}); nothing was published"
    )]
    LockLost { object: String, detail: String },
    /// What was sent or published is not what was written (exit 4).
    #[error("{object}: {what} is {actual}, but {expected} was written")]
    Verify {
        object: String,
        what: &'static str,
        expected: String,
        actual: String,
    },
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> CompactError {
    let path = path.to_path_buf();
    move |source| CompactError::Io { what, path, source }
}

/// Options of a whole compaction run.
#[derive(Clone, Debug)]
pub struct CompactOptions {
    pub plan: PlanOptions,
    pub replay: ReplayOptions,
    pub keep_history: bool,
    /// None = the last delta's compression (the base's when there are no deltas).
    pub compression: Option<Compression>,
    /// None = the codec's default ([`snapstore::codec::default_level`]); checked against the
    /// codec before any work starts.
    pub compression_level: Option<i32>,
    /// Compressing threads (gzip, zstd); 0 = one per available core.
    pub compression_threads: usize,
    /// Bytes of compression chunks in flight at most (input and output buffers).
    pub compression_buffer: usize,
    /// Uncompressed bytes per gzip member / zstd frame; 0 = the codec's default (tests use
    /// small ones to get many members from a small fixture).
    pub compression_chunk: usize,
    pub dry_run: bool,
    pub sort_budget: usize,
    /// Bytes of upload parts in flight at most (bounds the multipart concurrency).
    pub upload_buffer: usize,
    /// Directory for the scratch database, sort runs and the compressed output.
    pub temp_dir: PathBuf,
    /// Creation time in the name (Unix seconds); None = now.
    pub created_on: Option<i64>,
    /// Bound on publishing: the upload, the copy to the final name and its check
    /// (etcdbrctl's `--etcd-snapshot-timeout` bounds taking and saving the snapshot).
    pub publish_timeout: Option<std::time::Duration>,
    /// Lifetime of the store's compaction lock between renewals ([`lock`]).
    pub lock_ttl: std::time::Duration,
    /// How long after its expiry a lock version stays retained in an object-locked S3 bucket.
    pub lock_retention_slack: std::time::Duration,
}

/// The JSON report.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CompactReport {
    pub store: String,
    pub plan: Plan,
    pub replay: ReplayReport,
    pub fold: FoldReport,
    pub compression: Compression,
    /// The level used (None for codecs without levels).
    pub compression_level: Option<i32>,
    /// Threads that compressed (1 for zlib, LZW and none, which are single streams).
    pub compression_threads: usize,
    /// The object written (or that would be written with --dry-run).
    pub object: String,
    pub object_bytes: u64,
    /// sha256 of the compressed object, taken as it was written.
    pub object_sha256: String,
    /// sha256 of the database, taken as it was compressed: the object's trailer.
    pub db_sha256: String,
    pub uploaded: bool,
    /// The upload was checked by construction: the bytes sent hash to what the compressor
    /// wrote (checked before publishing), and the published object has that size.
    pub verified: bool,
    pub dry_run: bool,
    /// The store's compaction lock, held from before the listing until after publishing
    /// (none for a dry run, which writes nothing).
    pub lock: Option<LockReport>,
    pub seconds: f64,
    pub seconds_replay: f64,
    /// Building the compacted database (both passes and the bulk load).
    pub seconds_fold: f64,
    /// Hashing and compressing it.
    pub seconds_pack: f64,
    /// Uploading, publishing and checking the object.
    pub seconds_upload: f64,
}

impl CompactReport {
    /// Prometheus text exposition of the run's numbers.
    pub fn metrics(&self) -> String {
        let mut s = String::new();
        let mut m = |name: &str, help: &str, v: f64| {
            s.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}\n"
            ));
        };
        m(
            "etcd_restore_compact_duration_seconds",
            "Wall time of the compaction run.",
            self.seconds,
        );
        m(
            "etcd_restore_compact_events_folded",
            "Delta events applied on top of the base.",
            self.replay.apply.events_applied as f64,
        );
        m(
            "etcd_restore_compact_records_in",
            "Records in the replayed key bucket.",
            self.fold.records_in as f64,
        );
        m(
            "etcd_restore_compact_records_out",
            "Records in the compacted key bucket.",
            self.fold.records_out as f64,
        );
        m(
            "etcd_restore_compact_bytes_in",
            "Bytes of snapshot objects read from the store.",
            (self.replay.base_object_bytes + self.replay.delta_object_bytes) as f64,
        );
        m(
            "etcd_restore_compact_bytes_out",
            "Bytes of the uploaded object.",
            self.object_bytes as f64,
        );
        m(
            "etcd_restore_compact_revision",
            "Revision of the new full snapshot.",
            self.fold.revision as f64,
        );
        m(
            "etcd_restore_compact_success",
            "1 when the snapshot was published and checked (or a dry run finished).",
            if self.verified || self.dry_run {
                1.0
            } else {
                0.0
            },
        );
        s
    }
}

/// Runs a compaction against `store`.
pub async fn compact(store: &Store, opts: &CompactOptions) -> Result<CompactReport, CompactError> {
    if opts.dry_run {
        return compact_locked(store, opts, None).await;
    }
    // Taken before the listing: the plan then includes what a previous holder published.
    let lock = StoreLock::acquire(store, opts.lock_ttl, opts.lock_retention_slack).await?;
    let result = compact_locked(store, opts, Some(&lock)).await;
    let released = lock.release().await;
    result.map(|mut r| {
        r.lock = Some(released);
        r
    })
}

async fn compact_locked(
    store: &Store,
    opts: &CompactOptions,
    lock: Option<&StoreLock>,
) -> Result<CompactReport, CompactError> {
    let t0 = Instant::now();
    let listing = store.list_snapshots().await?;
    let mut plan = snapstore::plan(&listing.snapshots, opts.plan)?;
    let compression = opts.compression.unwrap_or_else(|| {
        plan.deltas
            .last()
            .map(|d| d.snapshot.compression())
            .unwrap_or_else(|| plan.base.compression())
    });
    // A level the codec cannot take fails now, not after minutes of replay.
    let level = check_level(compression, opts.compression_level)?
        .or(snapstore::codec::default_level(compression));
    // Store::open created it when missing; a caller's own temp dir may not exist yet either.
    crate::tempdir::ensure(&opts.temp_dir, "--snapstore-temp-directory")?;
    upload::reclaim_work_dirs(&opts.temp_dir);
    let work = tempfile::Builder::new()
        .prefix(&format!("{WORK_DIR_PREFIX}{}-", std::process::id()))
        .tempdir_in(&opts.temp_dir)
        .map_err(io("creating a work directory in", &opts.temp_dir))?;
    let spool = crate::tempdir::spool_dir(opts.replay.restoration_dir.as_deref(), work.path())?;
    let replayed = work.path().join("replayed.db");
    let mut ropts = opts.replay.clone();
    ropts.spool_dir = spool.path().to_path_buf();
    let replay_report = replay::replay(store, &mut plan, &replayed, &ropts).await?;
    drop(spool);
    let seconds_replay = t0.elapsed().as_secs_f64();

    let t1 = Instant::now();
    let folded = work.path().join("compacted.db");
    let fold_opts = FoldOptions {
        keep_history: opts.keep_history,
        sort_budget: opts.sort_budget,
        temp_dir: work.path().to_path_buf(),
    };
    if let Some(p) = &opts.replay.progress {
        p.set_phase(crate::progress::Phase::Writing);
    }
    let (src, dst) = (replayed.clone(), folded.clone());
    let fold = blocking("folding", &replayed, move || {
        fold_db(&src, &dst, &fold_opts)
    })
    .await?;
    let _ = std::fs::remove_file(&replayed);
    let seconds_fold = t1.elapsed().as_secs_f64();

    let name = format_snapshot_name(&SnapshotName {
        kind: Kind::Full,
        start_revision: 0,
        last_revision: fold.revision,
        created_on: opts
            .created_on
            .unwrap_or_else(|| chrono::Utc::now().timestamp()),
        compression,
        is_final: false,
    });
    let object = format!("v2/{name}");
    // Instead of listing the store after the upload: the name is one restore's listing takes
    // for a full snapshot of this revision in this codec.
    match classify_object(&object, None) {
        ObjectKind::Snapshot(s)
            if s.name.kind == Kind::Full
                && s.name.last_revision == fold.revision
                && s.compression() == compression => {}
        other => {
            return Err(CompactError::Verify {
                object,
                what: "the name as the listing reads it",
                expected: format!("a full snapshot at revision {}", fold.revision),
                actual: format!("{other:?}"),
            });
        }
    }

    let t2 = Instant::now();
    let packed_path = work.path().join("upload");
    let par = Parallelism::within(
        compression,
        opts.compression_threads,
        opts.compression_chunk,
        opts.compression_buffer,
    );
    let (f2, p2) = (folded.clone(), packed_path.clone());
    let packed = blocking("packing", &folded, move || {
        pack(&f2, &p2, compression, level, par)
    })
    .await?;
    let _ = std::fs::remove_file(&folded);
    let seconds_pack = t2.elapsed().as_secs_f64();
    let mut report = CompactReport {
        store: store.describe().to_string(),
        plan,
        replay: replay_report,
        fold,
        compression,
        compression_level: level,
        compression_threads: if snapstore::codec::parallel_chunk(compression).is_some() {
            par.threads
        } else {
            1
        },
        object: object.clone(),
        object_bytes: packed.object_bytes,
        object_sha256: hex(&packed.object_sha256),
        db_sha256: hex(&packed.db_sha256),
        uploaded: false,
        verified: false,
        dry_run: opts.dry_run,
        lock: None,
        seconds: 0.0,
        seconds_replay,
        seconds_fold,
        seconds_pack,
        seconds_upload: 0.0,
    };
    if opts.dry_run {
        report.seconds = t0.elapsed().as_secs_f64();
        return Ok(report);
    }
    let t3 = Instant::now();
    // Still ours? Checked before anything is removed: a run whose lock was taken over must
    // not touch the new holder's temporary upload.
    if let Some(l) = lock {
        l.check().await?;
    }
    // Under the lock no other run's upload is in flight: every temporary upload is stale
    // (reclaimed even when this run then finds its object already published).
    upload::reclaim_temp_uploads(store, &listing.ignored).await;
    if store.exists(&object).await? {
        return Err(CompactError::Exists { object });
    }
    let publish = upload::upload(
        store,
        &object,
        &packed_path,
        &packed,
        opts.upload_buffer,
        lock,
    );
    match opts.publish_timeout {
        None => publish.await?,
        Some(limit) => {
            tokio::time::timeout(limit, publish)
                .await
                .map_err(|_| CompactError::Timeout {
                    object: object.clone(),
                    seconds: limit.as_secs(),
                })??
        }
    }
    report.uploaded = true;
    // The copy is server-side; its size is the one cheap fact left to check.
    let meta = store.head(&object).await?;
    if meta.size != packed.object_bytes {
        return Err(CompactError::Verify {
            object,
            what: "the published object's size",
            expected: format!("{} bytes", packed.object_bytes),
            actual: format!("{} bytes", meta.size),
        });
    }
    report.verified = true;
    report.seconds_upload = t3.elapsed().as_secs_f64();
    report.seconds = t0.elapsed().as_secs_f64();
    Ok(report)
}

/// Runs blocking work (file IO, CPU) off the async threads; a panic becomes an error naming
/// the step and its file.
async fn blocking<T: Send + 'static>(
    what: &'static str,
    path: &Path,
    f: impl FnOnce() -> Result<T, CompactError> + Send + 'static,
) -> Result<T, CompactError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| CompactError::Io {
            what,
            path: path.to_path_buf(),
            source: std::io::Error::other(e.to_string()),
        })?
}
