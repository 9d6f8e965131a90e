//! Reading etcd-backup-restore backups from an object store: names, listing, plan, fetch, decode.
//!
//! See docs/snapstore.md for the public interface and the rules behind it.

mod azure_list;
pub mod bridge;
pub mod codec;
pub mod config;
pub mod delta;
pub mod exclude;
pub mod fetch;
pub mod gcs;
mod gcs_credential_checks;
pub mod gcs_external;
pub mod latest;
mod local_list;
mod locked_s3;
pub mod name;
pub mod plan;
pub mod prefetch;
mod provider_http;
mod retry;
pub mod spool;
pub mod store;
pub mod versions;

pub use codec::{CodecError, compress_to, decompress_to, decompress_vec};
pub use config::{Backend, ConfigError, FetchArgs, Provider, StoreArgs, StoreConfig};
pub use delta::{
    DeltaError, DeltaStats, Event, EventKind, OwnedEvent, decode_delta, decode_delta_json,
    encode_delta,
};
pub use fetch::{FetchError, FullInfo, check_overlap, fetch_full, fetch_full_with_progress};
pub use latest::{BrSnapshot, LatestSnapshots, latest};
pub use name::{
    Compression, Kind, Layout, NameError, ObjectKind, Snapshot, SnapshotName, classify_object,
    format_snapshot_name, parse_snapshot_name,
};
pub use plan::{Plan, PlanError, PlanOptions, PlannedDelta, SkippedDelta, plan};
pub use prefetch::{FetchedDelta, PrefetchOptions, Prefetcher};
pub use store::{IgnoredObject, Listing, Store, StoreError};
