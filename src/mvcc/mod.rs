//! etcd's MVCC records: revision keys, `mvccpb.KeyValue`, applying watch events, HashKV.
//!
//! Callers hand in the `key` bucket as iterators and receive records through
//! [`apply::RecordSink`], so the same logic serves restore, compact and validate. The one file
//! touched here is the applier's own scratch space ([`keyindex`]), when its per-key state
//! outgrows its memory budget.

pub mod apply;
pub mod buckets;
pub mod bump;
pub mod compact;
pub mod hashkv;
pub mod keyindex;
pub mod kv;
pub mod revision;
