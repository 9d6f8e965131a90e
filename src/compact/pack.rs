//! Packing the compacted database into a snapshot object: the db, then sha256(db) (the trailer
//! etcd's snapshot stream ends with and etcdbrctl's restore checks), compressed.
//!
//! One read of the db does it all: the reader hashes the bytes as the compressor takes them and
//! appends the hash at the end, and the compressed bytes are hashed and counted as they are
//! written. The hash is of the very bytes that were compressed, so nothing needs reading back.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::{CompactError, io};
use crate::snapstore::Compression;
use crate::snapstore::codec::{Parallelism, compress_parallel};

/// What [`pack`] wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packed {
    pub db_bytes: u64,
    /// sha256 of the db: the object's trailer.
    pub db_sha256: [u8; 32],
    pub object_bytes: u64,
    /// sha256 of the compressed object.
    pub object_sha256: [u8; 32],
}

/// Writes `out` (must not exist): `db` + sha256(`db`), compressed at `level` with `par`.
///
/// `out` is not fsynced: it is scratch in the work directory, uploaded right away (from the
/// page cache); a crash leaves it in a work directory the next run removes.
pub fn pack(
    db: &Path,
    out: &Path,
    compression: Compression,
    level: Option<i32>,
    par: Parallelism,
) -> Result<Packed, CompactError> {
    let file = File::open(db).map_err(io("opening", db))?;
    let mut input = Trailed::new(file);
    let dest = File::options()
        .write(true)
        .create_new(true)
        .open(out)
        .map_err(io("creating", out))?;
    let written = compress_parallel(compression, level, &mut input, Hashed::new(dest), par);
    // A read error is the db's, anything else the output's (or the codec's, on `out`).
    let written = match (written, input.error.take()) {
        (_, Some(e)) => return Err(io("reading", db)(e)),
        (Err(e), None) => return Err(io("compressing into", out)(e)),
        (Ok(w), None) => w,
    };
    let Some(db_sha256) = input.sha256 else {
        // compress_parallel reads to the end; not reaching it would be a bug in it.
        return Err(io("reading", db)(io::Error::other(
            "the compressor stopped before the end of the database",
        )));
    };
    Ok(Packed {
        db_bytes: input.bytes,
        db_sha256,
        object_bytes: written.bytes,
        object_sha256: written.hasher.finalize().into(),
    })
}

/// The db followed by its sha256: hashes what it reads and, at the end of the file, serves the
/// 32-byte hash. Remembers a read error so it can be told from an output error.
struct Trailed<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
    /// Set once the inner reader has ended.
    sha256: Option<[u8; 32]>,
    trailer_pos: usize,
    error: Option<io::Error>,
}

impl<R: Read> Trailed<R> {
    fn new(inner: R) -> Self {
        Trailed {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
            sha256: None,
            trailer_pos: 0,
            error: None,
        }
    }
}

impl<R: Read> Read for Trailed<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.sha256.is_none() {
            match self.inner.read(buf) {
                Ok(0) => {
                    self.sha256 = Some(std::mem::take(&mut self.hasher).finalize().into());
                }
                Ok(n) => {
                    self.hasher.update(buf.get(..n).unwrap_or_default());
                    self.bytes += n as u64;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => return Err(e),
                Err(e) => {
                    let kind = e.kind();
                    let msg = e.to_string();
                    self.error = Some(e);
                    return Err(io::Error::new(kind, msg));
                }
            }
        }
        let trailer = self.sha256.unwrap_or_default();
        let rest = trailer.get(self.trailer_pos..).unwrap_or_default();
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.trailer_pos += n;
        Ok(n)
    }
}

/// Hashes and counts the bytes written through it.
struct Hashed<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W> Hashed<W> {
    fn new(inner: W) -> Self {
        Hashed {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }
}

impl<W: Write> Write for Hashed<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        let done = buf.get(..n).unwrap_or_default();
        self.hasher.update(done);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapstore::decompress_vec;

    fn par() -> Parallelism {
        Parallelism {
            threads: 2,
            chunks_in_flight: 4,
            chunk: 0,
        }
    }

    #[test]
    fn packed_object_is_db_plus_trailer_and_hashes_are_of_the_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db");
        // 3.5 MiB: several gzip members; the trailer lands in the last one.
        let data: Vec<u8> = (0..(7u32 << 19))
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        std::fs::write(&db, &data).unwrap();
        for c in Compression::ALL {
            let out = dir.path().join(format!("out-{c}"));
            let p = pack(&db, &out, c, None, par()).unwrap();
            let object = std::fs::read(&out).unwrap();
            let want_db: [u8; 32] = Sha256::digest(&data).into();
            let want_obj: [u8; 32] = Sha256::digest(&object).into();
            assert_eq!(p.db_sha256, want_db, "{c}");
            assert_eq!(p.object_sha256, want_obj, "{c}");
            assert_eq!(p.db_bytes, data.len() as u64);
            assert_eq!(p.object_bytes, object.len() as u64);
            let plain = decompress_vec(c, &object, "o").unwrap();
            assert_eq!(plain.len(), data.len() + 32, "{c}");
            assert!(plain[..data.len()] == data[..], "{c}");
            assert_eq!(plain[data.len()..], want_db, "{c}");
        }
    }

    #[test]
    fn existing_output_and_missing_db_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db");
        std::fs::write(&db, b"x").unwrap();
        let out = dir.path().join("out");
        std::fs::write(&out, b"keep").unwrap();
        let e = pack(&db, &out, Compression::Gzip, None, par()).unwrap_err();
        assert!(
            matches!(
                e,
                CompactError::Io {
                    what: "creating",
                    ..
                }
            ),
            "{e}"
        );
        assert_eq!(std::fs::read(&out).unwrap(), b"keep");
        let e = pack(
            &dir.path().join("nope"),
            &dir.path().join("o2"),
            Compression::Gzip,
            None,
            par(),
        )
        .unwrap_err();
        assert!(
            matches!(
                e,
                CompactError::Io {
                    what: "opening",
                    ..
                }
            ),
            "{e}"
        );
    }
}
