//! Folding a replayed database into the compacted one: etcd's history compaction at the last
//! revision (pass 1: an external sort by user key through the compaction rule; pass 2: the
//! kept revision keys, sorted, seeked in the source) bulk-loaded into a new defragmented file.

use std::cmp::Ordering;
use std::path::{Path, PathBuf};

use bbolt::bulk::{BulkLoader, BulkOptions};
use bbolt::{Bucket, Db, OpenOptions};

use super::sort::{ExternalSort, SortedRecords};
use super::{CompactError, io};
use crate::backend::{KEY_BUCKET, META_BUCKET};
use crate::mvcc::compact::{KeyRecord, Latest, compact_rev_value};
use crate::mvcc::kv::KeyValue;
use crate::mvcc::revision::{REV_KEY_LEN, Revision, parse_rev_key};
use crate::replay;

/// Bytes of the source database kept mapped while reading it.
const SOURCE_MAPPED_BUDGET: usize = 8 << 20;

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

#[cfg(test)]
mod tests {
    use super::*;

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
