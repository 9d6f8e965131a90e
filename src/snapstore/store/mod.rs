//! A backup store: an object store plus the prefix that holds `v1/` and `v2/`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::StreamExt;
use object_store::path::Path as ObjPath;
use object_store::{
    BackoffConfig, ClientOptions, GetResultPayload, ObjectMeta, ObjectStore, ObjectStoreExt,
    PutMode, PutOptions, PutPayload, RetryConfig, WriteMultipart,
};
use thiserror::Error;

use super::bridge::{Body, FileRange};
use super::config::{Backend, StoreConfig};
use super::name::{ObjectKind, Snapshot, classify_object};

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("cannot open store {store}: {source}")]
    Open {
        store: String,
        #[source]
        source: object_store::Error,
    },
    #[error("cannot open store {store}: {detail}")]
    Setup { store: String, detail: String },
    #[error("{store}: listing failed: {source}")]
    Versions {
        store: String,
        #[source]
        source: super::versions::ListError,
    },
    #[error("{store}: listing failed: {source}")]
    List {
        store: String,
        #[source]
        source: object_store::Error,
    },
    #[error("{object}: {op} failed: {source}")]
    Object {
        object: String,
        op: &'static str,
        #[source]
        source: object_store::Error,
    },
    /// The store holds a key that is not a safe relative path (`..`, `.`, empty segments).
    /// A listing page containing it cannot be read, so rather than silently missing the
    /// snapshots on that page we stop.
    #[error(
        "{store}: refusing to list: an object key is not a safe path ({detail}); remove or rename that object"
    )]
    UnsafeKey { store: String, detail: String },
    #[error("{object}: already exists; backups are never overwritten")]
    AlreadyExists { object: String },
    /// An upload read other bytes than the caller expected (its file changed); the upload
    /// was aborted, nothing was created.
    #[error("{object}: the upload read {bytes} bytes that do not match what was expected")]
    Unexpected {
        object: String,
        bytes: u64,
        sha256: [u8; 32],
    },
    #[error("{}: invalid object path: {detail}", crate::show::name(.object))]
    BadPath { object: String, detail: String },
    #[error("{object}: reading the local file failed: {source}")]
    Io {
        object: String,
        #[source]
        source: std::io::Error,
    },
}

mod listing;
mod open;
mod put;

pub use listing::{IgnoredObject, Listing};
pub use open::retry_config;

#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    prefix: String,
    describe: String,
    config: Option<StoreConfig>,
    /// The provider client for listings with versions, tags and metadata.
    lister: Option<super::versions::Lister>,
    /// S3: the checksummed writes an object-locked bucket requires.
    locked: Option<Arc<super::locked_s3::LockedS3>>,
}

impl Store {
    /// Wraps an existing object store (tests, in-memory stores).
    pub fn from_object_store(inner: Arc<dyn ObjectStore>, prefix: &str, describe: &str) -> Store {
        Store {
            inner,
            prefix: prefix.trim_matches('/').to_string(),
            describe: describe.to_string(),
            config: None,
            lister: None,
            locked: None,
        }
    }

    pub fn describe(&self) -> &str {
        &self.describe
    }

    /// The prefix below the store root that holds `v1/` and `v2/` (no leading/trailing `/`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn config(&self) -> Option<&StoreConfig> {
        self.config.as_ref()
    }

    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.inner
    }

    /// The full object path for a path relative to the store root.
    pub fn object_path(&self, relative: &str) -> Result<ObjPath, StoreError> {
        let full = if self.prefix.is_empty() {
            relative.to_string()
        } else {
            format!("{}/{relative}", self.prefix)
        };
        ObjPath::parse(&full).map_err(|e| StoreError::BadPath {
            object: full.clone(),
            detail: e.to_string(),
        })
    }

    fn relative<'p>(&self, location: &'p str) -> Option<&'p str> {
        if self.prefix.is_empty() {
            Some(location)
        } else {
            location
                .strip_prefix(self.prefix.as_str())
                .and_then(|r| r.strip_prefix('/'))
        }
    }

    /// An object's bytes (relative path): a local store's file itself, else a stream.
    pub async fn get(&self, relative: &str) -> Result<(ObjectMeta, Body), StoreError> {
        let path = self.object_path(relative)?;
        let err = |source| StoreError::Object {
            object: relative.to_string(),
            op: "get",
            source,
        };
        let res = self.inner.get(&path).await.map_err(err)?;
        let meta = res.meta.clone();
        let body = match res.payload {
            GetResultPayload::File(file, _) => Body::File(FileRange {
                file,
                start: res.range.start,
                len: res.range.end - res.range.start,
            }),
            GetResultPayload::Stream(s) => Body::Stream(s),
        };
        Ok((meta, body))
    }

    /// Streams a listed snapshot's bytes: the version the listing chose, if it chose one
    /// (S3 versioned buckets: the oldest, as etcd-backup-restore's `Fetch` reads it).
    pub async fn get_snapshot(
        &self,
        snapshot: &Snapshot,
    ) -> Result<(ObjectMeta, Body), StoreError> {
        let Some(version) = &snapshot.version else {
            return self.get(&snapshot.path).await;
        };
        let path = self.object_path(&snapshot.path)?;
        let opts = object_store::GetOptions {
            version: Some(version.clone()),
            ..Default::default()
        };
        let res = self
            .inner
            .get_opts(&path, opts)
            .await
            .map_err(|source| StoreError::Object {
                object: format!("{} (version {version})", snapshot.path),
                op: "get",
                source,
            })?;
        let meta = res.meta.clone();
        Ok((meta, Body::Stream(res.into_stream())))
    }

    pub async fn head(&self, relative: &str) -> Result<ObjectMeta, StoreError> {
        let path = self.object_path(relative)?;
        self.inner
            .head(&path)
            .await
            .map_err(|source| StoreError::Object {
                object: relative.to_string(),
                op: "head",
                source,
            })
    }

    /// Whether an object exists.
    pub async fn exists(&self, relative: &str) -> Result<bool, StoreError> {
        match self.head(relative).await {
            Ok(_) => Ok(true),
            Err(StoreError::Object {
                source: object_store::Error::NotFound { .. },
                ..
            }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Deletes an object (compact's own temporary uploads only; backups are never deleted).
    pub async fn delete(&self, relative: &str) -> Result<(), StoreError> {
        let path = self.object_path(relative)?;
        match self.inner.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(StoreError::Object {
                object: relative.to_string(),
                op: "delete",
                source,
            }),
        }
    }

    /// Copies `from` to `to` only if `to` does not exist yet, as one server-side operation
    /// where the store supports it (local files: hard link; Azure, GCS: conditional copy;
    /// S3: a conditional one-part multipart upload). Elsewhere it falls back to a check
    /// followed by a plain copy, and says so in the log.
    pub async fn copy_create(&self, from: &str, to: &str) -> Result<(), StoreError> {
        let (src, dst) = (self.object_path(from)?, self.object_path(to)?);
        let failed = |source| StoreError::Object {
            object: to.to_string(),
            op: "copy",
            source,
        };
        match self.inner.copy_if_not_exists(&src, &dst).await {
            Ok(()) => Ok(()),
            Err(object_store::Error::AlreadyExists { .. }) => Err(StoreError::AlreadyExists {
                object: to.to_string(),
            }),
            Err(object_store::Error::NotSupported { .. })
            | Err(object_store::Error::NotImplemented { .. }) => {
                tracing::warn!(
                    object = to,
                    "the store has no create-only copy; checking for the object first"
                );
                if self.exists(to).await? {
                    return Err(StoreError::AlreadyExists {
                        object: to.to_string(),
                    });
                }
                self.inner.copy(&src, &dst).await.map_err(failed)
            }
            Err(source) => Err(failed(source)),
        }
    }
}

/// What an upload must read from its file: [`Store::put_multipart_file_expecting`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expected {
    pub bytes: u64,
    pub sha256: [u8; 32],
}
