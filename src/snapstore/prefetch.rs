//! Downloads the plan's deltas ahead of the applier, in plan order.
//!
//! The work starts when the prefetcher is made, not when the consumer first asks: up to
//! `max_fetchers` downloads run at once (etcdbrctl's `--max-fetchers`, default 6), each raw
//! object in memory if it is small, a local store's file read in place, a spool file
//! otherwise; deltas are decompressed (and their hash checked) one at a time in plan order,
//! into memory while small and into a mapped spool file otherwise ([`super::spool`]), up to
//! [`AHEAD_MEMORY_KIB`] and [`AHEAD_SPOOL_MIB`] ahead of the consumer. So memory stays
//! bounded by `max_fetchers × spool_threshold` plus a few MiB, whatever the deltas' sizes.
//! Spool files are deleted as soon as a delta is done (and when the prefetcher is dropped).

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::stream::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::delta::{DeltaError, DeltaStats, Event, decode_delta_json};
use super::fetch::{FetchError, RawObject, check_overlap, decompress_delta, download_raw};
use super::plan::PlannedDelta;
use super::spool::{DeltaBytes, json_len};
use super::store::Store;

#[derive(Debug, Clone)]
pub struct PrefetchOptions {
    pub max_fetchers: usize,
    pub spool_dir: PathBuf,
    /// Objects larger than this (compressed) are spooled to `spool_dir`.
    pub spool_threshold: u64,
}

impl PrefetchOptions {
    pub fn new(max_fetchers: usize, spool_dir: PathBuf) -> Self {
        PrefetchOptions {
            max_fetchers: max_fetchers.max(1),
            spool_dir,
            spool_threshold: 1 << 20,
        }
    }
}

/// A delta ready to decode: its plan entry and the decompressed bytes (JSON + SHA-256), whose
/// hash the prefetcher has already checked.
#[derive(Debug)]
pub struct FetchedDelta {
    pub planned: PlannedDelta,
    pub data: DeltaBytes,
    /// Size of the object as stored (compressed).
    pub object_size: u64,
    /// This delta's share of the prefetcher's run-ahead budget, given back when it is dropped.
    ahead: Option<OwnedSemaphorePermit>,
}

impl FetchedDelta {
    /// The decompressed object: JSON text and its verified SHA-256 trailer.
    pub fn bytes(&self) -> &[u8] {
        self.data.bytes()
    }

    /// The JSON text (the verified trailer cut off).
    pub fn json(&self) -> &[u8] {
        let b = self.data.bytes();
        b.get(..json_len(b)).unwrap_or_default()
    }

    /// Decodes the events. The SHA-256 was verified when the delta was prepared, so this is
    /// [`decode_delta`](super::delta::decode_delta) without hashing the bytes a second time.
    /// The pages of a spooled delta are dropped from memory as the decoder moves on.
    pub fn decode<E, F>(&self, mut f: F) -> Result<DeltaStats, DeltaError<E>>
    where
        F: FnMut(&Event<'_>) -> Result<(), E>,
    {
        let mut g = |e: &Event<'_>| {
            // About the JSON bytes behind the event: base64 text plus the fixed fields.
            self.data.touch(e.key.len() + e.value.len() * 4 / 3 + 128);
            f(e)
        };
        decode_delta_json(self.json(), &self.planned.snapshot.path, &mut g)
    }
}

struct Downloaded {
    planned: PlannedDelta,
    raw: RawObject,
    others: Vec<RawObject>,
}

/// Aborts the spawned download when the prefetcher is dropped early.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> Future for AbortOnDrop<T> {
    type Output = Result<T, tokio::task::JoinError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}

/// How far prepared deltas may run ahead of the consumer, in KiB of small deltas held in
/// memory and in MiB of larger ones waiting in spool files. The spool costs disk, not memory
/// (its mapped pages are touched only when decoded), so the deltas can all decompress while
/// the base downloads instead of one at a time beside the applier.
const AHEAD_MEMORY_KIB: usize = 4 << 10;
const AHEAD_SPOOL_MIB: usize = 256;

pub struct Prefetcher {
    rx: tokio::sync::mpsc::UnboundedReceiver<Result<FetchedDelta, FetchError>>,
    /// Drives the downloads and preparation; aborted (and with it every download and spool
    /// file) when the prefetcher is dropped.
    _driver: AbortOnDrop<()>,
}

impl Prefetcher {
    /// Starts fetching on the current tokio runtime, at once: the work does not wait for
    /// [`next`](Self::next) to be called.
    pub fn new(store: Store, deltas: Vec<PlannedDelta>, options: PrefetchOptions) -> Prefetcher {
        let n = options.max_fetchers.max(1);
        let spool_dir = options.spool_dir.clone();
        let mut stream = futures::stream::iter(deltas)
            .map(move |planned| {
                let store = store.clone();
                let options = options.clone();
                let object = planned.snapshot.path.clone();
                let handle = AbortOnDrop(tokio::spawn(download(store, planned, options)));
                async move {
                    match handle.await {
                        Ok(r) => r,
                        Err(e) => Err(FetchError::Task {
                            object,
                            detail: e.to_string(),
                        }),
                    }
                }
            })
            .buffered(n)
            // Decompress and hash-check one delta at a time, in plan order, on a blocking
            // thread, so that work overlaps with the base download and with applying.
            .map(move |downloaded| {
                let spool_dir = spool_dir.clone();
                async move {
                    let d = downloaded?;
                    let object = d.planned.snapshot.path.clone();
                    let handle =
                        AbortOnDrop(tokio::task::spawn_blocking(move || prepare(d, &spool_dir)));
                    handle.await.map_err(|e| FetchError::Task {
                        object,
                        detail: e.to_string(),
                    })?
                }
            })
            .buffered(1)
            .boxed();
        // Unbounded: the semaphores bound what waits in it.
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let memory = Arc::new(Semaphore::new(AHEAD_MEMORY_KIB));
        let spool = Arc::new(Semaphore::new(AHEAD_SPOOL_MIB));
        let driver = AbortOnDrop(tokio::spawn(async move {
            while let Some(mut item) = stream.next().await {
                if let Ok(d) = &mut item {
                    let len = d.data.bytes().len();
                    let (sem, unit, total) = match d.data {
                        DeltaBytes::Memory(_) => (&memory, 1 << 10, AHEAD_MEMORY_KIB),
                        DeltaBytes::Spooled { .. } => (&spool, 1 << 20, AHEAD_SPOOL_MIB),
                    };
                    // A delta larger than the whole budget waits until nothing else does.
                    let n = len.div_ceil(unit).clamp(1, total) as u32;
                    match Arc::clone(sem).acquire_many_owned(n).await {
                        Ok(permit) => d.ahead = Some(permit),
                        Err(_) => break,
                    }
                }
                let failed = item.is_err();
                if tx.send(item).is_err() || failed {
                    break;
                }
            }
        }));
        Prefetcher {
            rx,
            _driver: driver,
        }
    }

    /// The next delta in plan order; `None` when all are done. After an error it stops.
    pub async fn next(&mut self) -> Option<Result<FetchedDelta, FetchError>> {
        self.rx.recv().await
    }
}

async fn download(
    store: Store,
    planned: PlannedDelta,
    options: PrefetchOptions,
) -> Result<Downloaded, FetchError> {
    let raw = download_raw(
        &store,
        &planned.snapshot,
        &options.spool_dir,
        options.spool_threshold,
    )
    .await?;
    let mut others = Vec::with_capacity(planned.verify_with.len());
    for other in &planned.verify_with {
        others
            .push(download_raw(&store, other, &options.spool_dir, options.spool_threshold).await?);
    }
    Ok(Downloaded {
        planned,
        raw,
        others,
    })
}

/// Decompresses (and checks overlaps); the raw objects and their spool files go away here.
fn prepare(d: Downloaded, spool_dir: &std::path::Path) -> Result<FetchedDelta, FetchError> {
    let object_size = d.raw.len();
    let data = decompress_delta(&d.raw, &d.planned.snapshot, spool_dir)?;
    drop(d.raw);
    for (other, raw) in d.planned.verify_with.iter().zip(d.others) {
        let other_data = decompress_delta(&raw, other, spool_dir)?;
        drop(raw);
        check_overlap(&d.planned.snapshot, &data, other, &other_data)?;
    }
    Ok(FetchedDelta {
        planned: d.planned,
        data,
        object_size,
        ahead: None,
    })
}
