//! Bottom-up bulk loader: writes a compact database from sorted streams of keys, bucket by
//! bucket, without building it in memory. Each tree level keeps only the node it is filling,
//! so memory is O(tree height × page size) per open bucket; pages are written in one
//! sequential pass, then the meta pages. With a fill percent of 0.9 and no freelist the result
//! looks like etcd's defrag output.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result, show};
use crate::file::{FileStorage, Storage};
use crate::meta::{self, Meta, NO_FREELIST};
use crate::page::{
    self, BUCKET_HEADER_SIZE, BUCKET_LEAF_FLAG, ELEM_SIZE, ElemSrc, FREELIST_FLAG, MAX_ELEMENTS,
    PAGE_HEADER_SIZE,
};

#[derive(Debug, Clone)]
pub struct BulkOptions {
    pub page_size: u32,
    /// How full each page is made (clamped to 0.1..=1.0). etcd's defrag uses 0.9.
    pub fill_percent: f64,
    /// Write an (empty) freelist page; `false` writes `NOFREELIST` like etcd.
    pub sync_freelist: bool,
    pub no_sync: bool,
}

impl Default for BulkOptions {
    fn default() -> Self {
        BulkOptions {
            page_size: 4096,
            fill_percent: 0.9,
            sync_freelist: false,
            no_sync: false,
        }
    }
}

/// What [`BulkLoader::finish`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BulkStats {
    pub pages: u64,
    pub keys: u64,
    pub buckets: u64,
    pub inline_buckets: u64,
    pub bytes: u64,
}

#[derive(Default)]
struct Elem {
    flags: u32,
    key: Vec<u8>,
    value: Vec<u8>,
    pgid: u64,
}

/// The node being filled on one level of a tree.
#[derive(Default)]
struct Level {
    elems: Vec<Elem>,
    size: usize,
    /// Nodes of this level already written.
    flushed: u64,
}

struct Builder {
    name: Vec<u8>,
    sequence: u64,
    levels: Vec<Level>,
    last_key: Option<Vec<u8>>,
    has_buckets: bool,
}

impl Builder {
    fn new(name: Vec<u8>) -> Builder {
        Builder {
            name,
            sequence: 0,
            levels: vec![Level::default()],
            last_key: None,
            has_buckets: false,
        }
    }
}

/// Builds a new database file from sorted input.
///
/// ```no_run
/// # fn main() -> bbolt::Result<()> {
/// let mut b = bbolt::bulk::BulkLoader::create("out.db".as_ref(), bbolt::bulk::BulkOptions::default())?;
/// b.begin_bucket(b"key")?;
/// b.put(b"k1", b"v1")?;
/// b.end_bucket()?;
/// b.finish()?;
/// # Ok(()) }
/// ```
pub struct BulkLoader {
    storage: Arc<dyn Storage>,
    path: PathBuf,
    ps: usize,
    threshold: usize,
    opts: BulkOptions,
    next: u64,
    freelist: u64,
    wbuf: Vec<u8>,
    wpos: u64,
    stack: Vec<Builder>,
    stats: BulkStats,
}

const WRITE_COMBINE: usize = 4 << 20;

impl BulkLoader {
    /// Creates `path`, which must not exist yet.
    pub fn create(path: &Path, opts: BulkOptions) -> Result<BulkLoader> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|source| Error::Io {
                path: path.to_path_buf(),
                op: "create",
                offset: 0,
                source,
            })?;
        BulkLoader::with_storage(Arc::new(FileStorage::new(file)), path, opts)
    }

    /// Writes through `storage` (an empty file); `path` names it in errors.
    pub fn with_storage(
        storage: Arc<dyn Storage>,
        path: &Path,
        opts: BulkOptions,
    ) -> Result<BulkLoader> {
        if !meta::valid_page_size(opts.page_size) {
            return Err(Error::InvalidArgument(format!(
                "page size {} is not a power of two in [512, 65536]",
                opts.page_size
            )));
        }
        let ps = opts.page_size as usize;
        let fill = if opts.fill_percent.is_nan() {
            0.5
        } else {
            opts.fill_percent.clamp(0.1, 1.0)
        };
        let mut b = BulkLoader {
            storage,
            path: path.to_path_buf(),
            ps,
            threshold: (ps as f64 * fill) as usize,
            next: 2,
            freelist: NO_FREELIST,
            wbuf: Vec::new(),
            wpos: 2 * ps as u64,
            stack: vec![Builder::new(Vec::new())],
            stats: BulkStats::default(),
            opts,
        };
        if b.opts.sync_freelist {
            let mut fl = vec![0u8; ps];
            page::put_header(&mut fl, 2, FREELIST_FLAG, 0, 0);
            b.freelist = 2;
            b.write(2, &fl)?;
            b.next = 3;
        }
        Ok(b)
    }

    fn io(&self, op: &'static str, offset: u64) -> impl FnOnce(std::io::Error) -> Error + '_ {
        move |source| Error::Io {
            path: self.path.clone(),
            op,
            offset,
            source,
        }
    }

    fn flush_buf(&mut self) -> Result<()> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let pos = self.wpos;
        self.storage
            .write_at(&self.wbuf, pos)
            .map_err(self.io("write pages", pos))?;
        self.wpos += self.wbuf.len() as u64;
        self.wbuf.clear();
        Ok(())
    }

    /// Pages are allocated in order, so writes are always contiguous.
    fn write(&mut self, pgid: u64, buf: &[u8]) -> Result<()> {
        debug_assert_eq!(pgid * self.ps as u64, self.wpos + self.wbuf.len() as u64);
        self.stats.pages += (buf.len() / self.ps) as u64;
        self.wbuf.extend_from_slice(buf);
        if self.wbuf.len() >= WRITE_COMBINE {
            self.flush_buf()?;
        }
        Ok(())
    }

    fn check_order(&mut self, key: &[u8]) -> Result<()> {
        if key.is_empty() {
            return Err(Error::KeyEmpty);
        }
        if key.len() > page::MAX_KEY_SIZE {
            return Err(Error::KeyTooLarge(key.len()));
        }
        let b = self
            .stack
            .last_mut()
            .ok_or_else(|| Error::InvalidArgument("loader is finished".into()))?;
        if let Some(last) = &b.last_key
            && key <= last.as_slice()
        {
            return Err(Error::InvalidArgument(format!(
                "key {} is not greater than the previous key {} of its bucket",
                show(key),
                show(last)
            )));
        }
        b.last_key = Some(key.to_vec());
        Ok(())
    }

    /// Opens bucket `name` inside the current bucket (top level when none is open). Names
    /// and keys of one bucket must come in strictly increasing order.
    pub fn begin_bucket(&mut self, name: &[u8]) -> Result<()> {
        self.check_order(name)?;
        if self.stack.len() > page::MAX_DEPTH {
            return Err(Error::InvalidArgument("buckets nested too deeply".into()));
        }
        self.stack.push(Builder::new(name.to_vec()));
        Ok(())
    }

    pub fn set_sequence(&mut self, seq: u64) -> Result<()> {
        if self.stack.len() < 2 {
            return Err(Error::InvalidArgument("no bucket is open".into()));
        }
        if let Some(b) = self.stack.last_mut() {
            b.sequence = seq;
        }
        Ok(())
    }

    /// Adds `key` to the current bucket.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        if self.stack.len() < 2 {
            return Err(Error::InvalidArgument("put outside of a bucket".into()));
        }
        if value.len() > page::MAX_VALUE_SIZE {
            return Err(Error::ValueTooLarge(value.len()));
        }
        self.check_order(key)?;
        self.stats.keys += 1;
        let top = self.stack.len() - 1;
        self.add(
            top,
            0,
            Elem {
                flags: 0,
                key: key.to_vec(),
                value: value.to_vec(),
                pgid: 0,
            },
        )
    }

    /// Closes the current bucket and files it in its parent.
    pub fn end_bucket(&mut self) -> Result<()> {
        if self.stack.len() < 2 {
            return Err(Error::InvalidArgument("no bucket is open".into()));
        }
        let top = self.stack.len() - 1;
        let value = self.close(top)?;
        let b = self
            .stack
            .pop()
            .ok_or_else(|| Error::InvalidArgument("no bucket is open".into()))?;
        self.stats.buckets += 1;
        let parent = self.stack.len() - 1;
        self.stack[parent].has_buckets = true;
        self.add(
            parent,
            0,
            Elem {
                flags: BUCKET_LEAF_FLAG,
                key: b.name,
                value,
                pgid: 0,
            },
        )
    }

    /// Adds an element to `level` of bucket `b`, writing the level's node first when the
    /// element would overfill it.
    fn add(&mut self, b: usize, level: usize, e: Elem) -> Result<()> {
        let el = ELEM_SIZE + e.key.len() + e.value.len();
        let lv = &self.stack[b].levels[level];
        if lv.elems.len() >= MAX_ELEMENTS || (lv.elems.len() >= 2 && lv.size + el > self.threshold)
        {
            self.flush_level(b, level)?;
        }
        let lv = &mut self.stack[b].levels[level];
        if lv.elems.is_empty() {
            lv.size = PAGE_HEADER_SIZE;
        }
        lv.size += el;
        lv.elems.push(e);
        Ok(())
    }

    /// Writes the node of `level` and files it in the level above.
    fn flush_level(&mut self, b: usize, level: usize) -> Result<()> {
        let lv = std::mem::take(&mut self.stack[b].levels[level]);
        let pgid = self.write_node(level == 0, &lv)?;
        let first = lv
            .elems
            .into_iter()
            .next()
            .map(|e| e.key)
            .unwrap_or_default();
        let bl = &mut self.stack[b];
        bl.levels[level].flushed = lv.flushed + 1;
        if bl.levels.len() == level + 1 {
            bl.levels.push(Level::default());
        }
        self.add(
            b,
            level + 1,
            Elem {
                flags: 0,
                key: first,
                value: Vec::new(),
                pgid,
            },
        )
    }

    fn write_node(&mut self, is_leaf: bool, lv: &Level) -> Result<u64> {
        let size = lv.size.max(PAGE_HEADER_SIZE);
        let pages = page::pages_for(size, self.ps);
        let pgid = self.next;
        self.next += pages as u64;
        let mut buf = page::alloc_buf(self.ps, pages, pgid);
        page::write_node(
            &mut buf,
            is_leaf,
            lv.elems.len(),
            lv.elems.iter().map(|e| ElemSrc {
                flags: e.flags,
                key: &e.key,
                value: &e.value,
                pgid: e.pgid,
            }),
        );
        self.write(pgid, &buf)?;
        Ok(pgid)
    }

    /// Finishes bucket `b`'s tree; returns its value for the parent (header, plus the leaf
    /// when it is small enough to be inline like Go would store it).
    fn close(&mut self, b: usize) -> Result<Vec<u8>> {
        let bl = &self.stack[b];
        let leaf = &bl.levels[0];
        let inline = b > 0
            && bl.levels.len() == 1
            && leaf.flushed == 0
            && !bl.has_buckets
            && leaf.size.max(PAGE_HEADER_SIZE) <= self.ps / 4;
        if inline {
            let size = leaf.size.max(PAGE_HEADER_SIZE);
            let mut v = vec![0u8; BUCKET_HEADER_SIZE + size];
            v[8..16].copy_from_slice(&bl.sequence.to_le_bytes());
            page::write_node(
                &mut v[BUCKET_HEADER_SIZE..],
                true,
                leaf.elems.len(),
                leaf.elems.iter().map(|e| ElemSrc {
                    flags: e.flags,
                    key: &e.key,
                    value: &e.value,
                    pgid: 0,
                }),
            );
            self.stats.inline_buckets += 1;
            return Ok(v);
        }
        let mut level = 0;
        let root = loop {
            let bl = &self.stack[b];
            let top = bl.levels.len() == level + 1;
            if top && bl.levels[level].flushed == 0 {
                // Everything on this level fits in one node: the root.
                let lv = std::mem::take(&mut self.stack[b].levels[level]);
                break self.write_node(level == 0, &lv)?;
            }
            if !bl.levels[level].elems.is_empty() {
                self.flush_level(b, level)?;
            }
            level += 1;
        };
        let mut v = vec![0u8; BUCKET_HEADER_SIZE];
        v[0..8].copy_from_slice(&root.to_le_bytes());
        v[8..16].copy_from_slice(&self.stack[b].sequence.to_le_bytes());
        Ok(v)
    }

    /// Closes open buckets, writes the root, syncs the data, then both meta pages.
    pub fn finish(mut self) -> Result<BulkStats> {
        while self.stack.len() > 1 {
            self.end_bucket()?;
        }
        let v = self.close(0)?;
        let root = page::le64(&v, 0).unwrap_or(0);
        self.flush_buf()?;
        let hwm = self.next;
        // Go's bbolt up to 1.3.6 refuses files shorter than 4096 bytes (it reads a full 4 KiB
        // first page to find the page size), which tiny databases with small pages can be.
        let len = (hwm * self.ps as u64).max(4096);
        self.storage.set_len(len).map_err(self.io("set_len", len))?;
        if !self.opts.no_sync {
            self.storage.sync_data().map_err(self.io("fdatasync", 0))?;
        }
        // Like a snapshot of a database: meta 0 holds txid 2, meta 1 the same tree at txid 1.
        let mut metas = Vec::with_capacity(2 * self.ps);
        for (slot, txid) in [(0u64, 2u64), (1, 1)] {
            let m = Meta::new(self.opts.page_size, root, self.freelist, hwm, txid);
            metas.extend_from_slice(&m.encode_page(slot, self.ps));
        }
        self.storage
            .write_at(&metas, 0)
            .map_err(self.io("write meta", 0))?;
        if !self.opts.no_sync {
            self.storage.sync_data().map_err(self.io("fdatasync", 0))?;
        }
        self.stats.bytes = len;
        Ok(self.stats)
    }
}
