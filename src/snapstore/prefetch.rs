//! Downloads the plan's deltas ahead of the applier, in plan order.
//!
//! Up to `max_fetchers` downloads run at once (etcdbrctl's `--max-fetchers`, default 6). Each
//! raw object stays in memory if it is small and is spooled to a temp file otherwise, so memory
//! stays bounded by `max_fetchers × spool_threshold` plus the one delta being applied. A delta
//! is decompressed only when the applier asks for it; spool files are deleted as soon as that
//! is done (and when the prefetcher is dropped).

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::stream::{BoxStream, StreamExt};

use super::delta::{DeltaError, DeltaStats, Event, HASH_LEN, decode_delta_json, verify_delta_hash};
use super::fetch::{FetchError, RawObject, check_overlap, decompress_raw, download_raw};
use super::plan::PlannedDelta;
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
            spool_threshold: 4 * 1024 * 1024,
        }
    }
}

/// A delta ready to decode: its plan entry and the decompressed bytes (JSON + SHA-256),
/// whose hash the prefetcher has already checked.
#[derive(Debug)]
pub struct FetchedDelta {
    pub planned: PlannedDelta,
    pub data: Vec<u8>,
    /// Size of the object as stored (compressed).
    pub object_size: u64,
}

impl FetchedDelta {
    /// The JSON text (the verified trailer cut off).
    pub fn json(&self) -> &[u8] {
        let end = self.data.len().saturating_sub(HASH_LEN);
        self.data.get(..end).unwrap_or_default()
    }

    /// Decodes the events. The SHA-256 was verified when the delta was prepared, so this is
    /// [`decode_delta`](super::delta::decode_delta) without hashing the bytes a second time.
    pub fn decode<E, F>(&self, mut f: F) -> Result<DeltaStats, DeltaError<E>>
    where
        F: FnMut(&Event<'_>) -> Result<(), E>,
    {
        decode_delta_json(self.json(), &self.planned.snapshot.path, &mut f)
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
            // so that work overlaps with applying the previous delta. One decompressed delta
            // in the prefetcher at most (restore's peak RSS: each is up to tens of MiB).
            .map(|downloaded| async move {
                let d = downloaded?;
                let object = d.planned.snapshot.path.clone();
                let handle = AbortOnDrop(tokio::task::spawn_blocking(move || prepare(d)));
                handle.await.map_err(|e| FetchError::Task {
                    object,
                    detail: e.to_string(),
                })?
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
fn prepare(d: Downloaded) -> Result<FetchedDelta, FetchError> {
    let object_size = d.raw.len();
    let data = decompress_raw(&d.raw, &d.planned.snapshot)?;
    drop(d.raw);
    verify_delta_hash::<std::convert::Infallible>(&data, &d.planned.snapshot.path)
        .map_err(|e| FetchError::Delta(e.to_string()))?;
    for (other, raw) in d.planned.verify_with.iter().zip(d.others) {
        let other_data = decompress_raw(&raw, other)?;
        drop(raw);
        check_overlap(&d.planned.snapshot, &data, other, &other_data)?;
    }
    Ok(FetchedDelta {
        planned: d.planned,
        data,
        object_size,
    })
}
