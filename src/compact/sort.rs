//! An external merge sort of byte records, for compact's two passes: records accumulate in
//! one arena up to a budget, are sorted and spilled to a run file, and the runs are merged
//! through a heap of buffered readers. Memory is the budget plus 64 KiB per run.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::PathBuf;

use super::{CompactError, io};

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
}
