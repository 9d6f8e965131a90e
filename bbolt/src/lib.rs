//! A bbolt-compatible B+tree engine: open, read, check, write and bulk-load the database
//! files of Go's `go.etcd.io/bbolt` (etcd's backend), including etcd's no-freelist files.
//!
//! ```no_run
//! # fn main() -> bbolt::Result<()> {
//! use bbolt::{Db, FreeSpace, OpenOptions};
//! let db = Db::open("member/snap/db", OpenOptions { free_space: FreeSpace::AppendOnly, ..Default::default() })?;
//! {
//!     let tx = db.begin_read();
//!     if let Some(b) = tx.bucket(b"meta")? {
//!         let _ci = b.get(b"consistent_index")?;
//!     }
//! }
//! let mut tx = db.begin_write()?;
//! let mut b = tx.create_bucket_if_not_exists(b"key")?;
//! b.set_fill_percent(0.9);
//! b.put(b"k", b"v")?;
//! tx.commit()?;
//! let report = bbolt::check::check_file("member/snap/db".as_ref(), &Default::default())?;
//! assert!(report.is_clean());
//! # Ok(()) }
//! ```
//!
//! Layers (each uses only the one below): [`db`] → [`tx`] (its pages from alloc) → [`bucket`] → [`cursor`] →
//! node (materialized nodes; their bytes in heap) → freelist → [`page`] / [`meta`] → [`file`]; [`check`],
//! [`bulk`], [`dump`] and [`stats`] on top. See `docs/bbolt.md` for the on-disk format, the
//! modes (`FreeSpace::AppendOnly` for appending to big files at bounded memory) and the
//! commit protocol.

mod alloc;
mod bitmap;
pub mod bucket;
pub mod cursor;
pub mod db;
pub mod error;
pub mod file;
mod freelist;
mod heap;
pub mod meta;
mod node;
pub mod page;
pub mod tx;

pub use alloc::CommitStats;
pub use bucket::{Bucket, BucketMut};
pub use cursor::{Cursor, Entry};
pub use db::{Db, FreeSpace, OpenOptions};
pub use error::{Corruption, Error, Result};
pub use meta::Meta;
pub use tx::{ReadTx, WriteTx};
pub mod bulk;
pub mod check;
pub mod dump;
pub mod stats;
