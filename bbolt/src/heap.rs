//! Where a write transaction's keys and values live: in the mapped file (zero-copy, for
//! what it has not changed) or in the transaction's byte heap, one allocation per megabyte
//! instead of two per key.

/// Bytes of a key or value: a range of the mapped file (zero-copy) or of the transaction's
/// byte heap.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Bytes {
    Map { off: usize, len: u32 },
    Heap { chunk: u32, off: u32, len: u32 },
}

/// Where [`Bytes`] point: the map and the transaction's heap.
#[derive(Clone, Copy)]
pub(crate) struct Mem<'a> {
    pub map: &'a [u8],
    pub heap: &'a Heap,
}

impl Bytes {
    pub const EMPTY: Bytes = Bytes::Map { off: 0, len: 0 };

    #[inline]
    pub fn get<'a>(&self, m: Mem<'a>) -> &'a [u8] {
        // Ranges are only created from slices of this map or heap, so they are in bounds;
        // the fallback keeps this path free of panics regardless.
        match *self {
            Bytes::Map { off, len } => m.map.get(off..off + len as usize).unwrap_or(&[]),
            Bytes::Heap { chunk, off, len } => m
                .heap
                .chunks
                .get(chunk as usize)
                .and_then(|c| c.get(off as usize..off as usize + len as usize))
                .unwrap_or(&[]),
        }
    }

    /// A `Map` range when `s` lies inside `map`, else a copy on the heap.
    pub fn from_slice(s: &[u8], map: &[u8], heap: &mut Heap) -> Bytes {
        let base = map.as_ptr() as usize;
        let p = s.as_ptr() as usize;
        if p >= base && p + s.len() <= base + map.len() && s.len() <= u32::MAX as usize {
            Bytes::Map {
                off: p - base,
                len: s.len() as u32,
            }
        } else {
            heap.alloc(s)
        }
    }

    pub fn len(&self) -> usize {
        match *self {
            Bytes::Map { len, .. } | Bytes::Heap { len, .. } => len as usize,
        }
    }
}

/// Owned bytes of a transaction, in large chunks: one allocation per megabyte instead of
/// two per key, all freed together when the transaction ends.
#[derive(Debug, Default)]
pub(crate) struct Heap {
    chunks: Vec<Vec<u8>>,
    /// Empty chunks of an earlier transaction, used before new ones are allocated: fresh
    /// megabyte allocations are mapped, faulted in and unmapped again by every transaction.
    spare: Vec<Vec<u8>>,
    pub used: usize,
}

const HEAP_CHUNK: usize = 1 << 20;

impl Heap {
    pub const fn new() -> Heap {
        Heap {
            chunks: Vec::new(),
            spare: Vec::new(),
            used: 0,
        }
    }

    /// A heap that fills `spare` (empty chunks from [`into_spare`](Self::into_spare)) first.
    pub fn with_spare(spare: Vec<Vec<u8>>) -> Heap {
        Heap {
            spare,
            ..Heap::new()
        }
    }

    /// The standard-size chunks emptied for the next transaction, at most `keep` bytes of them.
    pub fn into_spare(self, keep: usize) -> Vec<Vec<u8>> {
        let mut spare = self.spare;
        spare.extend(
            self.chunks
                .into_iter()
                .filter(|c| c.capacity() == HEAP_CHUNK),
        );
        spare.truncate(keep / HEAP_CHUNK);
        for c in &mut spare {
            c.clear();
        }
        spare
    }

    pub fn alloc(&mut self, data: &[u8]) -> Bytes {
        let len = data.len();
        let fits = self
            .chunks
            .last()
            .is_some_and(|c| c.capacity() - c.len() >= len);
        if !fits {
            let chunk = match self.spare.pop() {
                Some(c) if len <= HEAP_CHUNK => c,
                other => {
                    self.spare.extend(other);
                    Vec::with_capacity(len.max(HEAP_CHUNK))
                }
            };
            self.chunks.push(chunk);
        }
        let chunk = self.chunks.len() - 1;
        let c = &mut self.chunks[chunk];
        let off = c.len();
        c.extend_from_slice(data);
        self.used += len;
        Bytes::Heap {
            chunk: chunk as u32,
            off: off as u32,
            len: len as u32,
        }
    }
}
