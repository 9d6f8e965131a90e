//! etcd's SHA-256 trailer on a snapshot stream, held back and checked while the stream is
//! written on.

use std::io::{self, Write};

use sha2::{Digest, Sha256};

/// etcd appends a SHA-256 to a snapshot stream; a file "has a hash" when its size is 32 more
/// than a multiple of 512 (bbolt files are page-aligned). etcd `snapshot.copyAndVerifyDB`.
pub(super) const HASH_LEN: usize = 32;

/// Holds back the last 32 bytes written, hashing and forwarding everything before them.
pub(super) struct TrailerWriter<W: Write> {
    pub(super) inner: W,
    pub(super) hasher: Sha256,
    pub(super) tail: [u8; HASH_LEN],
    pub(super) tail_len: usize,
    pub(super) total: u64,
}

impl<W: Write> TrailerWriter<W> {
    pub(super) fn new(inner: W) -> Self {
        TrailerWriter {
            inner,
            hasher: Sha256::new(),
            tail: [0; HASH_LEN],
            tail_len: 0,
            total: 0,
        }
    }

    fn forward(&mut self, data: &[u8]) -> io::Result<()> {
        self.hasher.update(data);
        self.inner.write_all(data)
    }
}

impl<W: Write> Write for TrailerWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.total += buf.len() as u64;
        let combined = self.tail_len + buf.len();
        if combined <= HASH_LEN {
            self.tail[self.tail_len..combined].copy_from_slice(buf);
            self.tail_len = combined;
            return Ok(buf.len());
        }
        // Forward everything except the last 32 bytes of (tail ++ buf).
        let release = combined - HASH_LEN;
        let from_tail = release.min(self.tail_len);
        if from_tail > 0 {
            let t = self.tail;
            self.forward(&t[..from_tail])?;
        }
        let from_buf = release - from_tail;
        let (send, keep) = buf.split_at(from_buf);
        self.forward(send)?;
        // New tail = remaining old tail bytes ++ keep.
        let old_rest = self.tail_len - from_tail;
        let mut new_tail = [0u8; HASH_LEN];
        new_tail[..old_rest].copy_from_slice(&self.tail[from_tail..self.tail_len]);
        new_tail[old_rest..old_rest + keep.len()].copy_from_slice(keep);
        self.tail = new_tail;
        self.tail_len = old_rest + keep.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
