//! Excluded snapshots and versioned buckets: which objects etcd-backup-restore v0.43's
//! `SnapStore.List(includeAll)` returns, per provider (docs/snapstore.md, "Excluded snapshots,
//! versions and immutability").
//!
//! A snapshot that must not be used but cannot be deleted (an immutable bucket) carries
//! `x-etcd-snapshot-exclude=true` ([`EXCLUDE_KEY`], `pkg/types/snapstore.go`
//! `ExcludeSnapshotMetadataKey`). Upstream reads it differently per provider:
//!
//! * S3 (`pkg/snapstore/s3_snapstore.go`, `List`): only in a bucket whose versioning is
//!   `Enabled`. There the listing is `ListObjectVersions`; each key is represented by its
//!   *oldest* version (earliest `LastModified`; on a tie the version listed first stays), and
//!   a key is dropped only when a delete marker exists for it *and* that oldest version is
//!   tagged (`GetObjectTagging`, `IsSnapshotMarkedToBeIgnored`; an error reading the tags
//!   counts as "not tagged"). A key with only delete markers has no version and is not
//!   listed. With object lock and a default retention in days, the snapshot is immutable
//!   until its creation time (from its name) plus those days. Without versioning the plain
//!   listing is used and tags are never read.
//! * Azure (`pkg/snapstore/abs_snapstore.go`, `List`): the listing includes tags, versions
//!   and immutability policies; every listed item (every version) whose blob index tags
//!   hold the key is dropped; `ImmutabilityPolicyExpiresOn` is the immutability end.
//! * GCS (`pkg/snapstore/gcs_snapstore.go`, `List`): the live objects; one whose custom
//!   metadata holds the key is dropped; `RetentionExpirationTime` is the immutability end.
//!
//! `includeAll` (here `--include-excluded`) keeps the excluded ones; upstream's garbage
//! collector is its only user, this tool offers it for forensics and marks them.

use std::collections::BTreeMap;

/// The tag / metadata key that withdraws a snapshot (`ExcludeSnapshotMetadataKey`).
pub const EXCLUDE_KEY: &str = "x-etcd-snapshot-exclude";

/// Whether one tag or metadata entry withdraws its snapshot: exactly `true`, as upstream
/// compares (`*tag.Value == "true"`, `attr.Metadata[...] == "true"`).
pub fn is_exclude_entry(key: &str, value: &str) -> bool {
    key == EXCLUDE_KEY && value == "true"
}

/// One object the provider listing returned, with what the exclusion rules need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    /// The full object key (bucket-relative).
    pub key: String,
    pub size: u64,
    /// The version a restore must read (S3 versioned buckets: the oldest version).
    pub version: Option<String>,
    /// Unix seconds until which the store refuses to delete or overwrite it.
    pub immutable_until: Option<i64>,
    /// Carries [`EXCLUDE_KEY`] (listed only with `--include-excluded`).
    pub excluded: bool,
}

/// One version of an S3 key as `ListObjectVersions` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Version {
    pub version_id: String,
    /// `LastModified`, as milliseconds since the epoch (S3's resolution in listings).
    pub last_modified_ms: i64,
    pub size: u64,
}

/// Everything `ListObjectVersions` said about one key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct S3Key {
    /// The oldest version (upstream's `allSnapKeyMapToSnapshotInfo` entry), if any.
    pub oldest: Option<S3Version>,
    /// Whether a delete marker exists for the key (`allDeleteMarkersInfo`).
    pub delete_marker: bool,
}

/// Folds `ListObjectVersions` pages into one [`S3Key`] per key, keeping only keys that may
/// still get entries: S3 lists keys in ascending order, so once a page ends at
/// `NextKeyMarker` every smaller key is complete and is handed out. Memory is one page's
/// keys, whatever the number of versions in the bucket.
#[derive(Debug, Default)]
pub struct S3VersionFold {
    open: BTreeMap<String, S3Key>,
}

impl S3VersionFold {
    /// A version, in listing order. Upstream's rule: replace the kept version only if this one
    /// is strictly older.
    pub fn version(&mut self, key: &str, v: S3Version) {
        let entry = self.open.entry(key.to_string()).or_default();
        match &entry.oldest {
            Some(kept) if v.last_modified_ms >= kept.last_modified_ms => {}
            _ => entry.oldest = Some(v),
        }
    }

    pub fn delete_marker(&mut self, key: &str) {
        self.open.entry(key.to_string()).or_default().delete_marker = true;
    }

    /// Hands out the keys complete after a page: those before `next_key_marker`, or all of
    /// them at the end of the listing (`None`).
    pub fn complete(&mut self, next_key_marker: Option<&str>) -> Vec<(String, S3Key)> {
        let rest = match next_key_marker {
            Some(m) => self.open.split_off(m),
            None => BTreeMap::new(),
        };
        std::mem::replace(&mut self.open, rest)
            .into_iter()
            .collect()
    }
}

/// Whether an S3 key's tags must be read: only a key with a delete marker can be withdrawn
/// (`if _, isDeleteMarkerPresent := ...; isDeleteMarkerPresent && !includeAll`). With
/// `--include-excluded` they are read too, to mark the withdrawn ones.
pub fn s3_needs_tags(k: &S3Key) -> bool {
    k.delete_marker && k.oldest.is_some()
}

/// S3's immutability end: creation (from the snapshot name) plus the bucket's default
/// retention in days (`ImmutabilityExpiryTime = CreatedOn + days*24h`).
pub fn s3_immutable_until(created_on: i64, retention_days: Option<i64>) -> Option<i64> {
    retention_days.map(|d| created_on.saturating_add(d.saturating_mul(86_400)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(id: &str, ms: i64) -> S3Version {
        S3Version {
            version_id: id.into(),
            last_modified_ms: ms,
            size: 1,
        }
    }

    #[test]
    fn oldest_version_wins_and_ties_keep_the_first_listed() {
        let mut f = S3VersionFold::default();
        // S3 lists the newest version of a key first.
        f.version("a", v("new", 3000));
        f.version("a", v("mid", 2000));
        f.version("a", v("old", 1000));
        f.version("b", v("first", 1000));
        f.version("b", v("same-ms", 1000));
        let done = f.complete(None);
        assert_eq!(done[0].1.oldest.as_ref().unwrap().version_id, "old");
        assert_eq!(done[1].1.oldest.as_ref().unwrap().version_id, "first");
    }

    #[test]
    fn keys_complete_only_before_the_next_marker() {
        let mut f = S3VersionFold::default();
        f.version("a", v("1", 1));
        f.version("b", v("2", 2));
        let done = f.complete(Some("b"));
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].0, "a");
        // The next page continues key "b": an older version and a delete marker.
        f.version("b", v("3", 1));
        f.delete_marker("b");
        f.delete_marker("c");
        let done = f.complete(None);
        assert_eq!(done.len(), 2);
        assert_eq!(done[0].1.oldest.as_ref().unwrap().version_id, "3");
        assert!(s3_needs_tags(&done[0].1));
        // Only delete markers: no version to list, nothing to read.
        assert!(done[1].1.oldest.is_none());
        assert!(!s3_needs_tags(&done[1].1));
    }

    #[test]
    fn exclusion_needs_exactly_true() {
        assert!(is_exclude_entry(EXCLUDE_KEY, "true"));
        assert!(!is_exclude_entry(EXCLUDE_KEY, "True"));
        assert!(!is_exclude_entry("x-etcd-snapshot-exclude ", "true"));
    }

    #[test]
    fn retention_days_from_the_creation_time() {
        assert_eq!(s3_immutable_until(1000, Some(2)), Some(1000 + 2 * 86_400));
        assert_eq!(s3_immutable_until(1000, None), None);
    }
}
