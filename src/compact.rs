//! `compact`: fold a store's base and deltas into one new full snapshot, without etcd.
//!
//! 1. replay the plan (base + deltas) into a scratch bbolt file ([`crate::replay`]);
//! 2. pass 1 over the `key` bucket feeds (user key, revision, tombstone) into an external sort
//!    by user key; the merged stream goes through etcd's compaction rule
//!    ([`crate::mvcc::compact`]), and the kept revisions go into a second external sort by
//!    revision;
//! 3. pass 2 walks the `key` bucket and the kept revisions together and bulk-loads the kept
//!    records into a new, defragmented file (fill 0.9, no freelist, like etcd's defrag); every
//!    other bucket is copied as it is, `meta` gets the compaction revisions;
//! 4. the file gets etcd's sha256 trailer, is compressed, uploaded under a temporary name that
//!    is not a snapshot name (`v2/.etcd-restore-upload-<pid>-<name>`, ignored by listing and
//!    planning), copied create-only to `Full-00000000-<rev>-<unix><ext>`, and read back to
//!    check the hash.
//!
//! A run that dies leaves at most a temporary object and a work directory
//! (`.etcd-restore-compact-<pid>-*` in the temp directory); the next run removes both.
//!
//! Memory does not depend on the database: the sorts spill runs of `sort_budget` bytes to disk,
//! the source is read through a bounded mapping, the bulk loader keeps one node per level.

use crate::show::hex;

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use bbolt::bulk::{BulkLoader, BulkOptions};
use bbolt::{Bucket, Db, OpenOptions};
use sha2::{Digest, Sha256};

use crate::backend::{KEY_BUCKET, META_BUCKET};
use crate::mvcc::compact::{KeyRecord, Latest, RuleError, compact_rev_value};
use crate::mvcc::kv::KeyValue;
use crate::mvcc::revision::{REV_KEY_LEN, Revision, parse_rev_key};
use crate::replay::{self, ReplayError, ReplayOptions, ReplayReport};
use crate::snapstore::name::{Kind, SnapshotName, format_snapshot_name};
use crate::snapstore::{
    self, Compression, FetchError, Plan, PlanError, PlanOptions, Store, StoreError,
};

/// Bytes of sort records held in memory before a run is spilled.
pub const DEFAULT_SORT_BUDGET: usize = 16 << 20;
/// Bytes of the source database kept mapped while reading it.
const SOURCE_MAPPED_BUDGET: usize = 8 << 20;
/// Name prefix of compact's temporary upload objects (below `v2/`). The leading dot and the
/// extra `-` fields keep them from ever parsing as a snapshot name.
pub const UPLOAD_TEMP_PREFIX: &str = ".etcd-restore-upload-";
/// Name prefix of compact's local work directories (followed by `<pid>-`).
pub const WORK_DIR_PREFIX: &str = ".etcd-restore-compact-";
/// Largest object a server-side copy handles everywhere (S3's single-part copy limit); larger
/// snapshots are uploaded directly under their final name after an existence check.
const MAX_SERVER_COPY: u64 = 5 << 30;

#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Replay(#[from] ReplayError),
    #[error(transparent)]
    Fetch(#[from] FetchError),
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
    #[error("read back {object}: sha256 {actual} differs from the written {expected}")]
    Verify {
        object: String,
        expected: String,
        actual: String,
    },
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> CompactError {
    let path = path.to_path_buf();
    move |source| CompactError::Io { what, path, source }
}

/// How to fold a database file.
#[derive(Clone, Debug)]
pub struct FoldOptions {
    /// Keep every revision (a defragmented copy); otherwise compact at the last revision.
    pub keep_history: bool,
    pub sort_budget: usize,
    /// Where sort runs go.
    pub temp_dir: PathBuf,
}

/// What folding a database did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct FoldReport {
    /// Records in the source `key` bucket.
    pub records_in: u64,
    /// Records in the new `key` bucket.
    pub records_out: u64,
    /// Distinct user keys in the source.
    pub keys: u64,
    pub revision: i64,
    /// The compaction revision written to `meta` (None with `--keep-history`).
    pub compact_revision: Option<i64>,
    pub sort_runs_spilled: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// Names the database file a bbolt error came from.
fn db_err(path: &Path) -> impl Fn(bbolt::Error) -> CompactError + Copy + '_ {
    move |source| CompactError::Db {
        path: path.to_path_buf(),
        source,
    }
}

/// Builds `out` (must not exist) from the database `src`. `out` is not fsynced.
pub fn fold_db(src: &Path, out: &Path, opts: &FoldOptions) -> Result<FoldReport, CompactError> {
    let db = Db::open(
        src,
        OpenOptions {
            mapped_budget: SOURCE_MAPPED_BUDGET,
            ..OpenOptions::read_only()
        },
    )
    .map_err(db_err(src))?;
    let meta = crate::backend::hashkv_meta(&db).map_err(db_err(src))?;
    let mut report = FoldReport {
        revision: meta.last_main.unwrap_or(1).max(1),
        bytes_in: std::fs::metadata(src).map_err(io("stat", src))?.len(),
        ..Default::default()
    };
    let tx = db.begin_read();
    let keep = if opts.keep_history {
        None
    } else {
        Some(kept_revisions(&tx, src, opts, &mut report)?)
    };
    if keep.is_some() {
        report.compact_revision = Some(report.revision);
    }

    let mut bulk = BulkLoader::create(
        out,
        BulkOptions {
            page_size: tx.page_size() as u32,
            fill_percent: replay::KEY_FILL_PERCENT,
            sync_freelist: false,
            // `out` is scratch: packed, uploaded and read back from the store, never used in
            // place, so fdatasync (seconds for a multi-GiB file) buys nothing.
            no_sync: true,
        },
    )
    .map_err(db_err(out))?;
    let root = tx.root();
    let mut c = root.cursor();
    let mut e = c.first().map_err(db_err(src))?;
    let mut keep = keep;
    while let Some(entry) = e {
        if entry.is_bucket() {
            let b = root.bucket_at(&entry).map_err(db_err(src))?;
            bulk.begin_bucket(entry.key).map_err(db_err(out))?;
            bulk.set_sequence(b.sequence()).map_err(db_err(out))?;
            match (entry.key, keep.as_mut()) {
                (KEY_BUCKET, Some(kept)) => {
                    report.records_out = copy_kept(&b, kept, &mut bulk, src, out)?;
                }
                (META_BUCKET, Some(_)) => {
                    copy_meta(&b, report.revision, &mut bulk, src, out)?;
                }
                _ => {
                    let n = copy_bucket(&b, &mut bulk, src, out)?;
                    if entry.key == KEY_BUCKET {
                        // --keep-history copies the key bucket as it is: every record in is out.
                        report.records_in = n;
                        report.records_out = n;
                    }
                }
            }
            bulk.end_bucket().map_err(db_err(out))?;
        }
        e = c.next().map_err(db_err(src))?;
    }
    let stats = bulk.finish().map_err(db_err(out))?;
    report.bytes_out = stats.bytes;
    Ok(report)
}

/// Copies a bucket (and nested buckets) entry by entry.
fn copy_bucket(
    b: &Bucket<'_>,
    bulk: &mut BulkLoader,
    src: &Path,
    out: &Path,
) -> Result<u64, CompactError> {
    let se = db_err(src);
    let oe = db_err(out);
    let mut n = 0;
    let mut c = b.cursor();
    let mut e = c.first().map_err(se)?;
    while let Some(entry) = e {
        if entry.is_bucket() {
            let child = b.bucket_at(&entry).map_err(se)?;
            bulk.begin_bucket(entry.key).map_err(oe)?;
            bulk.set_sequence(child.sequence()).map_err(oe)?;
            copy_bucket(&child, bulk, src, out)?;
            bulk.end_bucket().map_err(oe)?;
        } else {
            bulk.put(entry.key, entry.value).map_err(oe)?;
            n += 1;
        }
        e = c.next().map_err(se)?;
    }
    Ok(n)
}

/// Copies `meta` with the compaction revisions set the way etcd's compaction writes them.
fn copy_meta(
    b: &Bucket<'_>,
    rev: i64,
    bulk: &mut BulkLoader,
    src: &Path,
    out: &Path,
) -> Result<(), CompactError> {
    let se = db_err(src);
    let oe = db_err(out);
    let value = compact_rev_value(rev);
    let mut entries: std::collections::BTreeMap<Vec<u8>, Vec<u8>> = Default::default();
    let mut c = b.cursor();
    let mut e = c.first().map_err(se)?;
    while let Some(entry) = e {
        if !entry.is_bucket() {
            entries.insert(entry.key.to_vec(), entry.value.to_vec());
        }
        e = c.next().map_err(se)?;
    }
    entries.insert(b"scheduledCompactRev".to_vec(), value.clone());
    entries.insert(b"finishedCompactRev".to_vec(), value);
    for (k, v) in &entries {
        bulk.put(k, v).map_err(oe)?;
    }
    Ok(())
}

/// Walks the `key` bucket and the kept revisions (both ascending) and writes the kept records.
fn copy_kept(
    b: &Bucket<'_>,
    kept: &mut SortedRecords,
    bulk: &mut BulkLoader,
    src: &Path,
    out: &Path,
) -> Result<u64, CompactError> {
    let se = db_err(src);
    let mut n = 0;
    let mut c = b.cursor();
    while let Some(want) = kept.next_record()? {
        // Kept revisions are sparse in a long history: seek instead of scanning everything.
        let entry = c.seek(&want).map_err(se)?;
        match entry {
            Some(e) if e.key == want.as_slice() => {
                bulk.put(e.key, e.value)
                    .map_err(|source| CompactError::Db {
                        path: out.to_path_buf(),
                        source,
                    })?;
                n += 1;
            }
            _ => {
                return Err(CompactError::Record {
                    path: src.to_path_buf(),
                    rev_key: want,
                    detail: "kept revision vanished between the passes".into(),
                });
            }
        }
    }
    Ok(n)
}

/// Pass 1: the revision keys (17 bytes) to keep, sorted by revision.
fn kept_revisions(
    tx: &bbolt::ReadTx<'_>,
    src: &Path,
    opts: &FoldOptions,
    report: &mut FoldReport,
) -> Result<SortedRecords, CompactError> {
    let se = db_err(src);
    let mut by_key = ExternalSort::new(opts.temp_dir.clone(), opts.sort_budget, by_user_key);
    if let Some(b) = tx.bucket(KEY_BUCKET).map_err(se)? {
        let mut c = b.cursor();
        let mut e = c.first().map_err(se)?;
        let mut rec = Vec::new();
        while let Some(entry) = e {
            let bad = |detail: String| CompactError::Record {
                path: src.to_path_buf(),
                rev_key: entry.key.to_vec(),
                detail,
            };
            let parsed = parse_rev_key(entry.key).map_err(|e| bad(e.to_string()))?;
            let kv = KeyValue::decode(entry.value).map_err(|e| bad(e.to_string()))?;
            // Record: [rev key length][rev key][user key]; see `by_user_key`.
            rec.clear();
            rec.push(entry.key.len() as u8);
            rec.extend_from_slice(entry.key);
            rec.extend_from_slice(kv.key);
            let _ = parsed;
            by_key.push(&rec)?;
            report.records_in += 1;
            e = c.next().map_err(se)?;
        }
    }
    let mut merged = by_key.finish()?;
    let mut by_rev = ExternalSort::new(opts.temp_dir.clone(), opts.sort_budget, <[u8]>::cmp);
    let mut rule = Latest::new();
    let rule_err = |source| CompactError::Rule {
        path: src.to_path_buf(),
        source,
    };
    let keep = |r: Option<Revision>, by_rev: &mut ExternalSort| -> Result<(), CompactError> {
        if let Some(r) = r {
            by_rev.push(r.to_key(false).as_bytes())?;
        }
        Ok(())
    };
    let mut prev_key: Option<Vec<u8>> = None;
    while let Some(rec) = merged.next_record()? {
        let (rev_key, user_key) = split_record(&rec);
        if prev_key.as_deref() != Some(user_key) {
            report.keys += 1;
            prev_key = Some(user_key.to_vec());
        }
        let parsed = parse_rev_key(rev_key).map_err(|e| CompactError::Record {
            path: src.to_path_buf(),
            rev_key: rev_key.to_vec(),
            detail: e.to_string(),
        })?;
        let kept = rule
            .push(KeyRecord {
                key: user_key,
                rev: parsed.rev,
                tombstone: parsed.tombstone,
            })
            .map_err(rule_err)?;
        keep(kept, &mut by_rev)?;
    }
    let last = rule.finish();
    keep(last, &mut by_rev)?;
    report.sort_runs_spilled = merged.runs as u64;
    let kept = by_rev.finish()?;
    report.sort_runs_spilled += kept.runs as u64;
    Ok(kept)
}

fn split_record(rec: &[u8]) -> (&[u8], &[u8]) {
    let n = rec.first().map(|&n| n as usize).unwrap_or(0);
    let body = rec.get(1..).unwrap_or_default();
    body.split_at(n.min(body.len()))
}

/// Orders pass-1 records by user key, then by revision (the first 17 bytes of the revision key
/// are big-endian main, '_', big-endian sub: byte order is revision order).
fn by_user_key(a: &[u8], b: &[u8]) -> Ordering {
    let (ra, ka) = split_record(a);
    let (rb, kb) = split_record(b);
    ka.cmp(kb).then_with(|| {
        let ra = ra.get(..REV_KEY_LEN).unwrap_or(ra);
        let rb = rb.get(..REV_KEY_LEN).unwrap_or(rb);
        ra.cmp(rb)
    })
}

type Cmp = fn(&[u8], &[u8]) -> Ordering;

/// An external merge sort of byte records: records accumulate in one arena until `budget`
/// bytes, then are sorted and spilled to a temp file as a run; the result merges the runs.
pub struct ExternalSort {
    dir: PathBuf,
    budget: usize,
    cmp: Cmp,
    arena: Vec<u8>,
    index: Vec<(u32, u32)>,
    runs: Vec<tempfile::NamedTempFile>,
}

impl ExternalSort {
    pub fn new(dir: PathBuf, budget: usize, cmp: Cmp) -> Self {
        Self {
            dir,
            budget: budget.max(4096),
            cmp,
            arena: Vec::new(),
            index: Vec::new(),
            runs: Vec::new(),
        }
    }

    pub fn push(&mut self, rec: &[u8]) -> Result<(), CompactError> {
        let off = self.arena.len() as u32;
        self.arena.extend_from_slice(rec);
        self.index.push((off, rec.len() as u32));
        if self.arena.len() + self.index.len() * 8 >= self.budget {
            self.spill()?;
        }
        Ok(())
    }

    fn sort_in_memory(&mut self) {
        let arena = &self.arena;
        let cmp = self.cmp;
        let get =
            |&(o, l): &(u32, u32)| arena.get(o as usize..(o + l) as usize).unwrap_or_default();
        self.index.sort_unstable_by(|a, b| cmp(get(a), get(b)));
    }

    fn spill(&mut self) -> Result<(), CompactError> {
        if self.index.is_empty() {
            return Ok(());
        }
        self.sort_in_memory();
        let f = tempfile::Builder::new()
            .prefix(".compact-run-")
            .tempfile_in(&self.dir)
            .map_err(io("creating a sort run in", &self.dir))?;
        let path = f.path().to_path_buf();
        {
            let mut w = BufWriter::with_capacity(256 << 10, f.as_file());
            for &(o, l) in &self.index {
                let rec = self
                    .arena
                    .get(o as usize..(o + l) as usize)
                    .unwrap_or_default();
                w.write_all(&l.to_le_bytes())
                    .map_err(io("writing", &path))?;
                w.write_all(rec).map_err(io("writing", &path))?;
            }
            w.flush().map_err(io("writing", &path))?;
        }
        self.runs.push(f);
        self.arena.clear();
        self.index.clear();
        // Give the memory back: the next run starts small again.
        self.arena.shrink_to(1 << 20);
        self.index.shrink_to(1 << 16);
        Ok(())
    }

    /// Sorts what is left and returns the merged stream.
    pub fn finish(mut self) -> Result<SortedRecords, CompactError> {
        if self.runs.is_empty() {
            self.sort_in_memory();
            return Ok(SortedRecords {
                source: Source::Memory {
                    arena: std::mem::take(&mut self.arena),
                    index: std::mem::take(&mut self.index).into_iter(),
                },
                runs: 0,
            });
        }
        self.spill()?;
        let mut readers = Vec::with_capacity(self.runs.len());
        let mut heap = BinaryHeap::new();
        for (i, f) in self.runs.iter().enumerate() {
            let path = f.path().to_path_buf();
            let file = f.reopen().map_err(io("reopening", &path))?;
            let mut r = RunReader {
                r: BufReader::with_capacity(64 << 10, file),
                path,
                offset: 0,
            };
            if let Some(rec) = r.next()? {
                heap.push(HeapItem {
                    rec,
                    run: i,
                    cmp: self.cmp,
                });
            }
            readers.push(r);
        }
        let runs = self.runs.len();
        Ok(SortedRecords {
            source: Source::Runs {
                _files: std::mem::take(&mut self.runs),
                readers,
                heap,
            },
            runs,
        })
    }
}

struct RunReader {
    r: BufReader<File>,
    path: PathBuf,
    offset: u64,
}

impl RunReader {
    fn next(&mut self) -> Result<Option<Vec<u8>>, CompactError> {
        let mut len = [0u8; 4];
        match self.r.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(io("reading", &self.path)(e)),
        }
        let n = u32::from_le_bytes(len) as usize;
        let mut rec = vec![0u8; n];
        self.r.read_exact(&mut rec).map_err(|_| CompactError::Run {
            path: self.path.clone(),
            offset: self.offset,
        })?;
        self.offset += 4 + n as u64;
        Ok(Some(rec))
    }
}

struct HeapItem {
    rec: Vec<u8>,
    run: usize,
    cmp: Cmp,
}

impl PartialEq for HeapItem {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for HeapItem {}
impl PartialOrd for HeapItem {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for HeapItem {
    /// Reversed: `BinaryHeap` is a max-heap; ties go to the earlier run (stable).
    fn cmp(&self, o: &Self) -> Ordering {
        (self.cmp)(&o.rec, &self.rec).then_with(|| o.run.cmp(&self.run))
    }
}

enum Source {
    Memory {
        arena: Vec<u8>,
        index: std::vec::IntoIter<(u32, u32)>,
    },
    Runs {
        _files: Vec<tempfile::NamedTempFile>,
        readers: Vec<RunReader>,
        heap: BinaryHeap<HeapItem>,
    },
}

/// The sorted output of an [`ExternalSort`].
pub struct SortedRecords {
    source: Source,
    /// Runs that were spilled to disk.
    pub runs: usize,
}

impl SortedRecords {
    pub fn next_record(&mut self) -> Result<Option<Vec<u8>>, CompactError> {
        let rec = match &mut self.source {
            Source::Memory { arena, index } => index.next().map(|(o, l)| {
                arena
                    .get(o as usize..(o + l) as usize)
                    .unwrap_or_default()
                    .to_vec()
            }),
            Source::Runs { readers, heap, .. } => match heap.pop() {
                None => None,
                Some(top) => {
                    if let Some(r) = readers.get_mut(top.run)
                        && let Some(rec) = r.next()?
                    {
                        heap.push(HeapItem {
                            rec,
                            run: top.run,
                            cmp: top.cmp,
                        });
                    }
                    Some(top.rec)
                }
            },
        };
        Ok(rec)
    }
}

/// Options of a whole compaction run.
#[derive(Clone, Debug)]
pub struct CompactOptions {
    pub plan: PlanOptions,
    pub replay: ReplayOptions,
    pub keep_history: bool,
    /// None = the last delta's compression (the base's when there are no deltas).
    pub compression: Option<Compression>,
    pub dry_run: bool,
    pub sort_budget: usize,
    /// Bytes of upload parts in flight at most (bounds the multipart concurrency).
    pub upload_buffer: usize,
    /// Directory for the scratch database, sort runs and the compressed output.
    pub temp_dir: PathBuf,
    /// Creation time in the name (Unix seconds); None = now.
    pub created_on: Option<i64>,
}

/// The JSON report.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CompactReport {
    pub store: String,
    pub plan: Plan,
    pub replay: ReplayReport,
    pub fold: FoldReport,
    pub compression: Compression,
    /// The object written (or that would be written with --dry-run).
    pub object: String,
    pub object_bytes: u64,
    pub db_sha256: String,
    pub uploaded: bool,
    pub verified: bool,
    pub dry_run: bool,
    pub seconds: f64,
    pub seconds_replay: f64,
    pub seconds_fold: f64,
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
            "1 when the snapshot was written and verified.",
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
    let t0 = Instant::now();
    let listing = store.list_snapshots().await?;
    let mut plan = snapstore::plan(&listing.snapshots, opts.plan)?;
    reclaim_work_dirs(&opts.temp_dir);
    let work = tempfile::Builder::new()
        .prefix(&format!("{WORK_DIR_PREFIX}{}-", std::process::id()))
        .tempdir_in(&opts.temp_dir)
        .map_err(io("creating a work directory in", &opts.temp_dir))?;
    let spool = work.path().join("spool");
    std::fs::create_dir(&spool).map_err(io("creating", &spool))?;
    let replayed = work.path().join("replayed.db");
    let mut ropts = opts.replay.clone();
    ropts.spool_dir = spool;
    let replay_report = replay::replay(store, &mut plan, &replayed, &ropts).await?;
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
    let fold = tokio::task::spawn_blocking(move || fold_db(&src, &dst, &fold_opts))
        .await
        .map_err(|e| CompactError::Io {
            what: "folding",
            path: replayed.clone(),
            source: std::io::Error::other(e.to_string()),
        })??;
    let _ = std::fs::remove_file(&replayed);

    let compression = opts.compression.unwrap_or_else(|| {
        plan.deltas
            .last()
            .map(|d| d.snapshot.compression())
            .unwrap_or_else(|| plan.base.compression())
    });
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
    let packed = work.path().join("upload");
    let (f2, p2) = (folded.clone(), packed.clone());
    let db_sha = tokio::task::spawn_blocking(move || pack(&f2, &p2, compression))
        .await
        .map_err(|e| CompactError::Io {
            what: "packing",
            path: folded.clone(),
            source: std::io::Error::other(e.to_string()),
        })??;
    let seconds_fold = t1.elapsed().as_secs_f64();
    let object_bytes = std::fs::metadata(&packed)
        .map_err(io("stat", &packed))?
        .len();
    let mut report = CompactReport {
        store: store.describe().to_string(),
        plan,
        replay: replay_report,
        fold,
        compression,
        object: object.clone(),
        object_bytes,
        db_sha256: hex(&db_sha),
        uploaded: false,
        verified: false,
        dry_run: opts.dry_run,
        seconds: 0.0,
        seconds_replay,
        seconds_fold,
        seconds_upload: 0.0,
    };
    if opts.dry_run {
        report.seconds = t0.elapsed().as_secs_f64();
        return Ok(report);
    }
    let t2 = Instant::now();
    if store.exists(&object).await? {
        return Err(CompactError::Exists { object });
    }
    reclaim_temp_uploads(store, &listing.ignored).await;
    upload(store, &object, &packed, object_bytes, opts.upload_buffer).await?;
    report.uploaded = true;

    // Read it back through the same path restore uses: listing, name, download, trailer.
    let listing = store.list_snapshots().await?;
    let snap = listing
        .snapshots
        .iter()
        .find(|s| s.path == object)
        .cloned()
        .ok_or_else(|| CompactError::Verify {
            object: object.clone(),
            expected: hex(&db_sha),
            actual: "missing from the listing".into(),
        })?;
    let back = work.path().join("readback.db");
    let info = snapstore::fetch_full(store, &snap, &back, true).await?;
    let actual = sha256_file(&back, info.db_size)?;
    if actual != db_sha || !info.hash_verified {
        return Err(CompactError::Verify {
            object,
            expected: hex(&db_sha),
            actual: hex(&actual),
        });
    }
    report.verified = true;
    report.seconds_upload = t2.elapsed().as_secs_f64();
    report.seconds = t0.elapsed().as_secs_f64();
    Ok(report)
}

/// Uploads `packed` as `object`, which must not exist, so that `object` appears only complete:
/// the bytes go to a temporary object first and are then copied create-only. Two runs racing
/// for one name cannot overwrite each other; the loser fails with [`CompactError::Exists`].
async fn upload(
    store: &Store,
    object: &str,
    packed: &Path,
    object_bytes: u64,
    upload_buffer: usize,
) -> Result<(), CompactError> {
    let (part, conc) = store
        .config()
        .map(|c| (c.min_chunk_size, c.max_parallel_chunk_uploads as usize))
        .unwrap_or((snapstore::config::MIN_CHUNK_SIZE, 5));
    // Each part in flight is a buffer, plus the one being filled.
    let fit = upload_buffer / usize::try_from(part).unwrap_or(usize::MAX).max(1);
    let conc = conc.min(fit.saturating_sub(1)).max(1);
    let exists = |e| match e {
        StoreError::AlreadyExists { object } => CompactError::Exists { object },
        e => e.into(),
    };
    let local = matches!(
        store.config().map(|c| &c.backend),
        Some(snapstore::Backend::Local { .. })
    );
    if object_bytes > MAX_SERVER_COPY && !local {
        // Multipart uploads commit atomically, so no partial object is ever visible; only the
        // create-only guarantee is weaker (checked just before).
        tracing::warn!(
            object,
            bytes = object_bytes,
            "too large for a server-side copy; uploading under the final name directly"
        );
        store
            .put_multipart_file(object, packed, part, conc)
            .await
            .map_err(exists)?;
        return Ok(());
    }
    let name = object.rsplit('/').next().unwrap_or(object);
    let temp = format!("v2/{UPLOAD_TEMP_PREFIX}{}-{name}", std::process::id());
    let result = async {
        store
            .put_multipart_file(&temp, packed, part, conc)
            .await
            .map_err(exists)?;
        store.copy_create(&temp, object).await.map_err(exists)
    }
    .await;
    if let Err(e) = store.delete(&temp).await {
        tracing::warn!(object = %temp, error = %e, "could not remove the temporary upload; the next compact run removes it");
    }
    result
}

/// Removes temporary uploads of earlier runs that died (listed as ignored objects). Concurrent
/// compactions of one store are not supported: a running one whose temporary object vanishes
/// fails cleanly at its copy.
async fn reclaim_temp_uploads(store: &Store, ignored: &[snapstore::IgnoredObject]) {
    for o in ignored {
        if o.path
            .strip_prefix("v2/")
            .is_some_and(|n| n.starts_with(UPLOAD_TEMP_PREFIX))
        {
            tracing::info!(object = %o.path, "removing a temporary upload left by an earlier run");
            if let Err(e) = store.delete(&o.path).await {
                tracing::warn!(object = %o.path, error = %e, "could not remove a stale temporary upload");
            }
        }
    }
    // The local store stages multipart uploads as `<object>#<n>` files that its listing hides.
    if let Some(snapstore::Backend::Local { root }) = store.config().map(|c| &c.backend) {
        let mut dir = root.clone();
        if !store.prefix().is_empty() {
            dir.push(store.prefix());
        }
        dir.push("v2");
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                let n = e.file_name();
                let n = n.to_string_lossy();
                if n.starts_with(UPLOAD_TEMP_PREFIX) && n.contains('#') {
                    tracing::info!(path = %e.path().display(), "removing a staged upload left by an earlier run");
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
}

/// Removes work directories of earlier runs whose process is gone (`<prefix><pid>-*`).
fn reclaim_work_dirs(temp_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(temp_dir) else {
        return;
    };
    for e in entries.flatten() {
        let n = e.file_name();
        let Some(pid) = n
            .to_str()
            .and_then(|n| n.strip_prefix(WORK_DIR_PREFIX))
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new("/proc").join(pid.to_string()).exists() {
            tracing::info!(path = %e.path().display(), "removing a work directory left by an earlier run");
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

fn sha256_file(path: &Path, len: u64) -> Result<[u8; 32], CompactError> {
    let f = File::open(path).map_err(io("opening", path))?;
    let mut h = Sha256::new();
    let mut r = BufReader::with_capacity(1 << 20, f).take(len);
    std::io::copy(&mut r, &mut HashWriter(&mut h)).map_err(io("reading", path))?;
    Ok(h.finalize().into())
}

struct HashWriter<'a>(&'a mut Sha256);
impl Write for HashWriter<'_> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.update(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// db + sha256(db) like etcd's snapshot stream, compressed into `out`. Returns the db's hash.
fn pack(db: &Path, out: &Path, compression: Compression) -> Result<[u8; 32], CompactError> {
    let len = std::fs::metadata(db).map_err(io("stat", db))?.len();
    let sha = sha256_file(db, len)?;
    let input = BufReader::with_capacity(1 << 20, File::open(db).map_err(io("opening", db))?)
        .chain(&sha[..]);
    let file = File::options()
        .write(true)
        .create_new(true)
        .open(out)
        .map_err(io("creating", out))?;
    let w = snapstore::compress_to(compression, input, BufWriter::with_capacity(1 << 20, file))
        .map_err(io("compressing into", out))?;
    let file = w
        .into_inner()
        .map_err(|e| io("writing", out)(e.into_error()))?;
    file.sync_all().map_err(io("syncing", out))?;
    Ok(sha)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_sort_spills_and_merges_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = ExternalSort::new(dir.path().to_path_buf(), 4096, <[u8]>::cmp);
        let mut want = Vec::new();
        let mut x: u64 = 12345;
        for _ in 0..5000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let rec = format!("{:x}", x >> 20).into_bytes();
            want.push(rec.clone());
            s.push(&rec).unwrap();
        }
        let mut out = s.finish().unwrap();
        assert!(
            out.runs > 10,
            "tiny budget must spill, got {} runs",
            out.runs
        );
        want.sort();
        let mut got = Vec::new();
        while let Some(r) = out.next_record().unwrap() {
            got.push(r);
        }
        assert_eq!(got, want);
    }

    #[test]
    fn pass1_order_is_user_key_then_revision() {
        let rec = |k: &str, m: i64, t: bool| {
            let rk = Revision::new(m, 0).to_key(t);
            let mut v = vec![rk.as_bytes().len() as u8];
            v.extend_from_slice(rk.as_bytes());
            v.extend_from_slice(k.as_bytes());
            v
        };
        // A shorter key sorts first even when its revision is larger; a tombstone sorts by
        // its revision only.
        assert_eq!(
            by_user_key(&rec("a", 9, false), &rec("ab", 1, false)),
            Ordering::Less
        );
        assert_eq!(
            by_user_key(&rec("a", 2, true), &rec("a", 3, false)),
            Ordering::Less
        );
        assert_eq!(
            by_user_key(&rec("b", 1, false), &rec("a", 3, false)),
            Ordering::Greater
        );
    }
}
