//! The decode stage of a replay: a thread of its own turns the prefetcher's deltas into owned
//! batches of events, so that JSON and base64 decoding run beside the applier instead of
//! inside it (on two cores they are about half of the applier's work).
//!
//! The stage runs ahead of the applier by [`QUEUE_BATCHES`] batches of about [`BATCH_BYTES`]
//! of keys and values each: bounded memory, whatever the deltas' sizes. Everything reaches
//! the applier in plan order, errors included, so a delta's events before a decode error are
//! applied before the error is reported, as when decoding and applying were one loop.

use std::ops::Range;
use std::sync::mpsc::{Receiver, RecvError, SyncSender, sync_channel};

use crate::snapstore::{DeltaError, Event, EventKind, FetchedDelta, Prefetcher};

use super::ReplayError;

/// Bytes of keys and values in one batch (one larger event makes a batch of its own).
pub const BATCH_BYTES: usize = 512 << 10;
/// Batches decoded ahead of the applier.
pub const QUEUE_BATCHES: usize = 2;

/// What the decode stage hands the applier, in plan order.
pub enum Decoded {
    Batch(EventBatch),
    /// The current delta was decoded to its end.
    DeltaDone(DeltaDone),
    /// Fetching or decoding failed; nothing follows.
    Failed(ReplayError),
    /// Every delta was decoded; nothing follows.
    End,
}

pub struct DeltaDone {
    pub object: String,
    pub object_size: u64,
    pub json_bytes: u64,
}

/// Owned copies of consecutive events of one delta.
pub struct EventBatch {
    /// The delta's place in the plan.
    pub delta: usize,
    /// The index of the first event within its delta.
    pub first_event: u64,
    arena: Vec<u8>,
    events: Vec<BatchedEvent>,
}

/// An event whose key and value are ranges of its batch's arena.
struct BatchedEvent {
    kind: EventKind,
    key: Range<usize>,
    value: Range<usize>,
    create_revision: i64,
    mod_revision: i64,
    version: i64,
    lease: i64,
}

impl EventBatch {
    /// An empty batch, reusing one the applier is done with when there is one: a fresh
    /// half-megabyte arena per batch is mapped, faulted in and unmapped each time.
    fn new(delta: usize, first_event: u64, used: &Receiver<EventBatch>) -> Self {
        match used.try_recv() {
            Ok(mut b) => {
                b.delta = delta;
                b.first_event = first_event;
                b.arena.clear();
                b.events.clear();
                b
            }
            Err(_) => EventBatch {
                delta,
                first_event,
                arena: Vec::with_capacity(BATCH_BYTES),
                events: Vec::new(),
            },
        }
    }

    fn push(&mut self, ev: &Event<'_>) {
        let k = self.arena.len();
        self.arena.extend_from_slice(ev.key);
        let v = self.arena.len();
        self.arena.extend_from_slice(ev.value);
        self.events.push(BatchedEvent {
            kind: ev.kind,
            key: k..v,
            value: v..self.arena.len(),
            create_revision: ev.create_revision,
            mod_revision: ev.mod_revision,
            version: ev.version,
            lease: ev.lease,
        });
    }

    /// The events with their index within the delta. `time` is not kept: nothing applies it.
    pub fn events(&self) -> impl Iterator<Item = (u64, Event<'_>)> {
        self.events.iter().zip(self.first_event..).map(|(e, i)| {
            (
                i,
                Event {
                    kind: e.kind,
                    key: &self.arena[e.key.clone()],
                    value: &self.arena[e.value.clone()],
                    create_revision: e.create_revision,
                    mod_revision: e.mod_revision,
                    version: e.version,
                    lease: e.lease,
                    time: "",
                },
            )
        })
    }
}

/// The applier's end of the decode stage.
pub struct Stage {
    decoded: Receiver<Decoded>,
    used: SyncSender<EventBatch>,
}

impl Stage {
    pub fn recv(&self) -> Result<Decoded, RecvError> {
        self.decoded.recv()
    }

    /// Hands an applied batch back for reuse.
    pub fn recycle(&self, b: EventBatch) {
        if b.arena.capacity() <= 2 * BATCH_BYTES {
            let _ = self.used.try_send(b);
        }
    }
}

/// Starts the decode thread on the prefetcher's output. Dropping the stage stops it (at its
/// next batch) and with it the prefetcher's downloads.
pub fn spawn(
    prefetcher: Prefetcher,
    runtime: tokio::runtime::Handle,
) -> Result<Stage, ReplayError> {
    let (tx, decoded) = sync_channel(QUEUE_BATCHES);
    let (used, used_rx) = sync_channel(QUEUE_BATCHES + 2);
    std::thread::Builder::new()
        .name("decode".into())
        .spawn(move || run(prefetcher, &runtime, &tx, &used_rx))
        .map_err(|e| ReplayError::Thread(e.to_string()))?;
    Ok(Stage { decoded, used })
}

/// A send fails only when the applier is gone (it failed or the replay was abandoned).
struct Gone;

fn run(
    mut prefetcher: Prefetcher,
    runtime: &tokio::runtime::Handle,
    tx: &SyncSender<Decoded>,
    used: &Receiver<EventBatch>,
) {
    let mut index = 0;
    loop {
        let item = match runtime.block_on(prefetcher.next()) {
            None => {
                let _ = tx.send(Decoded::End);
                return;
            }
            Some(Err(e)) => {
                let _ = tx.send(Decoded::Failed(e.into()));
                return;
            }
            Some(Ok(d)) => d,
        };
        match decode_one(&item, index, tx, used) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let _ = tx.send(Decoded::Failed(e));
                return;
            }
            Err(Gone) => return,
        }
        let done = DeltaDone {
            object: item.planned.snapshot.path.clone(),
            object_size: item.object_size,
            json_bytes: item.json().len() as u64,
        };
        // Its spool file is deleted here, off the applier's thread.
        drop(item);
        if tx.send(Decoded::DeltaDone(done)).is_err() {
            return;
        }
        index += 1;
    }
}

fn decode_one(
    d: &FetchedDelta,
    index: usize,
    tx: &SyncSender<Decoded>,
    used: &Receiver<EventBatch>,
) -> Result<Result<(), ReplayError>, Gone> {
    let mut batch = EventBatch::new(index, 0, used);
    let mut sent = 0u64;
    let result = d.decode(|ev| {
        batch.push(ev);
        if batch.arena.len() >= BATCH_BYTES {
            sent += batch.events.len() as u64;
            let full = std::mem::replace(&mut batch, EventBatch::new(index, sent, used));
            tx.send(Decoded::Batch(full)).map_err(|_| Gone)?;
        }
        Ok(())
    });
    if !batch.events.is_empty() {
        tx.send(Decoded::Batch(batch)).map_err(|_| Gone)?;
    }
    match result {
        Ok(_) => Ok(Ok(())),
        Err(DeltaError::Callback { .. }) => Err(Gone),
        Err(e) => Ok(Err(ReplayError::Delta {
            object: d.planned.snapshot.path.clone(),
            source: Box::new(e.map_callback(|Gone| unreachable!("matched above"))),
        })),
    }
}
