//! A decompressed delta, held where it costs no memory.
//!
//! etcdbrctl writes deltas of up to its memory limit (100 MiB of JSON by default), and a
//! hostile object can decompress to far more. A delta is therefore decompressed into memory
//! only while it is small; past [`MEMORY_LIMIT`] bytes it continues into a temp file in the
//! spool directory, which the decoder then reads through a read-only mapping whose resident
//! pages are dropped every [`MAPPED_BUDGET`] bytes. Either way the SHA-256 trailer is hashed
//! while the bytes are written, so the hash is known to match before any event is decoded.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use bbolt::file::MappedFile;

use super::delta::HASH_LEN;

/// Decompressed bytes kept in memory before the rest goes to a spool file.
pub const MEMORY_LIMIT: usize = 1 << 20;
/// Bytes of a spooled delta the decoder may touch before its mapped pages are dropped.
pub const MAPPED_BUDGET: usize = 2 << 20;

/// The decompressed bytes of a delta: JSON text followed by its 32-byte SHA-256.
pub enum DeltaBytes {
    Memory(Vec<u8>),
    /// The spool file is deleted when this is dropped.
    Spooled {
        map: MappedFile,
        _file: tempfile::NamedTempFile,
    },
}

impl std::fmt::Debug for DeltaBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeltaBytes::Memory(v) => write!(f, "Memory({} bytes)", v.len()),
            DeltaBytes::Spooled { map, .. } => write!(f, "Spooled({} bytes)", map.bytes().len()),
        }
    }
}

impl DeltaBytes {
    pub fn bytes(&self) -> &[u8] {
        match self {
            DeltaBytes::Memory(v) => v,
            DeltaBytes::Spooled { map, .. } => map.bytes(),
        }
    }

    /// Records that the decoder read about `n` more bytes; drops the mapping's resident pages
    /// once that passes the budget (a no-op in memory).
    pub fn touch(&self, n: usize) {
        if let DeltaBytes::Spooled { map, .. } = self {
            map.touch(n);
        }
    }
}

/// A [`Write`] that keeps the first [`MEMORY_LIMIT`] bytes in memory and moves everything to a
/// temp file in `dir` once there are more.
pub struct SpillWriter {
    dir: PathBuf,
    mem: Vec<u8>,
    file: Option<(BufWriter<File>, tempfile::NamedTempFile)>,
    limit: usize,
}

impl SpillWriter {
    pub fn new(dir: &Path) -> Self {
        Self::with_limit(dir, MEMORY_LIMIT)
    }

    pub fn with_limit(dir: &Path, limit: usize) -> Self {
        SpillWriter {
            dir: dir.to_path_buf(),
            mem: Vec::new(),
            file: None,
            limit,
        }
    }

    /// Where the bytes went once they passed the memory limit.
    pub fn spool_path(&self) -> Option<&Path> {
        self.file.as_ref().map(|(_, t)| t.path())
    }

    pub fn finish(self) -> io::Result<DeltaBytes> {
        let Some((w, tmp)) = self.file else {
            return Ok(DeltaBytes::Memory(self.mem));
        };
        // The spool is private scratch read back at once: no fsync.
        let file = w.into_inner().map_err(|e| e.into_error())?;
        let map = MappedFile::map(&file, MAPPED_BUDGET)?;
        Ok(DeltaBytes::Spooled { map, _file: tmp })
    }
}

impl Write for SpillWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some((w, _)) = &mut self.file {
            return w.write(buf);
        }
        if self.mem.len() + buf.len() <= self.limit {
            self.mem.extend_from_slice(buf);
            return Ok(buf.len());
        }
        let tmp = tempfile::Builder::new()
            .prefix("etcd-restore-delta-json-")
            .tempfile_in(&self.dir)?;
        let mut w = BufWriter::with_capacity(1 << 20, tmp.reopen()?);
        w.write_all(&self.mem)?;
        self.mem = Vec::new();
        w.write_all(buf)?;
        self.file = Some((w, tmp));
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.file {
            Some((w, _)) => w.flush(),
            None => Ok(()),
        }
    }
}

/// Length of the JSON text in `bytes` (the trailer cut off).
pub fn json_len(bytes: &[u8]) -> usize {
    bytes.len().saturating_sub(HASH_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_output_stays_in_memory_and_large_output_spills_to_a_mapped_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = SpillWriter::with_limit(dir.path(), 100);
        w.write_all(&[7u8; 60]).unwrap();
        assert!(w.spool_path().is_none());
        assert!(matches!(w.finish().unwrap(), DeltaBytes::Memory(v) if v == vec![7u8; 60]));

        let mut w = SpillWriter::with_limit(dir.path(), 100);
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        for chunk in data.chunks(37) {
            w.write_all(chunk).unwrap();
        }
        let path = w.spool_path().unwrap().to_path_buf();
        let out = w.finish().unwrap();
        assert!(matches!(out, DeltaBytes::Spooled { .. }));
        assert_eq!(out.bytes(), &data[..]);
        out.touch(1 << 30); // dropping resident pages keeps the bytes readable
        assert_eq!(out.bytes(), &data[..]);
        drop(out);
        assert!(!path.exists(), "the spool file goes with the delta");
    }
}
