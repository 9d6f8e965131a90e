//! testkit: test-only helpers shared by the workspace's tests and benches. See docs/testing.md.
//!
//! * [`Cli`]: the etcd-restore binary's common calls (restore, hashkv).
//! * [`alone`]: a test re-run alone in a child process (for process-wide state).
//! * [`deps`]: where `.deps/` is, and the skip/require rule for missing dependencies.
//! * [`EtcdBins`], [`EtcdConfig`], [`EtcdProcess`]: a real etcd on 127.0.0.1 free ports,
//!   health-waited, queried through etcdctl, always stopped by PID (also on panic).
//! * [`ClusterSpec`]: a multi-member cluster (names, ports, data dirs, initial cluster).
//! * [`ManagedProcess`] and [`pids`]: any server process, registered in the PID registry.
//! * [`Fixture`], [`Oracle`]: committed backups under `testdata/backups/` and their oracle,
//!   and the comparison of a running etcd with it.
//! * [`GoOracle`]: the Go bbolt/compress/encoding-json reference binary.
//! * [`kill`]: time a run, SIGKILL a run after a delay (crash tests).
//! * [`kubeapi`]: a stand-in Kubernetes API server for Leases (HTTPS or HTTP), checking
//!   each request against the Lease schema.
//! * [`standin`]: the upstream etcdbrctl's stand-in and the scene around it (entrypoint tests).
//! * [`wrapper`]: `etcd-restore serve` driven the way etcd-wrapper drives it.
//! * [`mvcc`]: etcd's `key`-bucket records (revision keys, `mvccpb.KeyValue`), encoded
//!   independently of the code under test.

pub mod alone;
pub mod cli;
pub mod cluster;
pub mod deps;
pub mod error;
pub mod etcd;
pub mod faultproxy;
pub mod gooracle;
pub mod kill;
pub mod kubeapi;
pub mod kv;
pub mod mvcc;
pub mod objstore;
pub mod oracle;
pub mod pids;
pub mod ports;
pub mod process;
pub mod pushgateway;
pub mod standin;
pub mod tree;
pub mod wrapper;

// base64, serde_json and tempfile are re-exported so integration tests need no
// dev-dependencies of their own.
pub use base64;
pub use cli::Cli;
pub use cluster::ClusterSpec;
pub use error::{Error, Result};
pub use etcd::{
    ETCD_VERSIONS, EtcdBins, EtcdConfig, EtcdMatrix, EtcdProcess, HashKv, Member, Range, Status,
};
pub use gooracle::GoOracle;
pub use kv::KeyValue;
pub use oracle::{Fixture, Oracle};
pub use ports::free_port;
pub use process::ManagedProcess;
pub use serde_json;
pub use tempfile;
pub use tree::Rng;
