//! Delta objects: downloaded raw (in memory when small, spooled to a temp file when large),
//! decompressed with their SHA-256 trailer checked when their turn comes, and two deltas whose
//! revisions overlap compared over the common range.

use std::convert::Infallible;
use std::io::Write;
use std::path::Path;

use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::FetchError;
use super::trailer::{HASH_LEN, TrailerWriter};
use crate::show::hex;
use crate::snapstore::bridge::{Body, FileRange};
use crate::snapstore::codec::decompress_to;
use crate::snapstore::delta::{DeltaError, Event, decode_delta_json};
use crate::snapstore::name::Snapshot;
use crate::snapstore::spool::{DeltaBytes, SpillWriter, json_len};
use crate::snapstore::store::{Store, StoreError};

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
