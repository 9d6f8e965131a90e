//! Listing a store's snapshots: the provider's own listing where versions, tags or metadata
//! matter, object_store's otherwise, a local directory read directly.

use super::*;

/// An object the listing found that is not a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IgnoredObject {
    /// With control characters escaped ([`crate::show::name`]): safe to print.
    pub path: String,
    pub reason: String,
}

/// Everything under the store prefix, classified.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Listing {
    /// Snapshots in etcd-backup-restore's order (last revision, creation second).
    pub snapshots: Vec<Snapshot>,
    /// Chunk objects (`<name>/<10 digits>`), never used for restore.
    pub chunks: u64,
    pub ignored: Vec<IgnoredObject>,
}

impl Listing {
    /// Classifies one object (path relative to the store prefix).
    fn add(&mut self, rel: &str, size: u64) {
        self.add_listed(rel, size, |_| {});
    }

    /// [`Listing::add`], completing a snapshot with what the provider listing said.
    fn add_listed(&mut self, rel: &str, size: u64, complete: impl FnOnce(&mut Snapshot)) {
        match classify_object(rel, Some(size)) {
            ObjectKind::Snapshot(mut s) => {
                complete(&mut s);
                self.snapshots.push(s)
            }
            ObjectKind::Chunk => {
                tracing::debug!(object = rel, "ignoring chunk object");
                self.chunks += 1;
            }
            ObjectKind::Unknown(reason) => {
                let path = crate::show::name(rel).into_owned();
                tracing::debug!(object = %path, reason = %crate::show::name(&reason), "ignoring unknown object");
                self.ignored.push(IgnoredObject { path, reason });
            }
        }
    }
}

impl Store {
    /// Lists every object below the prefix and classifies it; v1 and v2 are merged.
    pub async fn list_snapshots(&self) -> Result<Listing, StoreError> {
        if let Some(Backend::Local { root }) = self.config.as_ref().map(|c| &c.backend) {
            return self.list_local(root).await;
        }
        if let Some(lister) = &self.lister
            && let Some(listing) = self.list_provider(lister).await?
        {
            return Ok(listing);
        }
        let mut listing = Listing::default();
        for layout in ["v1", "v2"] {
            let dir = self.object_path(layout)?;
            let mut stream = self.inner.list(Some(&dir));
            while let Some(item) = stream.next().await {
                let meta = item.map_err(|source| match source {
                    object_store::Error::InvalidPath { source } => StoreError::UnsafeKey {
                        store: self.describe.clone(),
                        detail: crate::show::name(&source.to_string()).into_owned(),
                    },
                    source => StoreError::List {
                        store: self.describe.clone(),
                        source,
                    },
                })?;
                if let Some(rel) = self.relative(meta.location.as_ref()) {
                    listing.add(rel, meta.size);
                }
            }
        }
        crate::snapstore::plan::sort_snapshots(&mut listing.snapshots);
        Ok(listing)
    }

    /// The listing through the provider's own API with etcd-backup-restore's exclusion,
    /// version and immutability rules ([`crate::snapstore::exclude`]); `None` where upstream's listing is
    /// the plain one (an S3 bucket without versioning).
    async fn list_provider(
        &self,
        lister: &crate::snapstore::versions::Lister,
    ) -> Result<Option<Listing>, StoreError> {
        use crate::snapstore::versions::{ListError, Lister};
        let include = self.include_excluded();
        let versions_err = |source: ListError| StoreError::Versions {
            store: self.describe.clone(),
            source,
        };
        let retention_days = match lister {
            Lister::S3(s3) => {
                if !s3.versioning_enabled().await.map_err(versions_err)? {
                    return Ok(None);
                }
                s3.retention_days().await
            }
            _ => None,
        };
        let mut listing = Listing::default();
        for layout in ["v1", "v2"] {
            let dir = format!("{}/", self.object_path(layout)?);
            // Straight into the listing: nothing per object is kept beyond what it keeps.
            let mut emit = |o: crate::snapstore::exclude::ListedObject| {
                let Some(rel) = self.relative(&o.key) else {
                    return;
                };
                listing.add_listed(rel, o.size, |s| {
                    s.version = o.version;
                    s.excluded = o.excluded;
                    s.immutable_until = o.immutable_until.or_else(|| {
                        crate::snapstore::exclude::s3_immutable_until(
                            s.created_on(),
                            retention_days,
                        )
                    });
                });
            };
            match lister {
                Lister::S3(s3) => s3
                    .list_versioned(&dir, include, &mut emit)
                    .await
                    .map_err(versions_err)?,
                Lister::Azure(az) => az
                    .list(&dir, include, &mut emit)
                    .await
                    .map_err(versions_err)?,
                Lister::Gcs(g) => g.list_detailed(&dir, include, &mut emit).await.map_err(
                    |source| match source {
                        object_store::Error::InvalidPath { source } => StoreError::UnsafeKey {
                            store: self.describe.clone(),
                            detail: crate::show::name(&source.to_string()).into_owned(),
                        },
                        source => StoreError::List {
                            store: self.describe.clone(),
                            source,
                        },
                    },
                )?,
            }
        }
        crate::snapstore::plan::sort_snapshots(&mut listing.snapshots);
        Ok(Some(listing))
    }

    /// Whether the store keeps every object written even after it is deleted (an S3 bucket
    /// with versioning, hence any object-locked one; an immutable Azure container). Writing a temporary object there leaves a
    /// version nobody may be able to delete, so uploads go straight under their final name,
    /// as etcd-backup-restore's `Save` does. Unknown (an error asking) counts as no.
    pub async fn keeps_every_write(&self) -> bool {
        use crate::snapstore::versions::Lister;
        let answer = match &self.lister {
            None => return false,
            Some(Lister::S3(s3)) => s3.versioning_enabled().await.map_err(|e| e.to_string()),
            Some(Lister::Azure(az)) => az.immutable().await.map_err(|e| e.to_string()),
            // Not asked: compact keeps its temporary object on GCS, whose upload parts are
            // objects too (src/compact/upload.rs).
            Some(Lister::Gcs(_)) => return false,
        };
        answer.unwrap_or_else(|e| {
            tracing::warn!(store = %self.describe, error = %e, "cannot tell whether the bucket keeps deleted objects; assuming not");
            false
        })
    }

    fn include_excluded(&self) -> bool {
        self.config.as_ref().is_some_and(|c| c.include_excluded)
    }

    /// A local directory, listed by [`crate::snapstore::local_list`] so that a file whose name is not a
    /// valid object path is ignored instead of ending the listing.
    async fn list_local(&self, root: &Path) -> Result<Listing, StoreError> {
        let root = root.to_path_buf();
        let found = tokio::task::spawn_blocking(move || {
            let mut found = crate::snapstore::local_list::list(&root, "v1")?;
            found.extend(crate::snapstore::local_list::list(&root, "v2")?);
            Ok::<_, std::io::Error>(found)
        })
        .await
        .map_err(|e| StoreError::Setup {
            store: self.describe.clone(),
            detail: format!("listing task failed: {e}"),
        })?
        .map_err(|source| StoreError::Io {
            object: self.describe.clone(),
            source,
        })?;
        let mut listing = Listing::default();
        for o in found {
            match o.path {
                Ok(rel) => listing.add(&rel, o.size),
                Err(shown) => listing.ignored.push(IgnoredObject {
                    path: shown,
                    reason: "the name is not valid UTF-8".into(),
                }),
            }
        }
        crate::snapstore::plan::sort_snapshots(&mut listing.snapshots);
        Ok(listing)
    }
}
