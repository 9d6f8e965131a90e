//! Delta snapshots: the event model, the decoder (and an encoder for tests and benches).
//!
//! A delta object (after decompression) is Go `encoding/json` output of
//! `[{"etcdEvent":{"type":1,"kv":{...}},"time":"..."},...]` followed by the raw 32-byte SHA-256
//! of that JSON text (docs/formats.md; upstream `snapshotter.go` `TakeDeltaSnapshot`). The hash
//! is checked before the first event is handed out, so a consumer never sees part of a corrupt
//! object. Parsing walks the array with a borrowing serde visitor: key and value are
//! base64-decoded into two buffers reused for every event, nothing is allocated per event.
//!
//! * `event`: [`Event`] and its owned copy, [`DeltaStats`];
//! * `decode`: the hash check and the visitor; `go_base64`: its reused buffers;
//! * `encode`: the same bytes as upstream writes, for tests and benches;
//! * `error`: [`DeltaError`].

mod decode;
mod encode;
mod error;
mod event;
mod go_base64;
#[cfg(test)]
mod tests;

pub use decode::{HASH_LEN, decode_delta, decode_delta_json, verify_delta_hash};
pub use encode::encode_delta;
pub use error::DeltaError;
pub use event::{DeltaStats, Event, EventKind, OwnedEvent};
