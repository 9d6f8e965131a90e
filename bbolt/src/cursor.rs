//! Cursors over a bucket's B+tree: first, last, seek, next, prev (upstream `cursor.go`).
//! A cursor reads committed pages straight from the map; inside a write transaction it
//! sees the transaction's materialized nodes instead of the pages they replace.

use std::collections::HashMap;

use crate::error::{Corruption, Error, Result};
use crate::file::MappedFile;
use crate::node::{Arena, Node, NodeId};
use crate::page::{self, BUCKET_LEAF_FLAG, Page};

static EMPTY_HEAP: crate::heap::Heap = crate::heap::Heap::new();

/// Where a tree's pages come from.
#[derive(Clone, Copy)]
pub(crate) struct Ctx<'a> {
    pub data: &'a [u8],
    pub ps: usize,
    pub hwm: u64,
    /// Accounts touched map bytes so resident memory can be bounded.
    pub touch: Option<&'a MappedFile>,
}

impl<'a> Ctx<'a> {
    #[inline]
    pub fn page(&self, pgid: u64) -> Result<Page<'a>> {
        let p = Page::node(self.data, self.ps, pgid, self.hwm)?;
        if let Some(t) = self.touch {
            t.touch_slice(p.bytes);
        }
        Ok(p)
    }

    /// File offset of a slice of the map (for error messages), else 0.
    pub fn offset_of(&self, s: &[u8]) -> u64 {
        let base = self.data.as_ptr() as usize;
        let p = s.as_ptr() as usize;
        if p >= base && p <= base + self.data.len() {
            (p - base) as u64
        } else {
            0
        }
    }
}

/// Materialized nodes of one bucket inside a write transaction.
#[derive(Clone, Copy)]
pub(crate) struct Overlay<'a> {
    pub ar: &'a Arena,
    pub by_pgid: &'a HashMap<u64, NodeId>,
}

/// A bucket's root as a cursor starts from it.
#[derive(Clone, Copy)]
pub(crate) enum Root<'a> {
    Page(u64),
    Inline(Page<'a>),
    Node(&'a Node),
}

#[derive(Clone, Copy)]
enum Frame<'a> {
    Page(Page<'a>),
    Node(&'a Node),
}

/// One key/value pair. For a nested bucket `value` is the raw bucket value (header plus
/// inline page) and [`Entry::is_bucket`] is true.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    pub key: &'a [u8],
    pub value: &'a [u8],
    pub flags: u32,
}

impl Entry<'_> {
    pub fn is_bucket(&self) -> bool {
        self.flags & BUCKET_LEAF_FLAG != 0
    }
}

impl<'a> Frame<'a> {
    fn count(&self) -> usize {
        match self {
            Frame::Page(p) => p.len(),
            Frame::Node(n) => n.inodes.len(),
        }
    }

    fn is_leaf(&self) -> bool {
        match self {
            Frame::Page(p) => p.is_leaf(),
            Frame::Node(n) => n.is_leaf,
        }
    }
}

/// A position in a bucket. Methods return `Ok(None)` past either end.
pub struct Cursor<'a> {
    ctx: Ctx<'a>,
    overlay: Option<Overlay<'a>>,
    root: Root<'a>,
    stack: Vec<(Frame<'a>, usize)>,
    /// Pages entered since the current public call began. A valid tree never needs more
    /// than it has pages; more means a cycle or a shared subtree, which could otherwise make
    /// a single step take exponential time on a damaged file.
    steps: u64,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(ctx: Ctx<'a>, overlay: Option<Overlay<'a>>, root: Root<'a>) -> Self {
        Cursor {
            ctx,
            overlay,
            root,
            stack: Vec::with_capacity(8),
            steps: 0,
        }
    }

    /// Node bytes resolve against the map and the transaction's heap.
    fn mem(&self) -> crate::heap::Mem<'a> {
        match self.overlay {
            Some(o) => o.ar.mem(self.ctx.data),
            None => crate::heap::Mem {
                map: self.ctx.data,
                heap: &EMPTY_HEAP,
            },
        }
    }

    fn frame(&self, pgid: u64) -> Result<Frame<'a>> {
        if let Some(o) = self.overlay
            && let Some(&id) = o.by_pgid.get(&pgid)
        {
            return Ok(Frame::Node(&o.ar.nodes[id]));
        }
        Ok(Frame::Page(self.ctx.page(pgid)?))
    }

    fn root_frame(&self) -> Result<Frame<'a>> {
        match self.root {
            Root::Page(id) => self.frame(id),
            Root::Inline(p) => Ok(Frame::Page(p)),
            Root::Node(n) => Ok(Frame::Node(n)),
        }
    }

    fn push(&mut self, f: Frame<'a>, index: usize) -> Result<()> {
        self.steps += 1;
        if self.stack.len() >= page::MAX_DEPTH
            || self.steps > self.ctx.hwm.saturating_add(page::MAX_DEPTH as u64)
        {
            let id = match f {
                Frame::Page(p) => p.id,
                Frame::Node(n) => n.pgid,
            };
            let kind = if self.stack.len() >= page::MAX_DEPTH {
                Corruption::TooDeep(page::MAX_DEPTH)
            } else {
                Corruption::SharedPage
            };
            return Err(Error::corrupt(id, 0, kind));
        }
        self.stack.push((f, index));
        Ok(())
    }

    fn child(&self, f: &Frame<'a>, i: usize) -> Result<u64> {
        match f {
            Frame::Page(p) => Ok(p.branch(i)?.pgid),
            Frame::Node(n) => {
                n.inodes.get(i).map(|x| x.pgid).ok_or_else(|| {
                    Error::corrupt(n.pgid, 0, Corruption::ElementBounds { index: i })
                })
            }
        }
    }

    fn key_at(&self, f: &Frame<'a>, i: usize) -> Result<&'a [u8]> {
        match f {
            Frame::Page(p) => p.key(i),
            Frame::Node(n) => n
                .inodes
                .get(i)
                .map(|x| x.key.get(self.mem()))
                .ok_or_else(|| Error::corrupt(n.pgid, 0, Corruption::ElementBounds { index: i })),
        }
    }

    fn entry_at(&self, f: &Frame<'a>, i: usize) -> Result<Entry<'a>> {
        match f {
            Frame::Page(p) => {
                let e = p.leaf(i)?;
                Ok(Entry {
                    key: e.key,
                    value: e.value,
                    flags: e.flags,
                })
            }
            Frame::Node(n) => {
                let x = n.inodes.get(i).ok_or_else(|| {
                    Error::corrupt(n.pgid, 0, Corruption::ElementBounds { index: i })
                })?;
                Ok(Entry {
                    key: x.key.get(self.mem()),
                    value: x.value.get(self.mem()),
                    flags: x.flags,
                })
            }
        }
    }

    fn current(&self) -> Result<Option<Entry<'a>>> {
        match self.stack.last() {
            Some((f, i)) if *i < f.count() => self.entry_at(f, *i).map(Some),
            _ => Ok(None),
        }
    }

    /// Descends to the first leaf element below the top of the stack.
    fn descend_first(&mut self) -> Result<()> {
        loop {
            let Some(&(f, i)) = self.stack.last() else {
                return Ok(());
            };
            if f.is_leaf() {
                return Ok(());
            }
            let child = self.frame(self.child(&f, i)?)?;
            self.push(child, 0)?;
        }
    }

    /// Descends to the last leaf element below the top of the stack.
    fn descend_last(&mut self) -> Result<()> {
        loop {
            let Some(&(f, i)) = self.stack.last() else {
                return Ok(());
            };
            if f.is_leaf() {
                return Ok(());
            }
            let child = self.frame(self.child(&f, i)?)?;
            let n = child.count();
            self.push(child, n.saturating_sub(1))?;
        }
    }

    pub fn first(&mut self) -> Result<Option<Entry<'a>>> {
        self.steps = 0;
        self.stack.clear();
        let r = self.root_frame()?;
        self.push(r, 0)?;
        self.descend_first()?;
        if self.stack.last().is_some_and(|(f, _)| f.count() == 0) {
            return self.next();
        }
        self.current()
    }

    pub fn last(&mut self) -> Result<Option<Entry<'a>>> {
        self.steps = 0;
        self.stack.clear();
        let r = self.root_frame()?;
        let n = r.count();
        self.push(r, n.saturating_sub(1))?;
        self.descend_last()?;
        if self.stack.last().is_some_and(|(f, _)| f.count() == 0) {
            return self.prev();
        }
        self.current()
    }

    #[allow(clippy::should_implement_trait)] // fallible, so not an Iterator
    pub fn next(&mut self) -> Result<Option<Entry<'a>>> {
        self.steps = 0;
        loop {
            // Move up until a level can advance.
            let mut level = None;
            for i in (0..self.stack.len()).rev() {
                let (f, idx) = &mut self.stack[i];
                if *idx + 1 < f.count() {
                    *idx += 1;
                    level = Some(i);
                    break;
                }
            }
            let Some(level) = level else {
                // Park past the end so a further next() stays there.
                if let Some((f, idx)) = self.stack.last_mut() {
                    *idx = f.count();
                }
                return Ok(None);
            };
            self.stack.truncate(level + 1);
            self.descend_first()?;
            // Empty leaves are skipped (upstream boltdb issue 450).
            if self.stack.last().is_some_and(|(f, _)| f.count() == 0) {
                continue;
            }
            return self.current();
        }
    }

    pub fn prev(&mut self) -> Result<Option<Entry<'a>>> {
        self.steps = 0;
        loop {
            let mut level = None;
            for i in (0..self.stack.len()).rev() {
                let (f, idx) = &mut self.stack[i];
                if *idx > 0 && f.count() > 0 {
                    *idx = (*idx).min(f.count()) - 1;
                    level = Some(i);
                    break;
                }
            }
            let Some(level) = level else {
                self.stack.clear();
                return Ok(None);
            };
            self.stack.truncate(level + 1);
            self.descend_last()?;
            if self.stack.last().is_some_and(|(f, _)| f.count() == 0) {
                continue;
            }
            return self.current();
        }
    }

    /// Positions the cursor at the leaf slot for `key` (the first key >= `key` in the leaf the
    /// search lands in) without moving to the next leaf. Returns the exact match, if any.
    pub(crate) fn seek_slot(&mut self, key: &[u8]) -> Result<Option<Entry<'a>>> {
        self.steps = 0;
        self.stack.clear();
        let mut f = self.root_frame()?;
        loop {
            if f.is_leaf() {
                let idx = self.lower_bound(&f, key)?;
                self.push(f, idx)?;
                return match self.current()? {
                    Some(e) if e.key == key => Ok(Some(e)),
                    _ => Ok(None),
                };
            }
            // Branch: last element with key <= target, or the first one.
            let n = f.count();
            let lb = self.lower_bound(&f, key)?;
            let idx = if lb < n && self.key_at(&f, lb)? == key {
                lb
            } else {
                lb.saturating_sub(1)
            };
            self.push(f, idx)?;
            f = self.frame(self.child(&f, idx)?)?;
        }
    }

    fn lower_bound(&self, f: &Frame<'a>, key: &[u8]) -> Result<usize> {
        let (mut lo, mut hi) = (0usize, f.count());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.key_at(f, mid)? < key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }

    /// Moves to the first key >= `key`.
    pub fn seek(&mut self, key: &[u8]) -> Result<Option<Entry<'a>>> {
        self.seek_slot(key)?;
        match self.stack.last() {
            Some((f, i)) if *i >= f.count() => {
                // Past the end of this leaf: step back onto its last element so next()
                // advances to the following leaf.
                if let Some((f, i)) = self.stack.last_mut() {
                    *i = f.count().saturating_sub(1);
                    if f.count() == 0 {
                        // Empty leaf: let next() climb.
                    }
                }
                self.next()
            }
            _ => self.current(),
        }
    }

    /// Whether the position is past the last key of the whole tree (the rightmost leaf's
    /// end).
    pub(crate) fn at_right_edge(&self) -> bool {
        let n = self.stack.len();
        n > 0
            && self.stack.iter().enumerate().all(|(i, (f, idx))| {
                if i + 1 == n {
                    *idx >= f.count()
                } else {
                    *idx + 1 == f.count()
                }
            })
    }

    /// Child indices of the branch levels of the current position (for materializing the
    /// path in a write transaction).
    pub(crate) fn branch_path(&self) -> Vec<usize> {
        let n = self.stack.len().saturating_sub(1);
        self.stack[..n].iter().map(|(_, i)| *i).collect()
    }
}
