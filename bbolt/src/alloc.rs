//! Page allocation, freeing and writing for one write transaction: new pages come from the
//! free set (reuse mode) or past the high-water mark, and contiguous page writes are combined
//! into one buffer before they reach the file.

use std::path::PathBuf;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::file::Storage;
use crate::freelist::Freelist;
use crate::node::Pager;

pub(crate) enum Space {
    /// Never reuse pages; freed pages are left for a later rebuild (meta says NOFREELIST).
    AppendOnly,
    Tracked(Freelist),
}

/// What a commit did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitStats {
    pub txid: u64,
    pub pages_written: u64,
    pub pages_freed: u64,
    pub write_calls: u64,
    /// High-water mark after the commit.
    pub hwm: u64,
}

/// Allocation, freeing and writing of pages for one transaction.
pub(crate) struct Alloc {
    pub(crate) space: Space,
    pub(crate) txid: u64,
    pub(crate) next: u64,
    /// Runs taken from the free set (returned on rollback).
    pub(crate) taken: Vec<(u64, usize)>,
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) path: PathBuf,
    pub(crate) ps: usize,
    pub(crate) wbuf: Vec<u8>,
    pub(crate) wpos: u64,
    pub(crate) stats: CommitStats,
}

/// Writes are combined while they are contiguous, up to this many bytes.
const WRITE_COMBINE: usize = 4 << 20;

impl Alloc {
    pub(crate) fn flush(&mut self) -> Result<()> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        self.stats.write_calls += 1;
        let pos = self.wpos;
        self.storage
            .write_at(&self.wbuf, pos)
            .map_err(|source| Error::Io {
                path: self.path.clone(),
                op: "write pages",
                offset: pos,
                source,
            })?;
        self.wbuf.clear();
        Ok(())
    }
}

impl Pager for Alloc {
    fn write_with(
        &mut self,
        pgid: u64,
        pages: usize,
        fill: &mut dyn FnMut(&mut [u8]),
    ) -> Result<()> {
        let len = pages * self.ps;
        let pos = pgid * self.ps as u64;
        if self.wbuf.is_empty() || self.wpos + self.wbuf.len() as u64 != pos {
            self.flush()?;
            self.wpos = pos;
        }
        self.stats.pages_written += pages as u64;
        let start = self.wbuf.len();
        self.wbuf.resize(start + len, 0);
        fill(&mut self.wbuf[start..]);
        if self.wbuf.len() >= WRITE_COMBINE {
            self.flush()?;
        }
        Ok(())
    }

    fn allocate(&mut self, pages: usize) -> Result<u64> {
        if let Space::Tracked(fl) = &mut self.space
            && let Some(id) = fl.allocate(pages)
        {
            self.taken.push((id, pages));
            return Ok(id);
        }
        let id = self.next;
        self.next += pages as u64;
        Ok(id)
    }

    fn free(&mut self, pgid: u64, overflow: u32) -> Result<()> {
        self.stats.pages_freed += u64::from(overflow) + 1;
        match &mut self.space {
            Space::Tracked(fl) => fl.free(self.txid, pgid, overflow),
            Space::AppendOnly => Ok(()),
        }
    }

    fn write(&mut self, pgid: u64, buf: Vec<u8>) -> Result<()> {
        self.stats.pages_written += (buf.len() / self.ps) as u64;
        let pos = pgid * self.ps as u64;
        if !self.wbuf.is_empty() && self.wpos + self.wbuf.len() as u64 == pos {
            self.wbuf.extend_from_slice(&buf);
        } else {
            self.flush()?;
            self.wpos = pos;
            if self.wbuf.capacity() == 0 && buf.len() >= WRITE_COMBINE {
                self.wbuf = buf;
            } else {
                self.wbuf.extend_from_slice(&buf);
            }
        }
        if self.wbuf.len() >= WRITE_COMBINE {
            self.flush()?;
        }
        Ok(())
    }
}
