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

/// The retry policy for cloud stores: exponential backoff from 100 ms to 15 s, at most 10 tries
/// within 3 minutes (object_store retries only idempotent requests and 5xx/throttling answers).
pub fn retry_config() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(15),
            base: 2.0,
        },
        max_retries: 10,
        retry_timeout: Duration::from_secs(180),
    }
}

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
    /// Opens the store described by a resolved configuration (no network access yet).
    pub fn open(config: &StoreConfig) -> Result<Store, StoreError> {
        let describe = config.describe();
        let open_err = |source| StoreError::Open {
            store: describe.clone(),
            source,
        };
        // etcdbrctl creates a missing temp directory (0700) when it opens any store
        // (pkg/snapstore/utils.go `GetSnapstore`): druid's compaction Job points
        // --snapstore-temp-directory into a fresh emptyDir.
        crate::tempdir::ensure(&config.temp_dir, "--snapstore-temp-directory").map_err(|e| {
            StoreError::Setup {
                store: describe.clone(),
                detail: e.to_string(),
            }
        })?;
        let mut lister = None;
        let mut locked = None;
        let inner: Arc<dyn ObjectStore> = match &config.backend {
            Backend::Local { root } => {
                if !root.is_dir() {
                    return Err(StoreError::Setup {
                        store: describe,
                        detail: "no such directory".into(),
                    });
                }
                Arc::new(
                    object_store::local::LocalFileSystem::new_with_prefix(root)
                        .map_err(open_err)?,
                )
            }
            Backend::S3(s3) => {
                let mut b = if s3.from_env {
                    object_store::aws::AmazonS3Builder::from_env()
                } else {
                    object_store::aws::AmazonS3Builder::new()
                };
                b = b
                    .with_bucket_name(&s3.bucket)
                    .with_retry(retry_config())
                    // Create-only copies (compact's final step) through a one-part multipart
                    // upload completed with If-None-Match, which AWS S3 honours.
                    .with_copy_if_not_exists(object_store::aws::S3CopyIfNotExists::Multipart)
                    .with_virtual_hosted_style_request(s3.virtual_hosted_style)
                    .with_allow_http(s3.allow_http);
                if let Some(e) = &s3.endpoint {
                    b = b.with_endpoint(e);
                }
                if let Some(r) = &s3.region {
                    b = b.with_region(r);
                } else if s3.endpoint.is_some() {
                    // S3-compatible servers accept any region, but the signature needs one.
                    b = b.with_region("us-east-1");
                }
                if let Some(k) = &s3.access_key_id {
                    b = b.with_access_key_id(k);
                }
                if let Some(k) = &s3.secret_access_key {
                    b = b.with_secret_access_key(k);
                }
                if let Some(r) = &s3.role_arn {
                    b = b.with_config(object_store::aws::AmazonS3ConfigKey::RoleArn, r);
                }
                if let Some(t) = &s3.web_identity_token_file {
                    b = b.with_config(
                        object_store::aws::AmazonS3ConfigKey::WebIdentityTokenFile,
                        t,
                    );
                }
                if let Some(k) = &s3.sse_customer_key {
                    b = b.with_ssec_encryption(k);
                }
                if s3.disable_bulk_delete {
                    b = b.with_disable_bulk_delete(true);
                }
                let options = client_options(
                    s3.allow_http,
                    s3.allow_invalid_certificates,
                    s3.trusted_ca_pem.as_deref(),
                    &describe,
                )?;
                b = b.with_client_options(options.clone());
                let bucket_url = s3_bucket_url(&b, s3);
                let built = b.clone().build().map_err(open_err)?;
                let raw = Arc::new(super::versions::S3Raw {
                    http: super::versions::http_client(
                        s3.allow_http,
                        s3.allow_invalid_certificates,
                        s3.trusted_ca_pem.as_deref(),
                    )
                    .map_err(|detail| StoreError::Setup {
                        store: describe.clone(),
                        detail,
                    })?,
                    bucket_url: bucket_url.0,
                    region: bucket_url.1,
                    credentials: built.credentials().clone(),
                    retry: retry_config(),
                });
                locked = Some(Arc::new(super::locked_s3::LockedS3::new(
                    &b,
                    options,
                    built.credentials().clone(),
                    Arc::clone(&raw),
                )));
                lister = Some(super::versions::Lister::S3(raw));
                Arc::new(built)
            }
            Backend::Gcs(g) => {
                // The JSON API client (super::gcs); object_store's GCS builder only provides
                // the credentials, and is not even built for an emulator (anonymous), so that
                // nothing can ask Google or a metadata server for a token.
                let auth = if g.anonymous {
                    None
                } else if let (true, Some(p)) = (g.external_account, &g.service_account_path) {
                    let ext = super::gcs_external::ExternalAccount::from_file(p, retry_config())
                        .map_err(|detail| StoreError::Setup {
                            store: describe.clone(),
                            detail,
                        })?;
                    Some(Arc::new(ext) as object_store::gcp::GcpCredentialProvider)
                } else if g.base_url.is_some() && g.service_account_path.is_none() {
                    // Without a key file object_store would try application default
                    // credentials and then the cloud metadata server: never for a store
                    // named by its endpoint.
                    return Err(StoreError::Setup {
                        store: describe,
                        detail: "an https endpoint override and no credentials: set GOOGLE_APPLICATION_CREDENTIALS (a service_account or external_account file), or use an http:// emulator endpoint or STORAGE_EMULATOR_HOST (no authentication); the metadata server is never asked for a store with an endpoint override".into(),
                    });
                } else {
                    let mut b = if g.from_env {
                        object_store::gcp::GoogleCloudStorageBuilder::from_env()
                    } else {
                        object_store::gcp::GoogleCloudStorageBuilder::new()
                    };
                    b = b.with_bucket_name(&g.bucket).with_retry(retry_config());
                    if let Some(p) = &g.service_account_path {
                        b = b.with_service_account_path(p.display().to_string());
                    }
                    b = b.with_client_options(client_options(
                        g.allow_http,
                        false,
                        None,
                        &describe,
                    )?);
                    Some(b.build().map_err(open_err)?.credentials().clone())
                };
                let gcs = super::gcs::GcsJson::new(
                    g.base_url.as_deref(),
                    &g.bucket,
                    auth,
                    retry_config(),
                    g.allow_http,
                )
                .map_err(open_err)?;
                lister = Some(super::versions::Lister::Gcs(gcs.clone()));
                Arc::new(gcs)
            }
            Backend::Azure(a) => {
                let mut b = if a.from_env {
                    object_store::azure::MicrosoftAzureBuilder::from_env()
                } else {
                    object_store::azure::MicrosoftAzureBuilder::new()
                };
                b = b
                    .with_container_name(&a.container)
                    .with_retry(retry_config())
                    .with_allow_http(a.allow_http);
                if let Some(acct) = &a.account {
                    b = b.with_account(acct);
                }
                if let Some(k) = &a.access_key {
                    b = b.with_access_key(k);
                }
                if let Some(e) = &a.endpoint {
                    b = b.with_endpoint(e.trim_end_matches('/').to_string());
                }
                b = b.with_client_options(client_options(a.allow_http, false, None, &describe)?);
                let account = b
                    .get_config_value(&object_store::azure::AzureConfigKey::AccountName)
                    .unwrap_or_default();
                let container_url = match &a.endpoint {
                    Some(e) => format!("{}/{}", e.trim_end_matches('/'), a.container),
                    None => format!("https://{account}.blob.core.windows.net/{}", a.container),
                };
                let built = b.build().map_err(open_err)?;
                lister = Some(super::versions::Lister::Azure(Arc::new(
                    super::azure_list::AzureRaw {
                        http: super::versions::http_client(a.allow_http, false, None).map_err(
                            |detail| StoreError::Setup {
                                store: describe.clone(),
                                detail,
                            },
                        )?,
                        container_url,
                        account,
                        credentials: built.credentials().clone(),
                        retry: retry_config(),
                    },
                )));
                Arc::new(built)
            }
        };
        Ok(Store {
            inner,
            prefix: config.prefix.clone(),
            describe,
            config: Some(config.clone()),
            lister,
            locked,
        })
    }

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
        super::plan::sort_snapshots(&mut listing.snapshots);
        Ok(listing)
    }

    /// The listing through the provider's own API with etcd-backup-restore's exclusion,
    /// version and immutability rules ([`super::exclude`]); `None` where upstream's listing is
    /// the plain one (an S3 bucket without versioning).
    async fn list_provider(
        &self,
        lister: &super::versions::Lister,
    ) -> Result<Option<Listing>, StoreError> {
        use super::versions::{ListError, Lister};
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
            let mut emit = |o: super::exclude::ListedObject| {
                let Some(rel) = self.relative(&o.key) else {
                    return;
                };
                listing.add_listed(rel, o.size, |s| {
                    s.version = o.version;
                    s.excluded = o.excluded;
                    s.immutable_until = o.immutable_until.or_else(|| {
                        super::exclude::s3_immutable_until(s.created_on(), retention_days)
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
        super::plan::sort_snapshots(&mut listing.snapshots);
        Ok(Some(listing))
    }

    /// Whether the store keeps every object written even after it is deleted (an S3 bucket
    /// with versioning, hence any object-locked one; an immutable Azure container). Writing a temporary object there leaves a
    /// version nobody may be able to delete, so uploads go straight under their final name,
    /// as etcd-backup-restore's `Save` does. Unknown (an error asking) counts as no.
    pub async fn keeps_every_write(&self) -> bool {
        use super::versions::Lister;
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

    /// A local directory, listed by [`super::local_list`] so that a file whose name is not a
    /// valid object path is ignored instead of ending the listing.
    async fn list_local(&self, root: &Path) -> Result<Listing, StoreError> {
        let root = root.to_path_buf();
        let found = tokio::task::spawn_blocking(move || {
            let mut found = super::local_list::list(&root, "v1")?;
            found.extend(super::local_list::list(&root, "v2")?);
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
        super::plan::sort_snapshots(&mut listing.snapshots);
        Ok(listing)
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

    /// Writes a small object only if it does not exist yet (If-None-Match on cloud stores).
    /// `retain_until` (Unix seconds): in an S3 bucket with an Object Lock default retention,
    /// keep this version only until then (GOVERNANCE) instead of the default period.
    pub async fn put_create(
        &self,
        relative: &str,
        data: Bytes,
        retain_until: Option<i64>,
    ) -> Result<(), StoreError> {
        self.put_small(relative, data, PutMode::Create, retain_until)
            .await
    }

    /// Writes a small object, replacing what is there ([`Store::put_create`]'s `retain_until`).
    pub async fn put_replace(
        &self,
        relative: &str,
        data: Bytes,
        retain_until: Option<i64>,
    ) -> Result<(), StoreError> {
        self.put_small(relative, data, PutMode::Overwrite, retain_until)
            .await
    }

    /// In an S3 bucket with Object Lock, deletes the old versions and delete markers of an
    /// object whose retention has ended (never its current version): (deleted, still
    /// retained). `None` elsewhere.
    pub async fn purge_old_versions(
        &self,
        relative: &str,
    ) -> Option<Result<(u64, u64), StoreError>> {
        let key = match self.object_path(relative) {
            Ok(p) => p.to_string(),
            Err(e) => return Some(Err(e)),
        };
        let res = self.locked.as_ref()?.purge(&key).await?;
        Some(res.map_err(|detail| StoreError::Setup {
            store: self.describe.clone(),
            detail: format!("removing old versions of {relative}: {detail}"),
        }))
    }

    async fn put_small(
        &self,
        relative: &str,
        data: Bytes,
        mode: PutMode,
        retain_until: Option<i64>,
    ) -> Result<(), StoreError> {
        let path = self.object_path(relative)?;
        let opts = PutOptions {
            mode,
            ..PutOptions::default()
        };
        let payload = PutPayload::from_bytes(data);
        let locked = match &self.locked {
            Some(l) => {
                l.put(&path, payload.clone(), opts.clone(), retain_until)
                    .await
            }
            None => None,
        };
        let result = match locked {
            Some(r) => r,
            None => self.inner.put_opts(&path, payload, opts).await,
        };
        match result {
            Ok(_) => Ok(()),
            Err(object_store::Error::AlreadyExists { .. }) => Err(StoreError::AlreadyExists {
                object: relative.to_string(),
            }),
            Err(source) => Err(StoreError::Object {
                object: relative.to_string(),
                op: "put",
                source,
            }),
        }
    }

    /// Uploads a local file in parts (`part_size`, `concurrency` parts in flight) to a new
    /// object. Multipart uploads cannot be conditional everywhere, so existence is checked
    /// first; the window between check and completion is the caller's to avoid (names carry
    /// a creation second and a revision).
    pub async fn put_multipart_file(
        &self,
        relative: &str,
        file: &std::path::Path,
        part_size: u64,
        concurrency: usize,
    ) -> Result<u64, StoreError> {
        self.put_multipart(relative, file, part_size, concurrency, None)
            .await
    }

    /// [`Store::put_multipart_file`] that hashes the bytes as it sends them and completes the
    /// upload only if they are `expected` (size and sha256); otherwise it aborts the upload
    /// and fails with [`StoreError::Unexpected`]. Proves the object is the bytes the caller
    /// produced without downloading it again.
    pub async fn put_multipart_file_expecting(
        &self,
        relative: &str,
        file: &std::path::Path,
        part_size: u64,
        concurrency: usize,
        expected: &Expected,
    ) -> Result<u64, StoreError> {
        self.put_multipart(relative, file, part_size, concurrency, Some(expected))
            .await
    }

    async fn put_multipart(
        &self,
        relative: &str,
        file: &std::path::Path,
        part_size: u64,
        concurrency: usize,
        expected: Option<&Expected>,
    ) -> Result<u64, StoreError> {
        use sha2::Digest;
        use tokio::io::AsyncReadExt;
        if self.exists(relative).await? {
            return Err(StoreError::AlreadyExists {
                object: relative.to_string(),
            });
        }
        let path = self.object_path(relative)?;
        let io_err = |source| StoreError::Io {
            object: relative.to_string(),
            source,
        };
        let mut f = tokio::fs::File::open(file).await.map_err(io_err)?;
        // GCS composes the parts into one object (super::gcs), which holds at most 1024
        // components: a file that would need more gets larger parts.
        let part_size = match self.config.as_ref().map(|c| &c.backend) {
            Some(Backend::Gcs(_)) => {
                let len = f.metadata().await.map_err(io_err)?.len();
                part_size.max(len.div_ceil(super::gcs::MAX_COMPONENTS))
            }
            _ => part_size,
        };
        let locked = match &self.locked {
            Some(l) => l.put_multipart(&path).await,
            None => None,
        };
        let upload = match locked {
            Some(u) => u,
            None => self.inner.put_multipart(&path).await,
        }
        .map_err(|source| StoreError::Object {
            object: relative.to_string(),
            op: "put_multipart",
            source,
        })?;
        let part = usize::try_from(part_size).unwrap_or(usize::MAX).max(1);
        let mut writer = WriteMultipart::new_with_chunk_size(upload, part);
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        let mut hasher = sha2::Sha256::new();
        let result: Result<(), StoreError> = async {
            loop {
                let n = f.read(&mut buf).await.map_err(io_err)?;
                if n == 0 {
                    break;
                }
                writer
                    .wait_for_capacity(concurrency.max(1))
                    .await
                    .map_err(|source| StoreError::Object {
                        object: relative.to_string(),
                        op: "put_multipart",
                        source,
                    })?;
                let data = buf.get(..n).unwrap_or_default();
                if expected.is_some() {
                    hasher.update(data);
                }
                writer.write(data);
                total += n as u64;
            }
            if let Some(want) = expected {
                let sha256: [u8; 32] = hasher.finalize().into();
                if total != want.bytes || sha256 != want.sha256 {
                    return Err(StoreError::Unexpected {
                        object: relative.to_string(),
                        bytes: total,
                        sha256,
                    });
                }
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            let _ = writer.abort().await;
            return Err(e);
        }
        writer.finish().await.map_err(|source| StoreError::Object {
            object: relative.to_string(),
            op: "complete multipart upload",
            source,
        })?;
        Ok(total)
    }
}

/// What an upload must read from its file: [`Store::put_multipart_file_expecting`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expected {
    pub bytes: u64,
    pub sha256: [u8; 32],
}

/// The bucket's URL and signing region as object_store's builder resolves them (path style
/// `<endpoint>/<bucket>`; virtual-hosted: the endpoint already names the bucket).
fn s3_bucket_url(
    b: &object_store::aws::AmazonS3Builder,
    s3: &super::config::S3Config,
) -> (String, String) {
    use object_store::aws::AmazonS3ConfigKey as K;
    let region = b
        .get_config_value(&K::Region)
        .unwrap_or_else(|| "us-east-1".to_string());
    let url = match (b.get_config_value(&K::Endpoint), s3.virtual_hosted_style) {
        (Some(e), false) => format!("{}/{}", e.trim_end_matches('/'), s3.bucket),
        (Some(e), true) => e.trim_end_matches('/').to_string(),
        (None, false) => format!("https://s3.{region}.amazonaws.com/{}", s3.bucket),
        (None, true) => format!("https://{}.s3.{region}.amazonaws.com", s3.bucket),
    };
    (url, region)
}

fn client_options(
    allow_http: bool,
    allow_invalid_certificates: bool,
    trusted_ca_pem: Option<&str>,
    describe: &str,
) -> Result<ClientOptions, StoreError> {
    // No overall request timeout: a multi-GB snapshot streams for minutes. A stalled
    // connection is caught by the read timeout instead (and retried).
    let mut o = ClientOptions::new()
        .with_allow_http(allow_http)
        .with_connect_timeout(Duration::from_secs(10))
        .with_timeout_disabled()
        .with_read_timeout(Duration::from_secs(60));
    if allow_invalid_certificates {
        o = o.with_allow_invalid_certificates(true);
    }
    if let Some(pem) = trusted_ca_pem {
        let cert =
            object_store::Certificate::from_pem(pem.as_bytes()).map_err(|e| StoreError::Setup {
                store: describe.to_string(),
                detail: format!("trustedCaCert: {e}"),
            })?;
        o = o.with_root_certificate(cert);
    }
    Ok(o)
}
