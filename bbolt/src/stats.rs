//! Page, key and bucket counts of a database (the numbers `bbolt stats` and etcd's
//! `dbSize`/`dbSizeInUse` report).

use crate::cursor::Ctx;
use crate::error::{Corruption, Error, Result};
use crate::page::{self, BUCKET_HEADER_SIZE};
use crate::tx::ReadTx;

/// Counts for one top-level bucket (nested buckets included).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BucketStats {
    pub name: Vec<u8>,
    pub inline: bool,
    pub keys: u64,
    pub nested_buckets: u64,
    /// Branch and leaf pages including overflow pages.
    pub pages: u64,
    /// Levels of the bucket's own tree (1 = a single leaf).
    pub depth: u32,
    pub key_bytes: u64,
    pub value_bytes: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub page_size: u32,
    pub txid: u64,
    /// High-water mark (pages in use, including free ones below it).
    pub hwm: u64,
    pub file_len: u64,
    pub freelist_page: Option<u64>,
    pub freelist_pages: u64,
    /// Pages below the high-water mark that no tree uses.
    pub free_pages: u64,
    pub branch_pages: u64,
    pub branch_overflow: u64,
    pub leaf_pages: u64,
    pub leaf_overflow: u64,
    pub buckets: u64,
    pub inline_buckets: u64,
    pub keys: u64,
    pub key_bytes: u64,
    pub value_bytes: u64,
    pub top_level: Vec<BucketStats>,
}

impl Stats {
    /// `hwm × page size`: etcd's `dbSize`.
    pub fn size(&self) -> u64 {
        self.hwm * u64::from(self.page_size)
    }

    /// etcd's `dbSizeInUse`: size minus free pages.
    pub fn size_in_use(&self) -> u64 {
        self.size()
            .saturating_sub(self.free_pages * u64::from(self.page_size))
    }
}

/// Walks every tree of `tx`.
pub fn stats(tx: &ReadTx<'_>) -> Result<Stats> {
    let ctx = tx.ctx();
    let meta = *tx.meta();
    let mut s = Stats {
        page_size: tx.page_size() as u32,
        txid: meta.txid,
        hwm: meta.pgid,
        file_len: tx.file_len(),
        ..Default::default()
    };
    if meta.has_freelist() {
        let (h, _) = page::page_run(ctx.data, ctx.ps, meta.freelist, meta.pgid)?;
        s.freelist_page = Some(meta.freelist);
        s.freelist_pages = u64::from(h.overflow) + 1;
    }
    let root = ctx.page(meta.root)?;
    let mut seen = crate::bitmap::Bitmap::new(meta.pgid.min(tx.file_len() / ctx.ps as u64 + 1));
    let mut used = 2 + s.freelist_pages;
    let mut top = BucketStats::default();
    if root.is_leaf() {
        count_page(&mut s, &root);
        used += u64::from(root.overflow) + 1;
        for i in 0..root.len() {
            let e = root.leaf(i)?;
            if !e.is_bucket() {
                continue;
            }
            top.name = e.key.to_vec();
            walk_bucket(&ctx, &mut s, &mut seen, &mut top, e.value, root.id, 0)?;
            used += top.pages;
            s.top_level.push(std::mem::take(&mut top));
        }
    } else {
        // A root bucket with so many buckets that it branched: count without per-bucket detail.
        let mut agg = BucketStats::default();
        let v = root_value(meta.root);
        walk_bucket(&ctx, &mut s, &mut seen, &mut agg, &v, root.id, 0)?;
        s.buckets = s.buckets.saturating_sub(1);
        used += agg.pages;
    }
    s.free_pages = meta.pgid.saturating_sub(used);
    Ok(s)
}

fn root_value(root: u64) -> [u8; BUCKET_HEADER_SIZE] {
    let mut v = [0u8; BUCKET_HEADER_SIZE];
    v[..8].copy_from_slice(&root.to_le_bytes());
    v
}

fn count_page(s: &mut Stats, p: &page::Page<'_>) {
    if p.is_leaf() {
        s.leaf_pages += 1;
        s.leaf_overflow += u64::from(p.overflow);
    } else {
        s.branch_pages += 1;
        s.branch_overflow += u64::from(p.overflow);
    }
}

fn walk_bucket(
    ctx: &Ctx<'_>,
    s: &mut Stats,
    seen: &mut crate::bitmap::Bitmap,
    b: &mut BucketStats,
    value: &[u8],
    from: u64,
    nesting: usize,
) -> Result<()> {
    if nesting > page::MAX_DEPTH {
        return Err(Error::corrupt(
            from,
            0,
            Corruption::TooDeep(page::MAX_DEPTH),
        ));
    }
    let (root, _, inline) = page::bucket_value(value).ok_or_else(|| {
        Error::corrupt(
            from,
            0,
            Corruption::BucketValue {
                index: 0,
                len: value.len(),
            },
        )
    })?;
    s.buckets += 1;
    if nesting > 0 {
        b.nested_buckets += 1;
    }
    if let Some(bytes) = inline {
        s.inline_buckets += 1;
        if nesting == 0 {
            b.inline = true;
            b.depth = 0;
        }
        let p = page::Page::inline(bytes, from, 0)?;
        for i in 0..p.len() {
            let e = p.leaf(i)?;
            add_entry(s, b, e.key.len(), e.value.len());
        }
        return Ok(());
    }
    let mut stack = vec![(root, 1u32)];
    let mut nested: Vec<(Vec<u8>, u64)> = Vec::new();
    while let Some((pgid, depth)) = stack.pop() {
        if depth as usize > page::MAX_DEPTH {
            return Err(Error::corrupt(
                pgid,
                0,
                Corruption::TooDeep(page::MAX_DEPTH),
            ));
        }
        let p = ctx.page(pgid)?;
        // Each page is counted once; a second path to it means the file is damaged.
        if seen.set(pgid) {
            return Err(p.err(Corruption::SharedPage));
        }
        count_page(s, &p);
        b.pages += u64::from(p.overflow) + 1;
        if nesting == 0 {
            b.depth = b.depth.max(depth);
        }
        if p.is_leaf() {
            for i in 0..p.len() {
                let e = p.leaf(i)?;
                if e.is_bucket() {
                    nested.push((e.value.to_vec(), p.id));
                } else {
                    add_entry(s, b, e.key.len(), e.value.len());
                }
            }
        } else {
            for i in 0..p.len() {
                stack.push((p.branch(i)?.pgid, depth + 1));
            }
        }
    }
    for (v, from) in nested {
        walk_bucket(ctx, s, seen, b, &v, from, nesting + 1)?;
    }
    Ok(())
}

fn add_entry(s: &mut Stats, b: &mut BucketStats, k: usize, v: usize) {
    s.keys += 1;
    s.key_bytes += k as u64;
    s.value_bytes += v as u64;
    b.keys += 1;
    b.key_bytes += k as u64;
    b.value_bytes += v as u64;
}
