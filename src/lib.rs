//! etcd-restore: restore, compact and validate etcd data directories without running etcd.
//!
//! See `docs/architecture.md` for the map of the code.

pub mod backend;
pub mod batch;
pub mod compact;
pub mod datadir;
pub mod entrypoint;
pub mod etcdclient;
pub mod kube;
pub mod metrics;
pub mod mvcc;
pub mod progress;
pub mod pushgateway;
pub mod replay;
pub mod restore;
pub mod serve;
pub mod show;
pub mod snapstore;
pub mod tempdir;
pub mod validate;
pub mod wal_ahead;
