//! Downloads the plan's deltas ahead of the applier, in plan order.
//!
//! Up to `max_fetchers` downloads run at once (etcdbrctl's `--max-fetchers`, default 6). Each
//! raw object stays in memory if it is small and is spooled to a temp file otherwise; a delta
//! is decompressed (and its hash checked) one ahead of the applier, into memory while small
//! and into a mapped spool file otherwise ([`super::spool`]). So memory stays bounded by
//! `max_fetchers × spool_threshold` plus a few MiB per prepared delta, whatever the deltas'
//! sizes. Spool files are deleted as soon as a delta is done (and when the prefetcher is
//! dropped).

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::stream::{BoxStream, StreamExt};

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

pub struct Prefetcher {
    stream: BoxStream<'static, Result<FetchedDelta, FetchError>>,
    failed: bool,
}

impl Prefetcher {
    /// Starts fetching on the current tokio runtime.
    pub fn new(store: Store, deltas: Vec<PlannedDelta>, options: PrefetchOptions) -> Prefetcher {
        let n = options.max_fetchers.max(1);
        let spool_dir = options.spool_dir.clone();
        let stream = futures::stream::iter(deltas)
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
            // Decompress and hash-check one delta ahead of the consumer, on a blocking thread,
            // so that work overlaps with applying the previous delta.
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
        Prefetcher {
            stream,
            failed: false,
        }
    }

    /// The next delta in plan order; `None` when all are done. After an error it stops.
    pub async fn next(&mut self) -> Option<Result<FetchedDelta, FetchError>> {
        if self.failed {
            return None;
        }
        let item = self.stream.next().await;
        if matches!(item, Some(Err(_))) {
            self.failed = true;
        }
        item
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
    })
}
