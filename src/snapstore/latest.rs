//! The latest full snapshot and the deltas after it, in etcd-backup-restore's JSON shape
//! (`pkg/types/snapstore.go` `Snapshot`, `GetLatestFullSnapshotAndDeltaSnapList`): what
//! etcdbrctl's `/snapshot/latest` answers. Built from the same [`Listing`] `ls` prints.

use super::name::{Kind, Layout, Snapshot};
use super::store::Listing;

/// Go's zero `time.Time` as encoding/json writes it.
const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// One snapshot with etcdbrctl's field names (`immutabilityExpriyTime` is upstream's typo).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BrSnapshot {
    /// RFC 3339, UTC.
    pub created_on: String,
    #[serde(rename = "immutabilityExpriyTime")]
    pub immutability_expiry_time: String,
    #[serde(rename = "versionID")]
    pub version_id: Option<String>,
    pub kind: String,
    pub snap_dir: String,
    pub snap_name: String,
    /// Everything before the name: `<store prefix>/v2/` (or `.../v1/`).
    pub prefix: String,
    pub compression_suffix: String,
    pub start_revision: i64,
    pub last_revision: i64,
    pub is_chunk: bool,
    pub is_final: bool,
}

impl BrSnapshot {
    /// `store_prefix`: what precedes `v1/`/`v2/` in the object keys (the bucket prefix, or the
    /// directory of a local store); empty for the root.
    pub fn new(s: &Snapshot, store_prefix: &str) -> Self {
        let layout = match s.layout {
            Layout::V1 => "v1/",
            Layout::V2 => "v2/",
        };
        let prefix = if store_prefix.is_empty() {
            layout.to_string()
        } else {
            format!("{}/{layout}", store_prefix.trim_end_matches('/'))
        };
        BrSnapshot {
            created_on: chrono::DateTime::from_timestamp(s.created_on(), 0)
                .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
                .unwrap_or_else(|| GO_ZERO_TIME.to_string()),
            immutability_expiry_time: s
                .immutable_until
                .and_then(|u| chrono::DateTime::from_timestamp(u, 0))
                .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
                .unwrap_or_else(|| GO_ZERO_TIME.to_string()),
            version_id: s.version.clone(),
            kind: s.kind().as_str().to_string(),
            snap_dir: s.dir.clone(),
            snap_name: s.snap_name.clone(),
            prefix,
            compression_suffix: s.compression().suffix().to_string(),
            start_revision: s.start_revision(),
            last_revision: s.last_revision(),
            is_chunk: false,
            is_final: s.is_final(),
        }
    }
}

/// `{"fullSnapshot": ..., "deltaSnapshots": [...]}`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LatestSnapshots {
    pub full_snapshot: Option<BrSnapshot>,
    pub delta_snapshots: Vec<BrSnapshot>,
}

/// The newest full snapshot of the listing (in its revision order) and every delta after it.
/// Without a full snapshot, every delta (like upstream).
pub fn latest(listing: &Listing, store_prefix: &str) -> LatestSnapshots {
    let snaps = &listing.snapshots;
    let full_at = snaps.iter().rposition(|s| s.kind() == Kind::Full);
    let after = full_at.map_or(0, |i| i + 1);
    LatestSnapshots {
        full_snapshot: full_at
            .and_then(|i| snaps.get(i))
            .map(|s| BrSnapshot::new(s, store_prefix)),
        delta_snapshots: snaps
            .get(after..)
            .unwrap_or_default()
            .iter()
            .filter(|s| s.kind() == Kind::Delta)
            .map(|s| BrSnapshot::new(s, store_prefix))
            .collect(),
    }
}
