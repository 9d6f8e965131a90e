//! One bit per page: how the free-set rebuild and the checker stay at bounded memory.

#[derive(Debug, Clone, Default)]
pub(crate) struct Bitmap {
    words: Vec<u64>,
    len: u64,
}

impl Bitmap {
    pub fn new(len: u64) -> Bitmap {
        let words = usize::try_from(len.div_ceil(64)).unwrap_or(usize::MAX);
        Bitmap {
            words: vec![0; words],
            len,
        }
    }

    #[inline]
    pub fn get(&self, i: u64) -> bool {
        if i >= self.len {
            return false;
        }
        self.words[(i / 64) as usize] & (1 << (i % 64)) != 0
    }

    /// Sets bit `i`; returns whether it was already set. Out-of-range bits are ignored.
    #[inline]
    pub fn set(&mut self, i: u64) -> bool {
        if i >= self.len {
            return false;
        }
        let w = &mut self.words[(i / 64) as usize];
        let m = 1 << (i % 64);
        let was = *w & m != 0;
        *w |= m;
        was
    }

    /// Indices of clear bits in `from..to`.
    pub fn clear_bits(&self, from: u64, to: u64) -> impl Iterator<Item = u64> + '_ {
        (from..to.min(self.len)).filter(move |&i| !self.get(i))
    }
}
