//! Downloading snapshots: the full snapshot streamed into a file with etcd's SHA-256 trailer
//! checked and stripped on the way, and delta objects downloaded raw (in memory when small,
//! spooled to a temp file when large) and decompressed when their turn comes.

use crate::show::hex;

use std::convert::Infallible;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt;
use sha2::{Digest, Sha256};
use thiserror::Error;
use tokio::io::AsyncWriteExt;

use super::bridge::{Body, FileRange};
use super::codec::{CodecError, decompress_to};
use super::delta::{DeltaError, Event, decode_delta_json};
use super::name::Snapshot;
use super::spool::{DeltaBytes, SpillWriter, json_len};
use super::store::{Store, StoreError};
use crate::progress::{CountingReader, Progress};

/// etcd appends a SHA-256 to a snapshot stream; a file "has a hash" when its size is 32 more
/// than a multiple of 512 (bbolt files are page-aligned). etcd `snapshot.copyAndVerifyDB`.
const HASH_LEN: usize = 32;

#[derive(Debug, Error)]
pub enum FetchError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error(
        "{object}: snapshot missing hash ({size} bytes is not 32 more than a multiple of 512) but --skip-hash-check is not set"
    )]
    MissingHash { object: String, size: u64 },
    #[error(
        "{object}: SHA-256 trailer at byte {offset} is {expected} but the database hashes to {actual}"
    )]
    HashMismatch {
        object: String,
        offset: u64,
        expected: String,
        actual: String,
    },
    #[error("{object}: {what} {path}: {source}")]
    Io {
        object: String,
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A delta that failed to decode (the message names the object and offset).
    #[error("{0}")]
    Delta(String),
    #[error("{object} and {other} overlap in revisions {from}..={to} but disagree: {detail}")]
    Overlap {
        object: String,
        other: String,
        from: i64,
        to: i64,
        detail: String,
    },
    #[error("{object}: download task failed: {detail}")]
    Task { object: String, detail: String },
}

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

/// Holds back the last 32 bytes written, hashing and forwarding everything before them.
struct TrailerWriter<W: Write> {
    inner: W,
    hasher: Sha256,
    tail: [u8; HASH_LEN],
    tail_len: usize,
    total: u64,
}

impl<W: Write> TrailerWriter<W> {
    fn new(inner: W) -> Self {
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
    compression: super::name::Compression,
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

/// A downloaded, still compressed object.
pub enum RawObject {
    Memory(Vec<u8>),
    /// Deleted when dropped.
    Spooled(tempfile::NamedTempFile),
    /// A local store's own file, read in place rather than copied to a spool file.
    Local(FileRange),
}

impl RawObject {
    pub fn len(&self) -> u64 {
        match self {
            RawObject::Memory(v) => v.len() as u64,
            RawObject::Spooled(f) => f.as_file().metadata().map(|m| m.len()).unwrap_or(0),
            RawObject::Local(f) => f.len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Downloads an object whole: into memory up to `spool_threshold` bytes, else into a temp file
/// in `spool_dir` (named by tempfile, never after the object).
pub async fn download_raw(
    store: &Store,
    snapshot: &Snapshot,
    spool_dir: &Path,
    spool_threshold: u64,
) -> Result<RawObject, FetchError> {
    let (meta, body) = store.get_snapshot(snapshot).await?;
    let mut stream = match body {
        Body::File(f) => return Ok(RawObject::Local(f)),
        Body::Stream(s) => s,
    };
    let read_err = |source: object_store::Error| {
        FetchError::Store(StoreError::Object {
            object: snapshot.path.clone(),
            op: "get",
            source,
        })
    };
    if meta.size <= spool_threshold {
        let mut buf = Vec::with_capacity(usize::try_from(meta.size).unwrap_or(0));
        while let Some(chunk) = stream.next().await {
            buf.extend_from_slice(&chunk.map_err(read_err)?);
        }
        return Ok(RawObject::Memory(buf));
    }
    let io_err = |what: &'static str| {
        let object = snapshot.path.clone();
        let path = spool_dir.to_path_buf();
        move |source| FetchError::Io {
            object,
            what,
            path,
            source,
        }
    };
    let tmp = tempfile::Builder::new()
        .prefix("etcd-restore-delta-")
        .tempfile_in(spool_dir)
        .map_err(io_err("creating a spool file in"))?;
    let mut f = tokio::fs::File::from_std(tmp.reopen().map_err(io_err("opening a spool file in"))?);
    while let Some(chunk) = stream.next().await {
        f.write_all(&chunk.map_err(read_err)?)
            .await
            .map_err(io_err("writing a spool file in"))?;
    }
    f.flush().await.map_err(io_err("writing a spool file in"))?;
    Ok(RawObject::Spooled(tmp))
}

/// Decompresses a downloaded delta (blocking) and checks its SHA-256 trailer on the way: the
/// JSON stays in memory while small and goes to a spool file in `spool_dir` otherwise
/// ([`DeltaBytes`]), so neither a large nor a hostile delta is ever held whole in memory.
pub fn decompress_delta(
    raw: &RawObject,
    snapshot: &Snapshot,
    spool_dir: &Path,
) -> Result<DeltaBytes, FetchError> {
    let object = &snapshot.path;
    let spool_err = |what: &'static str| {
        let path = spool_dir.to_path_buf();
        move |source| FetchError::Io {
            object: object.clone(),
            what,
            path,
            source,
        }
    };
    let mut w = TrailerWriter::new(SpillWriter::new(spool_dir));
    match raw {
        RawObject::Memory(v) => {
            decompress_to(snapshot.compression(), v.as_slice(), object, &mut w)?;
        }
        RawObject::Local(f) => {
            decompress_to(snapshot.compression(), f.reader(), object, &mut w)?;
        }
        RawObject::Spooled(f) => {
            let file = f.reopen().map_err(|source| FetchError::Io {
                object: object.clone(),
                what: "reopening spool file",
                path: f.path().to_path_buf(),
                source,
            })?;
            decompress_to(snapshot.compression(), file, object, &mut w)?;
        }
    }
    if w.total <= HASH_LEN as u64 {
        return Err(FetchError::Delta(
            DeltaError::<Infallible>::TooShort {
                object: object.clone(),
                len: w.total,
            }
            .to_string(),
        ));
    }
    let actual = w.hasher.clone().finalize();
    if actual.as_slice() != &w.tail[..] {
        return Err(FetchError::Delta(
            DeltaError::<Infallible>::Hash {
                object: object.clone(),
                offset: w.total - HASH_LEN as u64,
                expected: hex(&w.tail),
                actual: hex(&actual),
            }
            .to_string(),
        ));
    }
    let tail = w.tail;
    let mut inner = w.inner;
    inner
        .write_all(&tail)
        .map_err(spool_err("writing a spool file in"))?;
    inner.finish().map_err(spool_err("mapping a spool file in"))
}

/// The events of `data` (a hash-checked delta) with `from <= mod_revision <= to`: how many,
/// and a SHA-256 over their fields, so two deltas' common ranges compare in constant memory.
fn digest_range(
    data: &DeltaBytes,
    snapshot: &Snapshot,
    from: i64,
    to: i64,
) -> Result<(u64, [u8; 32]), FetchError> {
    let mut h = Sha256::new();
    let mut n = 0u64;
    let json = data
        .bytes()
        .get(..json_len(data.bytes()))
        .unwrap_or_default();
    decode_delta_json(json, &snapshot.path, &mut |e: &Event<'_>| {
        data.touch(e.key.len() + e.value.len() * 4 / 3 + 128);
        if e.mod_revision >= from && e.mod_revision <= to {
            n += 1;
            h.update([e.kind as u8]);
            for x in [e.create_revision, e.mod_revision, e.version, e.lease] {
                h.update(x.to_le_bytes());
            }
            for b in [e.key, e.value] {
                h.update((b.len() as u64).to_le_bytes());
                h.update(b);
            }
        }
        Ok::<(), Infallible>(())
    })
    .map_err(|e: DeltaError<Infallible>| FetchError::Delta(e.to_string()))?;
    Ok((n, h.finalize().into()))
}

/// Checks that two deltas hold the same events where their revision ranges overlap (a leader
/// hand-off leaves two sidecars' deltas over the same revisions, upstream issue 1043).
pub fn check_overlap(
    a: &Snapshot,
    a_data: &DeltaBytes,
    b: &Snapshot,
    b_data: &DeltaBytes,
) -> Result<(), FetchError> {
    let from = a.start_revision().max(b.start_revision());
    let to = a.last_revision().min(b.last_revision());
    if from > to {
        return Ok(());
    }
    let (na, ha) = digest_range(a_data, a, from, to)?;
    let (nb, hb) = digest_range(b_data, b, from, to)?;
    if (na, ha) != (nb, hb) {
        return Err(FetchError::Overlap {
            object: a.path.clone(),
            other: b.path.clone(),
            from,
            to,
            detail: if na != nb {
                format!("{na} events vs {nb} events in the common range")
            } else {
                format!("the {na} events in the common range differ")
            },
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapstore::codec::compress_to;
    use crate::snapstore::name::Compression;

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
