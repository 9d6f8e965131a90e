//! Materialized nodes of a write transaction: the in-memory copy of a page that is being
//! changed. Insert/remove, rebalance (merge) after deletions, split with a fill percent and
//! serialization at commit, following upstream `node.go` (v1.3.x) so files look like Go's.

use std::collections::HashMap;

use crate::error::{Corruption, Error, Result};
use crate::heap::{Bytes, Heap, Mem};
use crate::page::{self, BUCKET_LEAF_FLAG, ELEM_SIZE, ElemSrc, PAGE_HEADER_SIZE, Page};

pub(crate) type NodeId = usize;

#[derive(Debug, Clone)]
pub(crate) struct Inode {
    pub flags: u32,
    pub pgid: u64,
    pub key: Bytes,
    pub value: Bytes,
}

impl Inode {
    fn elem_size(&self) -> usize {
        ELEM_SIZE + self.key.len() + self.value.len()
    }
}

#[derive(Debug, Default)]
pub(crate) struct Node {
    pub is_leaf: bool,
    pub unbalanced: bool,
    pub spilled: bool,
    /// Removed from the tree by a merge; ignore.
    pub dead: bool,
    /// The key this node is filed under in its parent (for a root: its first key as read).
    pub key: Option<Bytes>,
    /// Page it was read from (0 = new or inline).
    pub pgid: u64,
    pub overflow: u32,
    pub parent: Option<NodeId>,
    /// Materialized children (subset of the branch's inodes).
    pub children: Vec<NodeId>,
    pub inodes: Vec<Inode>,
}

/// Where freed and allocated pages go, and where serialized nodes are written.
pub(crate) trait Pager {
    fn allocate(&mut self, pages: usize) -> Result<u64>;
    fn free(&mut self, pgid: u64, overflow: u32) -> Result<()>;
    fn write(&mut self, pgid: u64, buf: Vec<u8>) -> Result<()>;
    /// Writes a run of `pages` pages at `pgid`, letting `fill` serialize into a zeroed buffer
    /// (which may sit inside a write-combining buffer, saving a copy).
    fn write_with(
        &mut self,
        pgid: u64,
        pages: usize,
        fill: &mut dyn FnMut(&mut [u8]),
    ) -> Result<()>;
}

/// The node arena of a write transaction.
#[derive(Debug, Default)]
pub(crate) struct Arena {
    pub nodes: Vec<Node>,
    pub heap: Heap,
    pub inode_count: usize,
}

impl Arena {
    #[inline]
    pub fn mem<'a>(&'a self, map: &'a [u8]) -> Mem<'a> {
        Mem {
            map,
            heap: &self.heap,
        }
    }

    pub fn add(&mut self, n: Node) -> NodeId {
        self.nodes.push(n);
        self.nodes.len() - 1
    }

    /// Materializes `page` as a node with `parent`.
    #[allow(clippy::wrong_self_convention)]
    pub fn from_page(
        &mut self,
        p: &Page<'_>,
        map: &[u8],
        parent: Option<NodeId>,
    ) -> Result<NodeId> {
        let mut inodes = Vec::with_capacity(p.len());
        for i in 0..p.len() {
            let ino = if p.is_leaf() {
                let e = p.leaf(i)?;
                Inode {
                    flags: e.flags,
                    pgid: 0,
                    key: Bytes::from_slice(e.key, map, &mut self.heap),
                    value: Bytes::from_slice(e.value, map, &mut self.heap),
                }
            } else {
                let e = p.branch(i)?;
                Inode {
                    flags: 0,
                    pgid: e.pgid,
                    key: Bytes::from_slice(e.key, map, &mut self.heap),
                    value: Bytes::EMPTY,
                }
            };
            inodes.push(ino);
        }
        let key = inodes.first().map(|i| i.key);
        self.inode_count += inodes.len();
        Ok(self.add(Node {
            unbalanced: inodes.is_empty(),
            is_leaf: p.is_leaf(),
            key,
            pgid: if p.inline { 0 } else { p.id },
            overflow: p.overflow,
            parent,
            inodes,
            ..Default::default()
        }))
    }

    pub fn size(&self, id: NodeId) -> usize {
        PAGE_HEADER_SIZE
            + self.nodes[id]
                .inodes
                .iter()
                .map(Inode::elem_size)
                .sum::<usize>()
    }

    /// Index of the first inode whose key is >= `key`, and whether it is equal.
    pub fn search(&self, id: NodeId, map: &[u8], key: &[u8]) -> (usize, bool) {
        search(&self.nodes[id].inodes, self.mem(map), key)
    }

    /// Inserts or replaces (when `old_key` exists) an inode.
    pub fn put(&mut self, id: NodeId, map: &[u8], old_key: &[u8], ino: Inode) {
        let (idx, exact) = self.search(id, map, old_key);
        let n = &mut self.nodes[id];
        if exact {
            n.inodes[idx] = ino;
        } else {
            n.inodes.insert(idx, ino);
            self.inode_count += 1;
        }
    }

    /// Appends an inode known to sort after every other one.
    pub fn push(&mut self, id: NodeId, ino: Inode) {
        self.inode_count += 1;
        self.nodes[id].inodes.push(ino);
    }

    /// Removes `key`; marks the node for rebalancing.
    pub fn del(&mut self, id: NodeId, map: &[u8], key: &[u8]) -> bool {
        let (idx, exact) = self.search(id, map, key);
        if !exact {
            return false;
        }
        self.nodes[id].inodes.remove(idx);
        self.inode_count = self.inode_count.saturating_sub(1);
        self.nodes[id].unbalanced = true;
        true
    }

    /// Topmost ancestor.
    pub fn root_of(&self, mut id: NodeId) -> NodeId {
        while let Some(p) = self.nodes[id].parent {
            id = p;
        }
        id
    }

    /// Serializes node `id` into `buf` (zeroed, at least `size(id)` bytes).
    pub fn write_into(&self, id: NodeId, map: &[u8], buf: &mut [u8]) {
        let n = &self.nodes[id];
        let m = self.mem(map);
        page::write_node(
            buf,
            n.is_leaf,
            n.inodes.len(),
            n.inodes.iter().map(|i| ElemSrc {
                flags: i.flags,
                key: i.key.get(m),
                value: i.value.get(m),
                pgid: i.pgid,
            }),
        );
    }

    /// Frees the page this node was read from.
    pub fn free(&mut self, id: NodeId, pager: &mut dyn Pager) -> Result<()> {
        let n = &mut self.nodes[id];
        if n.pgid != 0 {
            let (pgid, ovf) = (n.pgid, n.overflow);
            n.pgid = 0;
            pager.free(pgid, ovf)?;
        }
        Ok(())
    }
}

pub(crate) fn search(inodes: &[Inode], m: Mem<'_>, key: &[u8]) -> (usize, bool) {
    let idx = inodes.partition_point(|i| i.key.get(m) < key);
    let exact = inodes.get(idx).is_some_and(|i| i.key.get(m) == key);
    (idx, exact)
}

/// The view of one bucket's nodes that the tree algorithms need.
pub(crate) struct Tree<'a> {
    pub ar: &'a mut Arena,
    /// Materialized nodes of this bucket by page id.
    pub by_pgid: &'a mut HashMap<u64, NodeId>,
    pub map: &'a [u8],
    pub ps: usize,
    /// Pages at or above this id were not committed when the transaction began.
    pub hwm: u64,
    pub fill_percent: f64,
}

impl Tree<'_> {
    /// Node for page `pgid`, materializing it under `parent` (filed under `key`).
    pub fn node(
        &mut self,
        pgid: u64,
        parent: Option<NodeId>,
        key: Option<Bytes>,
    ) -> Result<NodeId> {
        if let Some(&id) = self.by_pgid.get(&pgid) {
            return Ok(id);
        }
        let depth = {
            let mut d = 0;
            let mut p = parent;
            while let Some(x) = p {
                d += 1;
                p = self.ar.nodes[x].parent;
            }
            d
        };
        if depth > page::MAX_DEPTH {
            return Err(Error::corrupt(
                pgid,
                0,
                Corruption::TooDeep(page::MAX_DEPTH),
            ));
        }
        let p = Page::node(self.map, self.ps, pgid, self.hwm)?;
        let id = self.ar.from_page(&p, self.map, parent)?;
        if key.is_some() {
            self.ar.nodes[id].key = key;
        }
        if let Some(par) = parent {
            self.ar.nodes[par].children.push(id);
        }
        self.by_pgid.insert(pgid, id);
        Ok(id)
    }

    /// Child `index` of branch node `id`.
    pub fn child_at(&mut self, id: NodeId, index: usize) -> Result<NodeId> {
        let n = &self.ar.nodes[id];
        let ino = n
            .inodes
            .get(index)
            .ok_or_else(|| Error::corrupt(n.pgid, 0, Corruption::ElementBounds { index }))?;
        if n.is_leaf {
            return Err(Error::corrupt(
                n.pgid,
                0,
                Corruption::BadType {
                    flags: page::LEAF_FLAG,
                    expected: "branch",
                },
            ));
        }
        let (pgid, key) = (ino.pgid, ino.key);
        self.node(pgid, Some(id), Some(key))
    }

    /// Position of `child` among its parent's inodes (by page id, which is unique).
    fn child_index(&self, parent: NodeId, child: NodeId) -> Option<usize> {
        let c = &self.ar.nodes[child];
        let p = &self.ar.nodes[parent];
        if c.pgid != 0
            && let Some(i) = p.inodes.iter().position(|i| i.pgid == c.pgid)
        {
            return Some(i);
        }
        let m = self.ar.mem(self.map);
        let key = c.key.as_ref()?.get(m);
        let (i, exact) = search(&p.inodes, m, key);
        exact.then_some(i)
    }

    fn remove_child(&mut self, parent: NodeId, child: NodeId) {
        self.ar.nodes[parent].children.retain(|&c| c != child);
    }

    fn remove_inode(&mut self, parent: NodeId, idx: usize) {
        let p = &mut self.ar.nodes[parent];
        if idx < p.inodes.len() {
            p.inodes.remove(idx);
            p.unbalanced = true;
        }
    }

    fn forget(&mut self, id: NodeId, pager: &mut dyn Pager) -> Result<()> {
        let pgid = self.ar.nodes[id].pgid;
        if self.by_pgid.get(&pgid) == Some(&id) {
            self.by_pgid.remove(&pgid);
        }
        self.ar.nodes[id].dead = true;
        self.ar.free(id, pager)
    }

    /// Merges an underfull node into a sibling (upstream `node.rebalance`, v1.3.x threshold
    /// of a quarter page).
    pub fn rebalance(&mut self, id: NodeId, pager: &mut dyn Pager) -> Result<()> {
        let mut id = id;
        loop {
            let n = &mut self.ar.nodes[id];
            if !n.unbalanced || n.dead {
                return Ok(());
            }
            n.unbalanced = false;
            let min_keys = if n.is_leaf { 1 } else { 2 };
            let len = n.inodes.len();
            if self.ar.size(id) > self.ps / 4 && len > min_keys {
                return Ok(());
            }
            let Some(parent) = self.ar.nodes[id].parent else {
                // Root: a branch with one child is replaced by that child.
                if !self.ar.nodes[id].is_leaf && len == 1 {
                    let child = self.child_at(id, 0)?;
                    let c = &mut self.ar.nodes[child];
                    let (is_leaf, inodes, children) = (
                        c.is_leaf,
                        std::mem::take(&mut c.inodes),
                        std::mem::take(&mut c.children),
                    );
                    for &gc in &children {
                        self.ar.nodes[gc].parent = Some(id);
                    }
                    let n = &mut self.ar.nodes[id];
                    n.is_leaf = is_leaf;
                    n.inodes = inodes;
                    n.children = children;
                    self.ar.nodes[child].parent = None;
                    self.forget(child, pager)?;
                }
                return Ok(());
            };
            let Some(idx) = self.child_index(parent, id) else {
                return Ok(());
            };
            if len == 0 {
                self.remove_inode(parent, idx);
                self.remove_child(parent, id);
                self.forget(id, pager)?;
                id = parent;
                self.ar.nodes[id].unbalanced = true;
                continue;
            }
            if self.ar.nodes[parent].inodes.len() < 2 {
                return Ok(());
            }
            // Merge the right node of the pair into the left one.
            let (left, right, right_idx) = if idx == 0 {
                (id, self.child_at(parent, 1)?, 1)
            } else {
                (self.child_at(parent, idx - 1)?, id, idx)
            };
            let moved = std::mem::take(&mut self.ar.nodes[right].inodes);
            for ino in &moved {
                if let Some(&c) = self.by_pgid.get(&ino.pgid)
                    && ino.pgid != 0
                    && self.ar.nodes[c].parent == Some(right)
                {
                    self.ar.nodes[c].parent = Some(left);
                    self.ar.nodes[left].children.push(c);
                }
            }
            self.ar.nodes[right].children.clear();
            self.ar.nodes[left].inodes.extend(moved);
            self.remove_inode(parent, right_idx);
            self.remove_child(parent, right);
            self.forget(right, pager)?;
            id = parent;
            self.ar.nodes[id].unbalanced = true;
        }
    }

    /// Writes node `id` and its materialized descendants to new pages (upstream
    /// `node.spill`): children first, then split by the fill percent, free the old page,
    /// allocate, serialize, and update the parent's pointers.
    pub fn spill(&mut self, id: NodeId, pager: &mut dyn Pager) -> Result<()> {
        if self.ar.nodes[id].spilled {
            return Ok(());
        }
        let mut children = std::mem::take(&mut self.ar.nodes[id].children);
        let map = self.map;
        let m = self.ar.mem(map);
        children.sort_by(|&a, &b| {
            let ka = self.ar.nodes[a].inodes.first().map(|i| i.key.get(m));
            let kb = self.ar.nodes[b].inodes.first().map(|i| i.key.get(m));
            ka.cmp(&kb)
        });
        for c in children {
            if !self.ar.nodes[c].dead {
                self.spill(c, pager)?;
            }
        }
        let parts = self.split(id);
        for &part in &parts {
            self.ar.free(part, pager)?;
            let size = self.ar.size(part);
            let pages = page::pages_for(size, self.ps);
            let pgid = pager.allocate(pages)?;
            let (ar, map) = (&*self.ar, self.map);
            pager.write_with(pgid, pages, &mut |buf| {
                buf[0..8].copy_from_slice(&pgid.to_le_bytes());
                buf[12..16].copy_from_slice(&((pages - 1) as u32).to_le_bytes());
                ar.write_into(part, map, buf);
            })?;
            let n = &mut self.ar.nodes[part];
            n.pgid = pgid;
            n.spilled = true;
            let Some(first) = n.inodes.first().map(|i| i.key) else {
                // Only an empty root leaf reaches here; it has no parent to update.
                continue;
            };
            if let Some(parent) = n.parent {
                let old = n.key.unwrap_or(first);
                n.key = Some(first);
                let old_key = old.get(self.ar.mem(map)).to_vec();
                self.ar.put(
                    parent,
                    map,
                    &old_key,
                    Inode {
                        flags: 0,
                        pgid,
                        key: first,
                        value: Bytes::EMPTY,
                    },
                );
            }
        }
        // A split of the root created a new parent; write it too.
        if let Some(parent) = self.ar.nodes[id].parent
            && self.ar.nodes[parent].pgid == 0
            && !self.ar.nodes[parent].spilled
        {
            return self.spill(parent, pager);
        }
        Ok(())
    }

    /// Splits node `id` into page-sized parts (upstream `split`/`splitTwo`/`splitIndex`).
    /// The cut points are computed first so a long node is carved in linear time.
    fn split(&mut self, id: NodeId) -> Vec<NodeId> {
        let ps = self.ps;
        let fill = self.fill_percent.clamp(0.1, 1.0);
        let threshold = (ps as f64 * fill) as usize;
        let inodes = &self.ar.nodes[id].inodes;
        let n = inodes.len();
        let mut remaining = PAGE_HEADER_SIZE + inodes.iter().map(Inode::elem_size).sum::<usize>();
        let mut cuts = Vec::new();
        let mut start = 0;
        loop {
            let len = n - start;
            if len <= 4 || remaining < ps {
                break;
            }
            let mut sz = PAGE_HEADER_SIZE;
            let mut idx = 0;
            for i in 0..len - 2 {
                idx = i;
                let el = inodes[start + i].elem_size();
                if i >= 2 && sz + el > threshold {
                    break;
                }
                sz += el;
            }
            // `idx` elements go left; they account for `sz - header` bytes unless the loop
            // broke early, in which case sz covers exactly idx elements too.
            let left_bytes: usize = inodes[start..start + idx]
                .iter()
                .map(Inode::elem_size)
                .sum();
            remaining -= left_bytes;
            start += idx;
            cuts.push(start);
        }
        if cuts.is_empty() {
            return vec![id];
        }
        let parent = match self.ar.nodes[id].parent {
            Some(p) => p,
            None => {
                let p = self.ar.add(Node {
                    is_leaf: false,
                    children: vec![id],
                    ..Default::default()
                });
                self.ar.nodes[id].parent = Some(p);
                p
            }
        };
        let is_leaf = self.ar.nodes[id].is_leaf;
        let mut tails = Vec::with_capacity(cuts.len());
        for &cut in cuts.iter().rev() {
            let tail = self.ar.nodes[id].inodes.split_off(cut);
            tails.push(tail);
        }
        let mut parts = vec![id];
        for tail in tails.into_iter().rev() {
            let nid = self.ar.add(Node {
                is_leaf,
                parent: Some(parent),
                inodes: tail,
                ..Default::default()
            });
            parts.push(nid);
        }
        parts
    }
}

/// The value stored in a parent leaf for a bucket: header plus, for an inline bucket, the
/// root node as a page image.
pub(crate) fn bucket_value(
    root: u64,
    sequence: u64,
    inline: Option<(&Arena, NodeId, &[u8])>,
) -> Vec<u8> {
    let extra = inline.map_or(0, |(ar, id, _)| ar.size(id));
    let mut v = vec![0u8; page::BUCKET_HEADER_SIZE + extra];
    v[0..8].copy_from_slice(&root.to_le_bytes());
    v[8..16].copy_from_slice(&sequence.to_le_bytes());
    if let Some((ar, id, map)) = inline {
        ar.write_into(id, map, &mut v[page::BUCKET_HEADER_SIZE..]);
    }
    v
}

/// Whether a bucket whose root node is `id` may be stored inline (upstream
/// `Bucket.inlineable`): one leaf, no sub-buckets, at most a quarter page.
pub(crate) fn inlineable(ar: &Arena, id: NodeId, ps: usize) -> bool {
    let n = &ar.nodes[id];
    if !n.is_leaf {
        return false;
    }
    let mut size = PAGE_HEADER_SIZE;
    for i in &n.inodes {
        size += i.elem_size();
        if i.flags & BUCKET_LEAF_FLAG != 0 || size > ps / 4 {
            return false;
        }
    }
    true
}
