//! The full snapshot: streamed from the store into the database file, decompressed, with
//! etcd's SHA-256 trailer checked and stripped on the way; hashing and writing run on a
//! second thread beside the decompression.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;
use std::sync::Arc;

use sha2::Digest;

use super::FetchError;
use super::trailer::{HASH_LEN, TrailerWriter};
use crate::progress::{CountingReader, Progress};
use crate::show::hex;
use crate::snapstore::codec::{CodecError, decompress_to};
use crate::snapstore::name::Compression;
use crate::snapstore::name::Snapshot;
use crate::snapstore::store::Store;

/// What a full snapshot download produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct FullInfo {
    /// Size of the database file written (trailer stripped).
    pub db_size: u64,
    /// Whether the stream ended in etcd's SHA-256 trailer.
    pub had_hash: bool,
    /// Whether that trailer was checked (and matched).
    pub hash_verified: bool,
    /// Bytes downloaded.
    pub object_size: u64,
}

/// Streams a full snapshot into `dest` (which must not exist), decompressing by suffix and
/// checking etcd's SHA-256 trailer. `verify_hash = false` is `--skip-hash-check`: a trailer, if
/// present, is still stripped, and a file without one is accepted. The file is not fsynced (the caller syncs what it publishes); on
/// error it is removed.
pub async fn fetch_full(
    store: &Store,
    snapshot: &Snapshot,
    dest: &Path,
    verify_hash: bool,
) -> Result<FullInfo, FetchError> {
    fetch_full_with_progress(store, snapshot, dest, verify_hash, None).await
}

/// [`fetch_full`], counting the object's bytes into `progress` as they arrive.
pub async fn fetch_full_with_progress(
    store: &Store,
    snapshot: &Snapshot,
    dest: &Path,
    verify_hash: bool,
    progress: Option<Arc<Progress>>,
) -> Result<FullInfo, FetchError> {
    let (meta, body) = store.get_snapshot(snapshot).await?;
    let reader = body.into_reader();
    let object = snapshot.path.clone();
    let compression = snapshot.compression();
    let dest_owned = dest.to_path_buf();
    if let Some(p) = &progress {
        p.set_base_total(meta.size);
    }
    let result = tokio::task::spawn_blocking(move || match progress {
        Some(progress) => write_full(
            CountingReader {
                inner: reader,
                progress,
            },
            &object,
            compression,
            &dest_owned,
            verify_hash,
        ),
        None => write_full(reader, &object, compression, &dest_owned, verify_hash),
    })
    .await
    .map_err(|e| FetchError::Task {
        object: snapshot.path.clone(),
        detail: e.to_string(),
    })?;
    match result {
        Ok(mut info) => {
            info.object_size = meta.size;
            Ok(info)
        }
        Err(e) => {
            let _ = std::fs::remove_file(dest);
            Err(e)
        }
    }
}

/// Decompressed bytes handed to the writer thread at a time, and how many may wait.
const HANDOFF_CHUNK: usize = 512 << 10;
const HANDOFF_QUEUE: usize = 2;

/// Collects writes into chunks for another thread; spent chunks come back for reuse.
struct Handoff {
    tx: std::sync::mpsc::SyncSender<Vec<u8>>,
    back: std::sync::mpsc::Receiver<Vec<u8>>,
    buf: Vec<u8>,
}

impl Handoff {
    fn send(&mut self) -> io::Result<()> {
        let mut next = self.back.try_recv().unwrap_or_default();
        next.clear();
        next.reserve(HANDOFF_CHUNK);
        let full = std::mem::replace(&mut self.buf, next);
        self.tx
            .send(full)
            .map_err(|_| io::Error::other("the writer thread stopped"))
    }
}

impl Write for Handoff {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(HANDOFF_CHUNK - self.buf.len());
        self.buf.extend_from_slice(&buf[..n]);
        if self.buf.len() == HANDOFF_CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.send()
    }
}

/// The blocking half of [`fetch_full`]; also used for local files.
pub fn write_full<R: Read>(
    reader: R,
    object: &str,
    compression: Compression,
    dest: &Path,
    verify_hash: bool,
) -> Result<FullInfo, FetchError> {
    let io_err = |what: &'static str| {
        let object = object.to_string();
        let path = dest.to_path_buf();
        move |source| FetchError::Io {
            object,
            what,
            path,
            source,
        }
    };
    let file = File::options()
        .write(true)
        .create_new(true)
        .open(dest)
        .map_err(io_err("creating"))?;
    // Decompression on this thread; the hash and the file write of its output on a second one.
    let trailer = TrailerWriter::new(BufWriter::with_capacity(1 << 20, file));
    let (written, decompressed) = std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(HANDOFF_QUEUE);
        let (back_tx, back_rx) = std::sync::mpsc::channel::<Vec<u8>>();
        let worker = s.spawn(move || -> io::Result<_> {
            let mut w = trailer;
            for chunk in rx {
                w.write_all(&chunk)?;
                let _ = back_tx.send(chunk);
            }
            Ok(w)
        });
        let mut handoff = Handoff {
            tx,
            back: back_rx,
            buf: Vec::with_capacity(HANDOFF_CHUNK),
        };
        let decompressed = decompress_to(compression, reader, object, &mut handoff).and_then(|n| {
            handoff.flush().map_err(|source| CodecError::Sink {
                object: object.to_string(),
                decompressed_offset: n,
                source,
            })
        });
        drop(handoff);
        let written = worker
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the writer thread panicked")));
        (written, decompressed)
    });
    // A failed write stops the decompressor too; its own error is the one to report.
    let mut w = written.map_err(io_err("writing"))?;
    decompressed?;
    let total = w.total;
    let had_hash = total % 512 == HASH_LEN as u64;
    let mut hash_verified = false;
    let db_size;
    if had_hash {
        db_size = total - HASH_LEN as u64;
        if verify_hash {
            let actual = w.hasher.clone().finalize();
            if actual.as_slice() != &w.tail[..] {
                return Err(FetchError::HashMismatch {
                    object: object.to_string(),
                    offset: db_size,
                    expected: hex(&w.tail),
                    actual: hex(&actual),
                });
            }
            hash_verified = true;
        }
    } else {
        if verify_hash {
            return Err(FetchError::MissingHash {
                object: object.to_string(),
                size: total,
            });
        }
        let tail = w.tail;
        let n = w.tail_len;
        w.inner.write_all(&tail[..n]).map_err(io_err("writing"))?;
        db_size = total;
    }
    // Not fsynced: the file is a step of a larger job (a restore's staging directory, synced
    // whole before it is moved into place; compaction's scratch database), and a second
    // fsync of the same pages sat on the restore's critical path.
    w.inner
        .into_inner()
        .map_err(|e| e.into_error())
        .map_err(io_err("writing"))?;
    Ok(FullInfo {
        db_size,
        had_hash,
        hash_verified,
        object_size: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapstore::codec::compress_to;
    use crate::snapstore::name::Compression;
    use sha2::Sha256;

    fn with_trailer(db: &[u8]) -> Vec<u8> {
        let mut v = db.to_vec();
        v.extend_from_slice(&Sha256::digest(db));
        v
    }

    fn fake_db(pages: usize) -> Vec<u8> {
        (0..pages * 4096).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn trailer_writer_handles_every_write_split() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i % 256) as u8).collect();
        for step in [1usize, 3, 31, 32, 33, 100, 999, 1000] {
            let mut w = TrailerWriter::new(Vec::new());
            for c in data.chunks(step) {
                w.write_all(c).unwrap();
            }
            assert_eq!(w.inner, &data[..data.len() - 32], "step {step}");
            assert_eq!(&w.tail[..w.tail_len], &data[data.len() - 32..]);
            assert_eq!(w.total, 1000);
        }
        let mut w = TrailerWriter::new(Vec::new());
        w.write_all(b"short").unwrap();
        assert!(w.inner.is_empty());
        assert_eq!(&w.tail[..w.tail_len], b"short");
    }

    #[test]
    fn full_snapshot_hash_rules() {
        let dir = tempfile::tempdir().unwrap();
        let db = fake_db(3);
        for c in Compression::ALL {
            let obj = compress_to(c, with_trailer(&db).as_slice(), Vec::new()).unwrap();
            let dest = dir.path().join(format!("ok-{c}"));
            let info = write_full(obj.as_slice(), "Full-x", c, &dest, true).unwrap();
            assert!(info.had_hash && info.hash_verified);
            assert_eq!(info.db_size, db.len() as u64);
            assert!(std::fs::read(&dest).unwrap() == db);
        }

        // Wrong trailer.
        let mut bad = with_trailer(&db);
        let n = bad.len();
        bad[n - 5] ^= 1;
        let dest = dir.path().join("bad");
        let err = write_full(bad.as_slice(), "Full-x", Compression::None, &dest, true).unwrap_err();
        assert!(
            matches!(err, FetchError::HashMismatch { offset, .. } if offset == db.len() as u64),
            "{err}"
        );
        // --skip-hash-check strips it without checking.
        let dest = dir.path().join("skipped");
        let info = write_full(bad.as_slice(), "Full-x", Compression::None, &dest, false).unwrap();
        assert!(info.had_hash && !info.hash_verified);
        assert_eq!(std::fs::read(&dest).unwrap().len(), db.len());

        // No trailer (a raw member/snap/db).
        let dest = dir.path().join("raw");
        let err = write_full(db.as_slice(), "Full-x", Compression::None, &dest, true).unwrap_err();
        assert!(matches!(err, FetchError::MissingHash { .. }), "{err}");
        let dest = dir.path().join("raw-skip");
        let info = write_full(db.as_slice(), "Full-x", Compression::None, &dest, false).unwrap();
        assert!(!info.had_hash);
        assert!(std::fs::read(&dest).unwrap() == db);

        // Never overwrites.
        let err = write_full(db.as_slice(), "Full-x", Compression::None, &dest, false).unwrap_err();
        assert!(matches!(err, FetchError::Io { .. }));
    }
}
