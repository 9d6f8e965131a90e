//! Publishing the packed snapshot: a temporary object, then a create-only copy to the final
//! name, so the name appears only complete and never overwrites (in an S3 or Azure store that
//! keeps deleted objects, straight under the final name); and reclaiming what killed runs left
//! behind (temporary objects, staged local uploads, work directories).

use std::path::Path;

use super::{CompactError, Packed, StoreLock, UPLOAD_TEMP_PREFIX, WORK_DIR_PREFIX};
use crate::show::hex;
use crate::snapstore::store::Expected;
use crate::snapstore::{self, Store, StoreError};

/// S3's single-part copy limit: larger snapshots on S3 (and Azure) are uploaded directly under
/// their final name after an existence check (see [`uploads_directly`]).
const MAX_SERVER_COPY: u64 = 5 << 30;

/// Whether `bytes` go straight to the final name instead of through a temporary object.
/// Only where the parts of an upload are invisible until it commits: S3 multipart parts and
/// Azure uncommitted blocks are no objects, so nothing (etcdbrctl's garbage collector
/// included) can list or delete them. GCS parts are objects `<name>/<%010d>` — what
/// etcdbrctl's `GarbageCollectChunks` deletes once their start revision (0 for a full
/// snapshot) is below its last snapshot's — so on GCS every size goes through the temporary
/// name (whose parts no snapshot parser accepts) and a `rewriteTo` copy, which has no size
/// limit. Local files are hard-linked.
fn uploads_directly(backend: Option<&snapstore::Backend>, bytes: u64) -> bool {
    matches!(
        backend,
        Some(snapstore::Backend::S3(_) | snapstore::Backend::Azure(_))
    ) && bytes > MAX_SERVER_COPY
}

/// Uploads `packed` as `object`, which must not exist, so that `object` appears only complete:
/// the bytes go to a temporary object first and are then copied create-only. Two runs racing
/// for one name cannot overwrite each other; the loser fails with [`CompactError::Exists`].
///
/// The bytes are hashed as they are sent and must be what [`super::pack`] wrote (size and
/// sha256) before the upload is completed: a packed file that changed on disk is never
/// published ([`CompactError::Verify`]).
pub(super) async fn upload(
    store: &Store,
    object: &str,
    packed_path: &Path,
    packed: &Packed,
    upload_buffer: usize,
    lock: Option<&StoreLock>,
) -> Result<(), CompactError> {
    let still_locked = async || match lock {
        Some(l) => l.check().await,
        None => Ok(()),
    };
    let object_bytes = packed.object_bytes;
    let expected = Expected {
        bytes: object_bytes,
        sha256: packed.object_sha256,
    };
    let (part, conc) = store
        .config()
        .map(|c| (c.min_chunk_size, c.max_parallel_chunk_uploads as usize))
        .unwrap_or((snapstore::config::MIN_CHUNK_SIZE, 5));
    // Each part in flight is a buffer, plus the one being filled.
    let fit = upload_buffer / usize::try_from(part).unwrap_or(usize::MAX).max(1);
    let conc = conc.min(fit.saturating_sub(1)).max(1);
    let exists = |e| match e {
        StoreError::AlreadyExists { object } => CompactError::Exists { object },
        StoreError::Unexpected {
            object,
            bytes,
            sha256,
        } => CompactError::Verify {
            object,
            what: "the upload read from the packed file",
            expected: format!("{object_bytes} bytes with sha256 {}", hex(&expected.sha256)),
            actual: format!("{bytes} bytes with sha256 {}", hex(&sha256)),
        },
        e => e.into(),
    };
    let backend = store.config().map(|c| &c.backend);
    let too_large = uploads_directly(backend, object_bytes);
    // A versioned or object-locked S3 bucket, or an immutable Azure container, would keep the
    // temporary object's version after its deletion, undeletable for the retention period:
    // there upload under the final name like etcd-backup-restore (`Save`). Not on GCS, where
    // the parts of an upload are objects too (see `uploads_directly`).
    let keeps_deleted = !too_large
        && matches!(
            backend,
            Some(snapstore::Backend::S3(_) | snapstore::Backend::Azure(_))
        )
        && store.keeps_every_write().await;
    if too_large || keeps_deleted {
        still_locked().await?;
        // Multipart uploads commit atomically, so no partial object is ever visible; only the
        // create-only guarantee is weaker (checked just before).
        if keeps_deleted {
            tracing::info!(
                object,
                "the bucket keeps deleted objects; uploading under the final name directly"
            );
        } else {
            tracing::warn!(
                object,
                bytes = object_bytes,
                "too large for a server-side copy; uploading under the final name directly"
            );
        }
        store
            .put_multipart_file_expecting(object, packed_path, part, conc, &expected)
            .await
            .map_err(exists)?;
        return Ok(());
    }
    let name = object.rsplit('/').next().unwrap_or(object);
    let temp = format!("v2/{UPLOAD_TEMP_PREFIX}{}-{name}", std::process::id());
    let result = async {
        store
            .put_multipart_file_expecting(&temp, packed_path, part, conc, &expected)
            .await
            .map_err(exists)?;
        // The upload may have taken minutes: publish only while the lock is still ours.
        still_locked().await?;
        store.copy_create(&temp, object).await.map_err(exists)
    }
    .await;
    if let Err(e) = store.delete(&temp).await {
        tracing::warn!(object = %temp, error = %e, "could not remove the temporary upload; the next compact run removes it");
    }
    result
}

/// Removes temporary uploads of earlier runs that died (listed as ignored objects). Called
/// under the store's compaction lock, so none of them belongs to a running compaction (one
/// whose lock lapsed finds its temporary object gone, or its lock lost, and publishes nothing).
pub(super) async fn reclaim_temp_uploads(store: &Store, ignored: &[snapstore::IgnoredObject]) {
    for o in ignored {
        if o.path
            .strip_prefix("v2/")
            .is_some_and(|n| n.starts_with(UPLOAD_TEMP_PREFIX))
        {
            tracing::info!(object = %o.path, "removing a temporary upload left by an earlier run");
            if let Err(e) = store.delete(&o.path).await {
                tracing::warn!(object = %o.path, error = %e, "could not remove a stale temporary upload");
            }
        }
    }
    // The local store stages uploads and create-only puts (the lock's) as `<object>#<n>` files
    // that its listing hides; a killed run leaves them behind. A put of the lock in flight
    // right now belongs to a run that will not get the lock anyway: losing its staging file
    // makes it fail, never publish.
    let lock_name = super::lock::LOCK_OBJECT.trim_start_matches("v2/");
    if let Some(snapstore::Backend::Local { root }) = store.config().map(|c| &c.backend) {
        let mut dir = root.clone();
        if !store.prefix().is_empty() {
            dir.push(store.prefix());
        }
        dir.push("v2");
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                let n = e.file_name();
                let n = n.to_string_lossy();
                let staged = n.starts_with(UPLOAD_TEMP_PREFIX)
                    || n.strip_prefix(lock_name)
                        .is_some_and(|r| r.starts_with('#'));
                if staged && n.contains('#') {
                    tracing::info!(path = %e.path().display(), "removing a staged upload left by an earlier run");
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
}

/// Removes work directories of earlier runs whose process is gone (`<prefix><pid>-*`).
pub(super) fn reclaim_work_dirs(temp_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(temp_dir) else {
        return;
    };
    for e in entries.flatten() {
        let n = e.file_name();
        let Some(pid) = n
            .to_str()
            .and_then(|n| n.strip_prefix(WORK_DIR_PREFIX))
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new("/proc").join(pid.to_string()).exists() {
            tracing::info!(path = %e.path().display(), "removing a work directory left by an earlier run");
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapstore::config::{AzureConfig, GcsConfig, S3Config};

    #[test]
    fn only_s3_and_azure_upload_over_5_gib_directly() {
        let big = MAX_SERVER_COPY + 1;
        let s3 = snapstore::Backend::S3(S3Config::default());
        let az = snapstore::Backend::Azure(AzureConfig::default());
        let gcs = snapstore::Backend::Gcs(GcsConfig::default());
        let local = snapstore::Backend::Local { root: "/x".into() };
        assert!(uploads_directly(Some(&s3), big));
        assert!(uploads_directly(Some(&az), big));
        // GCS parts are objects etcdbrctl's chunk GC deletes: always through the temp name.
        assert!(!uploads_directly(Some(&gcs), big));
        assert!(!uploads_directly(Some(&local), big));
        assert!(!uploads_directly(Some(&s3), MAX_SERVER_COPY));
        assert!(!uploads_directly(None, big));
    }
}
