//! The free-page set of a writable database: free ids, ids freed by each transaction
//! (pending until no reader can still see them), first-fit allocation of contiguous runs,
//! and the array freelist page format. Upstream: `freelist.go`.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::{Corruption, Error, Result};
use crate::page::{self, FREELIST_FLAG, PAGE_HEADER_SIZE, put_header};

#[derive(Debug, Default, Clone)]
pub(crate) struct Freelist {
    free: BTreeSet<u64>,
    /// Pages freed by each transaction, not reusable yet.
    pending: BTreeMap<u64, Vec<u64>>,
    /// Every pending id, for double-free detection.
    pending_set: BTreeSet<u64>,
}

impl Freelist {
    /// A free set from ids (on-disk freelist or a rebuild); duplicates are corruption.
    pub fn from_ids(ids: impl Iterator<Item = u64>, hwm: u64, page: u64) -> Result<Freelist> {
        let mut free = BTreeSet::new();
        for id in ids {
            if id < 2 || id >= hwm {
                return Err(Error::corrupt(
                    page,
                    0,
                    Corruption::Freelist(format!("id {id} outside [2, {hwm})")),
                ));
            }
            if !free.insert(id) {
                return Err(Error::corrupt(page, 0, Corruption::DoubleFree(id)));
            }
        }
        Ok(Freelist {
            free,
            ..Default::default()
        })
    }

    /// Reads the freelist page run `id` of a file.
    pub fn read_page(data: &[u8], ps: usize, id: u64, hwm: u64) -> Result<(Vec<u64>, u32)> {
        let (h, bytes) = page::page_run(data, ps, id, hwm)?;
        if h.flags != FREELIST_FLAG {
            return Err(Error::corrupt(
                id,
                id * ps as u64,
                Corruption::BadType {
                    flags: h.flags,
                    expected: "freelist",
                },
            ));
        }
        let ids = page::freelist_ids(bytes, &h).map_err(|what| {
            Error::corrupt(id, id * ps as u64, Corruption::Freelist(what.to_string()))
        })?;
        Ok((ids.collect(), h.overflow))
    }

    pub fn count(&self) -> usize {
        self.free.len() + self.pending_set.len()
    }

    /// Lowest run of `n` contiguous free ids (first fit, like Go's array freelist).
    pub fn allocate(&mut self, n: usize) -> Option<u64> {
        if n == 0 {
            return None;
        }
        if n == 1 {
            return self.free.pop_first();
        }
        let mut run_start = 0u64;
        let mut run_len = 0usize;
        let mut prev = None;
        let mut found = None;
        for &id in &self.free {
            if prev.is_some_and(|p: u64| p + 1 == id) {
                run_len += 1;
            } else {
                run_start = id;
                run_len = 1;
            }
            prev = Some(id);
            if run_len == n {
                found = Some(run_start);
                break;
            }
        }
        let start = found?;
        for id in start..start + n as u64 {
            self.free.remove(&id);
        }
        Some(start)
    }

    /// Gives back ids taken by [`allocate`](Self::allocate) (rollback).
    pub fn unallocate(&mut self, start: u64, n: usize) {
        self.free.extend(start..start + n as u64);
    }

    /// Marks `start ..= start + overflow` as freed by `txid`.
    pub fn free(&mut self, txid: u64, start: u64, overflow: u32) -> Result<()> {
        let ids = self.pending.entry(txid).or_default();
        for id in start..=start + u64::from(overflow) {
            if id < 2 || self.free.contains(&id) || !self.pending_set.insert(id) {
                return Err(Error::corrupt(id, 0, Corruption::DoubleFree(id)));
            }
            ids.push(id);
        }
        Ok(())
    }

    /// Moves everything freed by transactions older than `txid` to the free set.
    pub fn release_below(&mut self, txid: u64) {
        let keep = self.pending.split_off(&txid);
        for (_, ids) in std::mem::replace(&mut self.pending, keep) {
            for id in ids {
                self.pending_set.remove(&id);
                self.free.insert(id);
            }
        }
    }

    /// Forgets what `txid` freed (rollback).
    pub fn rollback(&mut self, txid: u64) {
        if let Some(ids) = self.pending.remove(&txid) {
            for id in ids {
                self.pending_set.remove(&id);
            }
        }
    }

    /// Size estimate of the on-disk freelist (Go's `freelist.size`), taken before its own
    /// pages are allocated.
    pub fn page_size_estimate(&self) -> usize {
        let mut n = self.count();
        if n >= 0xFFFF {
            n += 1;
        }
        PAGE_HEADER_SIZE + 8 * n
    }

    /// Serializes free ∪ pending (sorted) into a page run of `pages` pages at `id`.
    pub fn write_page(&self, id: u64, pages: usize, ps: usize) -> Vec<u8> {
        let mut buf = vec![0u8; ps * pages];
        let mut all: Vec<u64> = Vec::with_capacity(self.count());
        all.extend(self.free.iter().copied());
        all.extend(self.pending_set.iter().copied());
        all.sort_unstable();
        let n = all.len();
        let (count, mut at) = if n >= 0xFFFF {
            buf[16..24].copy_from_slice(&(n as u64).to_le_bytes());
            (0xFFFFu16, 24)
        } else {
            (n as u16, 16)
        };
        put_header(&mut buf, id, FREELIST_FLAG, count, (pages - 1) as u32);
        for id in all {
            buf[at..at + 8].copy_from_slice(&id.to_le_bytes());
            at += 8;
        }
        buf
    }
}

/// Rebuilds the free set of a file without a freelist page (etcd's NoFreelistSync files):
/// every page below the high-water mark that no bucket tree reaches is free. Walks every
/// tree once, one bit per page.
pub(crate) fn rebuild(
    data: &[u8],
    ps: usize,
    meta: &crate::meta::Meta,
    touch: Option<&crate::file::MappedFile>,
) -> Result<Freelist> {
    use crate::bitmap::Bitmap;
    use crate::page::Page;
    let hwm = meta.pgid;
    let mut seen = Bitmap::new(hwm);
    seen.set(0);
    seen.set(1);
    if meta.has_freelist() {
        let (h, _) = page::page_run(data, ps, meta.freelist, hwm)?;
        for id in meta.freelist..=meta.freelist + u64::from(h.overflow) {
            seen.set(id);
        }
    }
    let mut stack = vec![(meta.root, 0usize)];
    while let Some((pgid, depth)) = stack.pop() {
        if depth > 16 * page::MAX_DEPTH {
            return Err(Error::corrupt(
                pgid,
                0,
                Corruption::TooDeep(page::MAX_DEPTH),
            ));
        }
        let p = Page::node(data, ps, pgid, hwm)?;
        if let Some(t) = touch {
            t.touch_slice(p.bytes);
        }
        for id in pgid..=pgid + u64::from(p.overflow) {
            if seen.set(id) {
                return Err(p.err(Corruption::Freelist(format!(
                    "page {id} is referenced more than once"
                ))));
            }
        }
        if p.is_leaf() {
            for i in 0..p.len() {
                let e = p.leaf(i)?;
                if e.is_bucket() {
                    let (root, _, _) = page::bucket_value(e.value).ok_or_else(|| {
                        p.err(Corruption::BucketValue {
                            index: i,
                            len: e.value.len(),
                        })
                    })?;
                    if root != 0 {
                        stack.push((root, depth + 1));
                    }
                }
            }
        } else {
            for i in 0..p.len() {
                stack.push((p.branch(i)?.pgid, depth + 1));
            }
        }
    }
    Ok(Freelist {
        free: seen.clear_bits(2, hwm).collect(),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_fit_and_pending() {
        let mut f = Freelist::from_ids([3, 5, 6, 7, 9].into_iter(), 10, 2).unwrap();
        assert_eq!(f.allocate(2), Some(5));
        assert_eq!(f.allocate(1), Some(3));
        assert_eq!(f.allocate(3), None);
        f.free(4, 8, 0).unwrap();
        assert!(f.free(4, 8, 0).is_err());
        assert!(f.free(5, 9, 0).is_err(), "9 is free already");
        assert_eq!(f.allocate(2), None, "8 is pending");
        f.release_below(5);
        assert_eq!(
            f.allocate(2),
            Some(7),
            "7 was free, 8 came back from pending"
        );
        let buf = Freelist::from_ids([4, 2].into_iter(), 10, 2)
            .unwrap()
            .write_page(9, 1, 4096);
        let h = page::read_header(&buf).unwrap();
        assert_eq!(
            page::freelist_ids(&buf, &h).unwrap().collect::<Vec<_>>(),
            [2, 4]
        );
    }
}
