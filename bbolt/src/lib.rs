//! A bbolt-compatible B+tree engine: open, read, check, write and bulk-load the database
//! files of Go's `go.etcd.io/bbolt` (etcd's backend), including etcd's no-freelist files.
//!
//! See `docs/bbolt.md` for the on-disk format and the layering.

mod bitmap;
pub mod bucket;
pub mod cursor;
pub mod db;
pub mod error;
pub mod file;
mod freelist;
pub mod meta;
mod node;
pub mod page;
pub mod tx;

pub use bucket::{Bucket, BucketMut};
pub use cursor::{Cursor, Entry};
pub use db::{Db, FreeSpace, OpenOptions};
pub use error::{Corruption, Error, Result};
pub use meta::Meta;
pub use tx::{CommitStats, ReadTx, WriteTx};
pub mod bulk;
pub mod check;
pub mod dump;
pub mod stats;
