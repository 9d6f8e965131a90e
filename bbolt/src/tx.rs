//! Transactions. A [`ReadTx`] is a consistent view of one committed meta. A [`WriteTx`]
//! changes copies of pages (copy-on-write) and commits them in the order that keeps the file
//! valid at every instant: data pages → fdatasync → meta page into slot `txid % 2` →
//! fdatasync. A dropped or failed transaction leaves the committed state untouched.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::alloc::{Alloc, CommitStats, Space};
use crate::bucket::{Bucket, BucketMut, Forest, ROOT_BUCKET, TxParts};
use crate::cursor::{Ctx, Cursor};
use crate::error::{Error, Result};
use crate::file::{MappedFile, Storage};
use crate::freelist::{self, Freelist};
use crate::heap::Heap;
use crate::meta::{self, Meta, NO_FREELIST};
use crate::node::Pager;
use crate::page;

/// Writer-side settings (from `OpenOptions`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct TxConfig {
    pub read_only: bool,
    pub sync_freelist: bool,
    pub append_only: bool,
    pub no_sync: bool,
    pub mapped_budget: usize,
    pub keep_buffers: usize,
}

pub(crate) struct Current {
    pub meta: Meta,
    pub map: Arc<MappedFile>,
}

#[derive(Default)]
pub(crate) struct WriterState {
    /// The free set, loaded at the first write transaction (reuse mode only).
    pub freelist: Option<Freelist>,
    pub poisoned: bool,
    /// Buffers of the last write transaction, emptied, for the next one.
    pub spare: Spare,
}

/// A finished write transaction's write-combining buffer and node-heap chunks, up to
/// `OpenOptions::keep_buffers` bytes: reusing them saves each transaction mapping, faulting
/// in and unmapping megabytes of fresh memory.
#[derive(Default)]
pub(crate) struct Spare {
    wbuf: Vec<u8>,
    heap: Vec<Vec<u8>>,
}

/// State shared by the database handle and its transactions.
pub(crate) struct Shared {
    pub path: PathBuf,
    pub storage: Arc<dyn Storage>,
    pub map_file: File,
    pub ps: usize,
    pub cfg: TxConfig,
    pub current: Mutex<Current>,
    /// Open read transactions by txid (decides when freed pages may be reused).
    pub readers: Mutex<BTreeMap<u64, usize>>,
    pub writer: Mutex<WriterState>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data behind; keep going.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub fn current(&self) -> (Meta, Arc<MappedFile>) {
        let c = lock(&self.current);
        (c.meta, c.map.clone())
    }

    fn io(&self, op: &'static str, offset: u64) -> impl FnOnce(std::io::Error) -> Error + '_ {
        move |source| Error::Io {
            path: self.path.clone(),
            op,
            offset,
            source,
        }
    }
}

enum Src<'a> {
    Map(Arc<MappedFile>),
    Bytes(&'a [u8]),
}

/// A read-only view of one committed state. Slices it returns borrow the mapped file.
pub struct ReadTx<'a> {
    src: Src<'a>,
    meta: Meta,
    ps: usize,
    shared: Option<&'a Shared>,
}

impl<'a> ReadTx<'a> {
    pub(crate) fn begin(shared: &'a Shared) -> ReadTx<'a> {
        let c = lock(&shared.current);
        *lock(&shared.readers).entry(c.meta.txid).or_default() += 1;
        ReadTx {
            src: Src::Map(c.map.clone()),
            meta: c.meta,
            ps: shared.ps,
            shared: Some(shared),
        }
    }

    /// A read transaction over a database image in memory (tests, fuzzing, tools that already
    /// hold the bytes).
    pub fn from_bytes(data: &'a [u8]) -> Result<ReadTx<'a>> {
        let (ps, m0, m1) = meta::load(data);
        if data.len() < 2 * ps as usize {
            return Err(Error::TooSmall {
                path: PathBuf::from("<memory>"),
                len: data.len() as u64,
            });
        }
        let meta = meta::choose(m0, m1).map_err(|(meta0, meta1)| Error::NoValidMeta {
            path: PathBuf::from("<memory>"),
            meta0,
            meta1,
        })?;
        Ok(ReadTx {
            src: Src::Bytes(data),
            meta,
            ps: ps as usize,
            shared: None,
        })
    }

    pub(crate) fn data(&self) -> &[u8] {
        match &self.src {
            Src::Map(m) => m.bytes(),
            Src::Bytes(b) => b,
        }
    }

    pub(crate) fn mapped(&self) -> Option<&MappedFile> {
        match &self.src {
            Src::Map(m) => Some(m),
            Src::Bytes(_) => None,
        }
    }

    pub(crate) fn ctx(&self) -> Ctx<'_> {
        Ctx {
            data: self.data(),
            ps: self.ps,
            hwm: self.meta.pgid,
            touch: self.mapped(),
        }
    }

    /// The root bucket; its entries are the top-level buckets.
    pub fn root(&self) -> Bucket<'_> {
        Bucket::from_root(self.ctx(), self.meta.root, self.meta.root_sequence)
    }

    /// Top-level bucket `name`.
    pub fn bucket(&self, name: &[u8]) -> Result<Option<Bucket<'_>>> {
        self.root().bucket(name)
    }

    /// A cursor over the top-level buckets.
    pub fn cursor(&self) -> Cursor<'_> {
        self.root().cursor()
    }

    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    pub fn txid(&self) -> u64 {
        self.meta.txid
    }

    pub fn page_size(&self) -> usize {
        self.ps
    }

    /// Bytes in use: high-water mark × page size (what etcd reports as the db size).
    pub fn size(&self) -> u64 {
        self.meta.pgid.saturating_mul(self.ps as u64)
    }

    /// Length of the file (or image) behind this transaction.
    pub fn file_len(&self) -> u64 {
        self.data().len() as u64
    }
}

impl Drop for ReadTx<'_> {
    fn drop(&mut self) {
        if let Some(s) = self.shared {
            let mut r = lock(&s.readers);
            if let Some(n) = r.get_mut(&self.meta.txid) {
                *n -= 1;
                if *n == 0 {
                    r.remove(&self.meta.txid);
                }
            }
        }
    }
}

pub(crate) struct TxInner {
    map: Arc<MappedFile>,
    ps: usize,
    /// Committed high-water mark: the pages this transaction may read.
    hwm0: u64,
    meta: Meta,
    forest: Forest,
    alloc: Alloc,
}

impl TxParts for TxInner {
    fn parts(&mut self) -> (&mut Forest, Ctx<'_>, &mut dyn Pager) {
        let ctx = Ctx {
            data: self.map.bytes(),
            ps: self.ps,
            hwm: self.hwm0,
            touch: Some(&self.map),
        };
        (&mut self.forest, ctx, &mut self.alloc)
    }

    fn view(&self) -> (&Forest, Ctx<'_>) {
        let ctx = Ctx {
            data: self.map.bytes(),
            ps: self.ps,
            hwm: self.hwm0,
            touch: Some(&self.map),
        };
        (&self.forest, ctx)
    }
}

/// The only writer of a database at a time. Dropping it without [`commit`](Self::commit)
/// discards every change.
pub struct WriteTx<'db> {
    shared: &'db Shared,
    guard: MutexGuard<'db, WriterState>,
    inner: TxInner,
    finished: bool,
}

impl<'db> WriteTx<'db> {
    pub(crate) fn begin(shared: &'db Shared) -> Result<WriteTx<'db>> {
        if shared.cfg.read_only {
            return Err(Error::ReadOnly);
        }
        let mut guard = lock(&shared.writer);
        if guard.poisoned {
            return Err(Error::Poisoned);
        }
        let (meta, map) = shared.current();
        let space = if shared.cfg.append_only {
            Space::AppendOnly
        } else {
            let mut fl = match guard.freelist.take() {
                Some(fl) => fl,
                None => load_freelist(shared.ps, &meta, &map)?,
            };
            let min_reader = lock(&shared.readers)
                .keys()
                .next()
                .copied()
                .unwrap_or(u64::MAX);
            fl.release_below(min_reader);
            Space::Tracked(fl)
        };
        let txid = meta.txid + 1;
        let mut txmeta = meta;
        txmeta.txid = txid;
        let spare = std::mem::take(&mut guard.spare);
        let mut forest = Forest::new(meta.root, meta.root_sequence);
        forest.ar.heap = Heap::with_spare(spare.heap);
        Ok(WriteTx {
            shared,
            guard,
            inner: TxInner {
                ps: shared.ps,
                hwm0: meta.pgid,
                forest,
                alloc: Alloc {
                    space,
                    txid,
                    next: meta.pgid,
                    taken: Vec::new(),
                    storage: shared.storage.clone(),
                    path: shared.path.clone(),
                    ps: shared.ps,
                    wbuf: spare.wbuf,
                    wpos: 0,
                    stats: CommitStats::default(),
                },
                map,
                meta: txmeta,
            },
            finished: false,
        })
    }

    fn root(&mut self) -> BucketMut<'_> {
        BucketMut::new(&mut self.inner, ROOT_BUCKET)
    }

    /// Top-level bucket `name`.
    pub fn bucket_mut(&mut self, name: &[u8]) -> Result<Option<BucketMut<'_>>> {
        let (f, ctx, _) = self.inner.parts();
        let c = f.open_child(ROOT_BUCKET, ctx, name)?;
        Ok(c.map(|c| BucketMut::new(&mut self.inner, c)))
    }

    pub fn create_bucket(&mut self, name: &[u8]) -> Result<BucketMut<'_>> {
        let (f, ctx, _) = self.inner.parts();
        let c = f.create_bucket(ROOT_BUCKET, ctx, name)?;
        Ok(BucketMut::new(&mut self.inner, c))
    }

    pub fn create_bucket_if_not_exists(&mut self, name: &[u8]) -> Result<BucketMut<'_>> {
        let (f, ctx, _) = self.inner.parts();
        let c = match f.open_child(ROOT_BUCKET, ctx, name)? {
            Some(c) => c,
            None => f.create_bucket(ROOT_BUCKET, ctx, name)?,
        };
        Ok(BucketMut::new(&mut self.inner, c))
    }

    pub fn delete_bucket(&mut self, name: &[u8]) -> Result<()> {
        self.root().delete_bucket(name)
    }

    /// A cursor over the top-level buckets as this transaction sees them.
    pub fn cursor(&self) -> Result<Cursor<'_>> {
        let (f, ctx) = self.inner.view();
        f.cursor(ROOT_BUCKET, ctx)
    }

    pub fn txid(&self) -> u64 {
        self.inner.meta.txid
    }

    /// Approximate heap memory held by this transaction's changes. Callers doing large jobs
    /// commit when this passes their budget.
    pub fn dirty_bytes(&self) -> usize {
        let ar = &self.inner.forest.ar;
        ar.heap.used
            + ar.inode_count * std::mem::size_of::<crate::node::Inode>()
            + ar.nodes.len() * std::mem::size_of::<crate::node::Node>()
    }

    /// Discards all changes.
    pub fn rollback(mut self) {
        self.finish_rollback();
    }

    fn finish_rollback(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        let alloc = &mut self.inner.alloc;
        if let Space::Tracked(fl) = std::mem::replace(&mut alloc.space, Space::AppendOnly) {
            let mut fl = fl;
            fl.rollback(alloc.txid);
            for &(id, n) in &alloc.taken {
                fl.unallocate(id, n);
            }
            self.guard.freelist = Some(fl);
        }
    }

    /// Writes all changes durably. On error nothing is committed; if the error came after
    /// the meta page was written, the database refuses further writes ([`Error::Poisoned`]).
    pub fn commit(mut self) -> Result<CommitStats> {
        match self.commit_inner() {
            Ok(stats) => Ok(stats),
            Err(e) => {
                self.finish_rollback();
                Err(e)
            }
        }
    }

    fn commit_inner(&mut self) -> Result<CommitStats> {
        let shared = self.shared;
        let ps = self.inner.ps;
        {
            let (f, ctx, pager) = self.inner.parts();
            f.rebalance(ROOT_BUCKET, ctx, pager)?;
            f.spill(ROOT_BUCKET, ctx, pager)?;
        }
        let inner = &mut self.inner;
        let old = inner.meta;
        inner.meta.root = inner.forest.buckets[ROOT_BUCKET].root;
        if old.has_freelist() {
            let (h, _) = page::page_run(inner.map.bytes(), ps, old.freelist, inner.hwm0)?;
            inner.alloc.free(old.freelist, h.overflow)?;
        }
        let alloc = &mut inner.alloc;
        let mut freelist_write = None;
        if shared.cfg.sync_freelist
            && let Space::Tracked(fl) = &alloc.space
        {
            let pages = fl.page_size_estimate() / ps + 1;
            let id = alloc.allocate(pages)?;
            freelist_write = Some((id, pages));
        }
        inner.meta.freelist = NO_FREELIST;
        if let Some((id, pages)) = freelist_write
            && let Space::Tracked(fl) = &alloc.space
        {
            let buf = fl.write_page(id, pages, ps);
            alloc.write(id, buf)?;
            inner.meta.freelist = id;
        }
        inner.meta.pgid = alloc.next;
        alloc.flush()?;
        if !shared.cfg.no_sync {
            shared
                .storage
                .sync_data()
                .map_err(shared.io("fdatasync data", 0))?;
        }
        let txid = inner.meta.txid;
        let slot = txid % 2;
        let meta_page = inner.meta.encode_page(slot, ps);
        let off = slot * ps as u64;
        // From here on a failure may leave the new meta on disk: refuse further writes.
        if let Err(e) = shared
            .storage
            .write_at(&meta_page, off)
            .map_err(shared.io("write meta", off))
        {
            self.guard.poisoned = true;
            return Err(e);
        }
        if !shared.cfg.no_sync
            && let Err(e) = shared
                .storage
                .sync_data()
                .map_err(shared.io("fdatasync meta", off))
        {
            self.guard.poisoned = true;
            return Err(e);
        }
        let mut meta = inner.meta;
        meta.checksum = meta.sum64();
        let map = if meta.pgid.saturating_mul(ps as u64) > inner.map.bytes().len() as u64 {
            match MappedFile::map(&shared.map_file, shared.cfg.mapped_budget) {
                Ok(m) => Arc::new(m),
                Err(source) => {
                    // Committed on disk, but this handle cannot see it: stop writing.
                    self.guard.poisoned = true;
                    return Err(Error::Io {
                        path: shared.path.clone(),
                        op: "mmap",
                        offset: 0,
                        source,
                    });
                }
            }
        } else {
            inner.map.clone()
        };
        // Serializing the spilled nodes read their old bytes through the map without
        // counting them (they were counted once, when the nodes were loaded): drop them now
        // so a transaction that rewrote many pages does not leave them all resident.
        if shared.cfg.mapped_budget > 0 {
            inner.map.release();
        }
        {
            let mut c = lock(&shared.current);
            c.meta = meta;
            c.map = map;
        }
        self.finished = true;
        let alloc = &mut self.inner.alloc;
        if let Space::Tracked(fl) = std::mem::replace(&mut alloc.space, Space::AppendOnly) {
            self.guard.freelist = Some(fl);
        }
        let mut stats = alloc.stats;
        stats.txid = txid;
        stats.hwm = meta.pgid;
        Ok(stats)
    }
}

impl Drop for WriteTx<'_> {
    fn drop(&mut self) {
        self.finish_rollback();
        let mut wbuf = std::mem::take(&mut self.inner.alloc.wbuf);
        wbuf.clear();
        let keep = self.shared.cfg.keep_buffers;
        if wbuf.capacity() > keep {
            wbuf = Vec::new();
        }
        let heap = std::mem::take(&mut self.inner.forest.ar.heap)
            .into_spare(keep.saturating_sub(wbuf.capacity()));
        self.guard.spare = Spare { wbuf, heap };
    }
}

fn load_freelist(ps: usize, meta: &Meta, map: &MappedFile) -> Result<Freelist> {
    if meta.has_freelist() {
        let (ids, _) = Freelist::read_page(map.bytes(), ps, meta.freelist, meta.pgid)?;
        Freelist::from_ids(ids.into_iter(), meta.pgid, meta.freelist)
    } else {
        freelist::rebuild(map.bytes(), ps, meta, Some(map))
    }
}
