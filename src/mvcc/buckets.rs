//! The names of etcd's backend buckets that the MVCC records live in (etcd
//! `server/mvcc/buckets` / `server/storage/schema`).

pub const KEY_BUCKET: &[u8] = b"key";
pub const META_BUCKET: &[u8] = b"meta";
pub const LEASE_BUCKET: &[u8] = b"lease";
