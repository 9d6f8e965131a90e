//! Buckets: named key spaces, nested inside other buckets, stored inline in their parent's
//! leaf (small, no sub-buckets) or as their own tree of pages. [`Bucket`] reads committed
//! data; [`BucketMut`] changes a bucket inside a write transaction (upstream `bucket.go`).

use std::collections::{BTreeMap, HashMap};

use crate::cursor::{Ctx, Cursor, Entry, Overlay, Root};
use crate::error::{Corruption, Error, Result};
use crate::heap::Bytes;
use crate::node::{self, Arena, Inode, NodeId, Pager, Tree};
use crate::page::{self, BUCKET_HEADER_SIZE, BUCKET_LEAF_FLAG, Page};

pub(crate) use crate::page::bucket_value as parse_value;

/// The 32-byte value of a new, empty inline bucket.
fn empty_bucket_value() -> Vec<u8> {
    let mut v = vec![0u8; BUCKET_HEADER_SIZE + page::PAGE_HEADER_SIZE];
    v[BUCKET_HEADER_SIZE + 8..BUCKET_HEADER_SIZE + 10]
        .copy_from_slice(&page::LEAF_FLAG.to_le_bytes());
    v
}

fn check_key(key: &[u8]) -> Result<()> {
    if key.is_empty() {
        return Err(Error::KeyEmpty);
    }
    if key.len() > page::MAX_KEY_SIZE {
        return Err(Error::KeyTooLarge(key.len()));
    }
    Ok(())
}

/// A bucket of a read transaction.
#[derive(Clone, Copy)]
pub struct Bucket<'a> {
    ctx: Ctx<'a>,
    root: Root<'a>,
    root_pgid: u64,
    sequence: u64,
}

impl<'a> Bucket<'a> {
    pub(crate) fn from_root(ctx: Ctx<'a>, root: u64, sequence: u64) -> Bucket<'a> {
        Bucket {
            ctx,
            root: Root::Page(root),
            root_pgid: root,
            sequence,
        }
    }

    /// Opens the bucket stored in a leaf entry.
    pub(crate) fn from_entry(ctx: Ctx<'a>, e: &Entry<'a>) -> Result<Bucket<'a>> {
        let off = ctx.offset_of(e.value);
        let page = off / ctx.ps as u64;
        let (root, sequence, inline) = parse_value(e.value).ok_or_else(|| {
            Error::corrupt(
                page,
                off,
                Corruption::BucketValue {
                    index: 0,
                    len: e.value.len(),
                },
            )
        })?;
        let root_ref = match inline {
            Some(bytes) => {
                Root::Inline(Page::inline(bytes, page, off + BUCKET_HEADER_SIZE as u64)?)
            }
            None => Root::Page(root),
        };
        Ok(Bucket {
            ctx,
            root: root_ref,
            root_pgid: root,
            sequence,
        })
    }

    pub fn cursor(&self) -> Cursor<'a> {
        Cursor::new(self.ctx, None, self.root)
    }

    /// Opens the nested bucket stored in entry `e` of this bucket (from a cursor).
    pub fn bucket_at(&self, e: &Entry<'a>) -> Result<Bucket<'a>> {
        Bucket::from_entry(self.ctx, e)
    }

    /// The value of `key`; `None` when absent or when `key` names a nested bucket.
    pub fn get(&self, key: &[u8]) -> Result<Option<&'a [u8]>> {
        let mut c = self.cursor();
        Ok(c.seek_slot(key)?
            .filter(|e| !e.is_bucket())
            .map(|e| e.value))
    }

    /// The nested bucket `name`.
    pub fn bucket(&self, name: &[u8]) -> Result<Option<Bucket<'a>>> {
        let mut c = self.cursor();
        match c.seek_slot(name)? {
            Some(e) if e.is_bucket() => Bucket::from_entry(self.ctx, &e).map(Some),
            _ => Ok(None),
        }
    }

    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// Root page id; `None` for an inline bucket.
    pub fn root_page(&self) -> Option<u64> {
        (self.root_pgid != 0).then_some(self.root_pgid)
    }
}

pub(crate) type BucketId = usize;
pub(crate) const ROOT_BUCKET: BucketId = 0;

/// A bucket touched by a write transaction.
#[derive(Debug)]
pub(crate) struct BState {
    pub root: u64,
    pub sequence: u64,
    /// The inline page (when `root == 0`).
    pub inline: Option<Bytes>,
    pub root_node: Option<NodeId>,
    pub by_pgid: HashMap<u64, NodeId>,
    /// Opened child buckets by name.
    pub children: BTreeMap<Vec<u8>, BucketId>,
    pub fill_percent: f64,
    /// The rightmost leaf when the last put appended to it: a key greater than its last key
    /// goes there without a search (revision keys arrive in increasing order).
    pub append_leaf: Option<NodeId>,
}

impl BState {
    pub fn new(root: u64, sequence: u64, inline: Option<Bytes>) -> BState {
        BState {
            root,
            sequence,
            inline,
            root_node: None,
            by_pgid: HashMap::new(),
            children: BTreeMap::new(),
            fill_percent: DEFAULT_FILL_PERCENT,
            append_leaf: None,
        }
    }
}

pub const DEFAULT_FILL_PERCENT: f64 = 0.5;

/// All buckets and nodes a write transaction has touched.
#[derive(Debug, Default)]
pub(crate) struct Forest {
    pub ar: Arena,
    pub buckets: Vec<BState>,
}

impl Forest {
    pub fn new(root: u64, sequence: u64) -> Forest {
        Forest {
            ar: Arena::default(),
            buckets: vec![BState::new(root, sequence, None)],
        }
    }

    fn tree<'s>(&'s mut self, b: BucketId, ctx: &Ctx<'s>) -> Tree<'s> {
        let Forest { ar, buckets } = self;
        let st = &mut buckets[b];
        Tree {
            ar,
            by_pgid: &mut st.by_pgid,
            map: ctx.data,
            ps: ctx.ps,
            hwm: ctx.hwm,
            fill_percent: st.fill_percent,
        }
    }

    fn root_ref<'s>(&'s self, b: BucketId, ctx: &Ctx<'s>) -> Result<Root<'s>> {
        let st = &self.buckets[b];
        if st.root != 0 {
            return Ok(Root::Page(st.root));
        }
        if let Some(n) = st.root_node {
            return Ok(Root::Node(&self.ar.nodes[n]));
        }
        let bytes = st
            .inline
            .map(|b| b.get(self.ar.mem(ctx.data)))
            .unwrap_or(&[]);
        Ok(Root::Inline(Page::inline(bytes, 0, ctx.offset_of(bytes))?))
    }

    pub fn cursor<'s>(&'s self, b: BucketId, ctx: Ctx<'s>) -> Result<Cursor<'s>> {
        let root = self.root_ref(b, &ctx)?;
        let overlay = Overlay {
            ar: &self.ar,
            by_pgid: &self.buckets[b].by_pgid,
        };
        Ok(Cursor::new(ctx, Some(overlay), root))
    }

    /// Finds `key`: the branch path to its leaf slot and the exact entry's flags.
    fn seek(&self, b: BucketId, ctx: Ctx<'_>, key: &[u8]) -> Result<(Vec<usize>, Option<u32>)> {
        let (path, found, _) = self.seek_edge(b, ctx, key)?;
        Ok((path, found))
    }

    /// [`seek`](Self::seek), and whether the slot is past the last key of the bucket.
    fn seek_edge(
        &self,
        b: BucketId,
        ctx: Ctx<'_>,
        key: &[u8],
    ) -> Result<(Vec<usize>, Option<u32>, bool)> {
        let mut c = self.cursor(b, ctx)?;
        let found = c.seek_slot(key)?;
        Ok((c.branch_path(), found.map(|e| e.flags), c.at_right_edge()))
    }

    fn root_node(&mut self, b: BucketId, ctx: &Ctx<'_>) -> Result<NodeId> {
        if let Some(n) = self.buckets[b].root_node {
            return Ok(n);
        }
        let st = &self.buckets[b];
        let id = if st.root == 0 {
            // The inline page may live on the heap the new node's copies go to.
            let src = st
                .inline
                .map(|x| x.get(self.ar.mem(ctx.data)))
                .unwrap_or(&[]);
            let off = ctx.offset_of(src);
            let bytes = src.to_vec();
            let p = Page::inline(&bytes, 0, off)?;
            self.ar.from_page(&p, ctx.data, None)?
        } else {
            let root = st.root;
            self.tree(b, ctx).node(root, None, None)?
        };
        self.buckets[b].root_node = Some(id);
        Ok(id)
    }

    /// Materializes the nodes along `path` and returns the leaf.
    fn materialize(&mut self, b: BucketId, ctx: &Ctx<'_>, path: &[usize]) -> Result<NodeId> {
        let mut n = self.root_node(b, ctx)?;
        let mut t = self.tree(b, ctx);
        for &i in path {
            n = t.child_at(n, i)?;
        }
        Ok(n)
    }

    pub fn get<'s>(&'s self, b: BucketId, ctx: Ctx<'s>, key: &[u8]) -> Result<Option<&'s [u8]>> {
        let mut c = self.cursor(b, ctx)?;
        Ok(c.seek_slot(key)?
            .filter(|e| !e.is_bucket())
            .map(|e| e.value))
    }

    pub fn put(&mut self, b: BucketId, ctx: Ctx<'_>, key: &[u8], value: &[u8]) -> Result<()> {
        check_key(key)?;
        if value.len() > page::MAX_VALUE_SIZE {
            return Err(Error::ValueTooLarge(value.len()));
        }
        if let Some(leaf) = self.buckets[b].append_leaf {
            let n = &self.ar.nodes[leaf];
            if !n.dead
                && n.is_leaf
                && n.inodes
                    .last()
                    .is_some_and(|l| key > l.key.get(self.ar.mem(ctx.data)))
            {
                let ino = Inode {
                    flags: 0,
                    pgid: 0,
                    key: self.ar.heap.alloc(key),
                    value: self.ar.heap.alloc(value),
                };
                self.ar.push(leaf, ino);
                return Ok(());
            }
        }
        let ino = Inode {
            flags: 0,
            pgid: 0,
            key: self.ar.heap.alloc(key),
            value: self.ar.heap.alloc(value),
        };
        let (path, found, edge) = self.seek_edge(b, ctx, key)?;
        if found.is_some_and(|f| f & BUCKET_LEAF_FLAG != 0) {
            return Err(Error::IncompatibleValue { key: key.to_vec() });
        }
        let leaf = self.materialize(b, &ctx, &path)?;
        self.ar.put(leaf, ctx.data, key, ino);
        if edge {
            self.buckets[b].append_leaf = Some(leaf);
        }
        Ok(())
    }

    pub fn delete(&mut self, b: BucketId, ctx: Ctx<'_>, key: &[u8]) -> Result<bool> {
        self.buckets[b].append_leaf = None;
        let (path, found) = self.seek(b, ctx, key)?;
        match found {
            None => return Ok(false),
            Some(f) if f & BUCKET_LEAF_FLAG != 0 => {
                return Err(Error::IncompatibleValue { key: key.to_vec() });
            }
            Some(_) => {}
        }
        let leaf = self.materialize(b, &ctx, &path)?;
        Ok(self.ar.del(leaf, ctx.data, key))
    }

    /// Opens child bucket `name` of `b`.
    pub fn open_child(
        &mut self,
        b: BucketId,
        ctx: Ctx<'_>,
        name: &[u8],
    ) -> Result<Option<BucketId>> {
        if let Some(&c) = self.buckets[b].children.get(name) {
            return Ok(Some(c));
        }
        let value = {
            let mut c = self.cursor(b, ctx)?;
            match c.seek_slot(name)? {
                Some(e) if e.is_bucket() => e.value.to_vec(),
                _ => return Ok(None),
            }
        };
        let raw = &value[..];
        let off = 0;
        let (root, seq, inline) = parse_value(raw).ok_or_else(|| {
            Error::corrupt(
                off / ctx.ps as u64,
                off,
                Corruption::BucketValue {
                    index: 0,
                    len: raw.len(),
                },
            )
        })?;
        let inline = inline.map(|s| self.ar.heap.alloc(s));
        let id = self.buckets.len();
        self.buckets.push(BState::new(root, seq, inline));
        self.buckets[b].children.insert(name.to_vec(), id);
        Ok(Some(id))
    }

    pub fn create_bucket(&mut self, b: BucketId, ctx: Ctx<'_>, name: &[u8]) -> Result<BucketId> {
        check_key(name)?;
        self.buckets[b].append_leaf = None;
        let (path, found) = self.seek(b, ctx, name)?;
        match found {
            Some(f) if f & BUCKET_LEAF_FLAG != 0 => {
                return Err(Error::BucketExists {
                    name: name.to_vec(),
                });
            }
            Some(_) => return Err(Error::IncompatibleValue { key: name.to_vec() }),
            None => {}
        }
        let leaf = self.materialize(b, &ctx, &path)?;
        let ino = Inode {
            flags: BUCKET_LEAF_FLAG,
            pgid: 0,
            key: self.ar.heap.alloc(name),
            value: self.ar.heap.alloc(&empty_bucket_value()),
        };
        self.ar.put(leaf, ctx.data, name, ino);
        // A stale handle from a bucket deleted earlier in this transaction must not be reused.
        self.buckets[b].children.remove(name);
        self.open_child(b, ctx, name)?
            .ok_or_else(|| Error::BucketNotFound {
                name: name.to_vec(),
            })
    }

    pub fn delete_bucket(
        &mut self,
        b: BucketId,
        ctx: Ctx<'_>,
        pager: &mut dyn Pager,
        name: &[u8],
    ) -> Result<()> {
        self.buckets[b].append_leaf = None;
        let Some(child) = self.open_child(b, ctx, name)? else {
            let (_, found) = self.seek(b, ctx, name)?;
            return Err(match found {
                Some(_) => Error::IncompatibleValue { key: name.to_vec() },
                None => Error::BucketNotFound {
                    name: name.to_vec(),
                },
            });
        };
        // Nested buckets first; their names are collected before changing anything.
        let mut nested = Vec::new();
        {
            let mut c = self.cursor(child, ctx)?;
            let mut e = c.first()?;
            while let Some(x) = e {
                if x.is_bucket() {
                    nested.push(x.key.to_vec());
                }
                e = c.next()?;
            }
        }
        for n in nested {
            self.delete_bucket(child, ctx, pager, &n)?;
        }
        self.buckets[b].children.remove(name);
        self.free_pages(child, ctx, pager)?;
        let (path, _) = self.seek(b, ctx, name)?;
        let leaf = self.materialize(b, &ctx, &path)?;
        self.ar.del(leaf, ctx.data, name);
        Ok(())
    }

    /// Frees every page of bucket `b`'s tree (upstream `Bucket.free`).
    fn free_pages(&mut self, b: BucketId, ctx: Ctx<'_>, pager: &mut dyn Pager) -> Result<()> {
        let root = self.buckets[b].root;
        if root == 0 {
            return Ok(());
        }
        let mut stack = vec![(root, 0usize)];
        while let Some((pgid, depth)) = stack.pop() {
            if depth > page::MAX_DEPTH {
                return Err(Error::corrupt(
                    pgid,
                    0,
                    Corruption::TooDeep(page::MAX_DEPTH),
                ));
            }
            if let Some(&n) = self.buckets[b].by_pgid.get(&pgid) {
                let node = &self.ar.nodes[n];
                if !node.is_leaf {
                    stack.extend(node.inodes.iter().map(|i| (i.pgid, depth + 1)));
                }
                self.ar.free(n, pager)?;
            } else {
                let p = ctx.page(pgid)?;
                if !p.is_leaf() {
                    for i in 0..p.len() {
                        stack.push((p.branch(i)?.pgid, depth + 1));
                    }
                }
                pager.free(pgid, p.overflow)?;
            }
        }
        self.buckets[b].root = 0;
        Ok(())
    }

    pub fn set_sequence(&mut self, b: BucketId, ctx: Ctx<'_>, seq: u64) -> Result<()> {
        // Materializing the root marks the bucket as changed so the new value is written.
        self.root_node(b, &ctx)?;
        self.buckets[b].sequence = seq;
        Ok(())
    }

    /// Merges underfull nodes of `b` and its opened children.
    pub fn rebalance(&mut self, b: BucketId, ctx: Ctx<'_>, pager: &mut dyn Pager) -> Result<()> {
        self.buckets[b].append_leaf = None;
        let mut ids: Vec<NodeId> = self.buckets[b].by_pgid.values().copied().collect();
        ids.sort_unstable();
        for id in ids {
            if !self.ar.nodes[id].dead {
                self.tree(b, &ctx).rebalance(id, pager)?;
            }
        }
        let children: Vec<BucketId> = self.buckets[b].children.values().copied().collect();
        for c in children {
            self.rebalance(c, ctx, pager)?;
        }
        Ok(())
    }

    /// Writes bucket `b` and its changed children (upstream `Bucket.spill`).
    pub fn spill(&mut self, b: BucketId, ctx: Ctx<'_>, pager: &mut dyn Pager) -> Result<()> {
        self.buckets[b].append_leaf = None;
        let children: Vec<(Vec<u8>, BucketId)> = self.buckets[b]
            .children
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        for (name, c) in children {
            let value = match self.buckets[c].root_node {
                Some(rn) if node::inlineable(&self.ar, rn, ctx.ps) => {
                    self.free_pages(c, ctx, pager)?;
                    node::bucket_value(0, self.buckets[c].sequence, Some((&self.ar, rn, ctx.data)))
                }
                _ => {
                    self.spill(c, ctx, pager)?;
                    if self.buckets[c].root_node.is_none() {
                        // Opened but unchanged: its value in the parent is still right.
                        continue;
                    }
                    node::bucket_value(self.buckets[c].root, self.buckets[c].sequence, None)
                }
            };
            let (path, found) = self.seek(b, ctx, &name)?;
            if found.is_none_or(|f| f & BUCKET_LEAF_FLAG == 0) {
                return Err(Error::BucketNotFound { name });
            }
            let leaf = self.materialize(b, &ctx, &path)?;
            let ino = Inode {
                flags: BUCKET_LEAF_FLAG,
                pgid: 0,
                key: self.ar.heap.alloc(&name),
                value: self.ar.heap.alloc(&value),
            };
            self.ar.put(leaf, ctx.data, &name, ino);
        }
        let Some(rn) = self.buckets[b].root_node else {
            return Ok(());
        };
        self.tree(b, &ctx).spill(rn, pager)?;
        let top = self.ar.root_of(rn);
        self.buckets[b].root_node = Some(top);
        self.buckets[b].root = self.ar.nodes[top].pgid;
        Ok(())
    }
}

/// What [`BucketMut`] needs from its transaction.
pub(crate) trait TxParts {
    fn parts(&mut self) -> (&mut Forest, Ctx<'_>, &mut dyn Pager);
    fn view(&self) -> (&Forest, Ctx<'_>);
}

/// A bucket inside a write transaction.
pub struct BucketMut<'t> {
    tx: &'t mut dyn TxParts,
    id: BucketId,
}

impl<'t> BucketMut<'t> {
    pub(crate) fn new(tx: &'t mut dyn TxParts, id: BucketId) -> Self {
        BucketMut { tx, id }
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<&[u8]>> {
        let (f, ctx) = self.tx.view();
        f.get(self.id, ctx, key)
    }

    /// Inserts or replaces `key`.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        let (f, ctx, _) = self.tx.parts();
        f.put(self.id, ctx, key, value)
    }

    /// Removes `key`; returns whether it existed.
    pub fn delete(&mut self, key: &[u8]) -> Result<bool> {
        let (f, ctx, _) = self.tx.parts();
        f.delete(self.id, ctx, key)
    }

    /// A cursor over the bucket as this transaction sees it.
    pub fn cursor(&self) -> Result<Cursor<'_>> {
        let (f, ctx) = self.tx.view();
        f.cursor(self.id, ctx)
    }

    pub fn bucket_mut(&mut self, name: &[u8]) -> Result<Option<BucketMut<'_>>> {
        let (f, ctx, _) = self.tx.parts();
        let c = f.open_child(self.id, ctx, name)?;
        Ok(c.map(|c| BucketMut::new(&mut *self.tx, c)))
    }

    pub fn create_bucket(&mut self, name: &[u8]) -> Result<BucketMut<'_>> {
        let (f, ctx, _) = self.tx.parts();
        let c = f.create_bucket(self.id, ctx, name)?;
        Ok(BucketMut::new(&mut *self.tx, c))
    }

    pub fn create_bucket_if_not_exists(&mut self, name: &[u8]) -> Result<BucketMut<'_>> {
        let (f, ctx, _) = self.tx.parts();
        let c = match f.open_child(self.id, ctx, name)? {
            Some(c) => c,
            None => f.create_bucket(self.id, ctx, name)?,
        };
        Ok(BucketMut::new(&mut *self.tx, c))
    }

    /// Deletes nested bucket `name` and everything in it.
    pub fn delete_bucket(&mut self, name: &[u8]) -> Result<()> {
        let (f, ctx, pager) = self.tx.parts();
        f.delete_bucket(self.id, ctx, pager, name)
    }

    pub fn sequence(&self) -> u64 {
        self.tx.view().0.buckets[self.id].sequence
    }

    pub fn set_sequence(&mut self, seq: u64) -> Result<()> {
        let (f, ctx, _) = self.tx.parts();
        f.set_sequence(self.id, ctx, seq)
    }

    /// Increments and returns the sequence.
    pub fn next_sequence(&mut self) -> Result<u64> {
        let next = self.sequence().wrapping_add(1);
        self.set_sequence(next)?;
        Ok(next)
    }

    /// How full split pages are made (0.1..=1.0; default 0.5; etcd uses 0.9 for appends).
    /// Lasts for this transaction, like Go's `Bucket.FillPercent`.
    pub fn set_fill_percent(&mut self, fill: f64) {
        let (f, _, _) = self.tx.parts();
        f.buckets[self.id].fill_percent = fill;
    }
}
