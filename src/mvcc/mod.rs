//! etcd's MVCC records: revision keys, `mvccpb.KeyValue`, applying watch events, HashKV.
//!
//! Nothing here touches files: callers hand in the `key` bucket as iterators and receive
//! records through [`apply::RecordSink`], so the same logic serves restore, compact and validate.

pub mod apply;
pub mod compact;
pub mod hashkv;
pub mod kv;
pub mod revision;
