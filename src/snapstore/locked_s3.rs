//! Writing into an S3 bucket with Object Lock.
//!
//! There AWS refuses a PutObject or UploadPart that carries neither `Content-MD5` nor an
//! `x-amz-checksum-*` header whenever a retention applies to the new version — the bucket's
//! default retention or the request's own ("Content-MD5 OR x-amz-checksum- HTTP header is
//! required for Put Object / Put Part requests with Object Lock parameters"; the S3 user
//! guide, "Configuring S3 Object Lock"). object_store sends neither by default, so such
//! writes go through clients configured the way the AWS SDKs send a flexible checksum:
//! PutObject and UploadPart carry `x-amz-sdk-checksum-algorithm: SHA256` and
//! `x-amz-checksum-sha256`; CreateMultipartUpload announces the algorithm
//! (`x-amz-checksum-algorithm: SHA256`) and CompleteMultipartUpload lists each part's
//! `ChecksumSHA256`. Every header is signed (object_store signs its default headers).
//!
//! A small object that need not be kept (the compaction lock) can be given its own short
//! retention (`x-amz-object-lock-mode: GOVERNANCE` and a retain-until date): explicit
//! retention settings override the bucket's default, so its old versions become deletable
//! soon instead of after the default period, and [`LockedS3::purge`] deletes them.
//!
//! The checksum costs no extra pass: object_store signs the payload, and the SHA-256 it
//! computes for the signature is the one the checksum header carries. It is still only used
//! where the bucket reports Object Lock enabled (`GetObjectLockConfiguration`, asked once per
//! store): S3-compatible servers differ in what they make of checksum headers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use http::{HeaderMap, HeaderName, HeaderValue};
use object_store::aws::{AmazonS3, AmazonS3Builder, Checksum};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{
    ClientOptions, MultipartUpload, ObjectStore, PutOptions, PutPayload, PutResult, UploadPart,
};
use tokio::sync::OnceCell;

use super::versions::S3Raw;

const SDK_CHECKSUM_ALGORITHM: &str = "x-amz-sdk-checksum-algorithm";

/// The checksummed writers of one S3 store, built once the bucket says it needs them.
#[derive(Debug)]
pub(crate) struct LockedS3 {
    /// The store's builder with SHA-256 checksums and the store's credential provider.
    builder: AmazonS3Builder,
    options: ClientOptions,
    raw: Arc<S3Raw>,
    writers: OnceCell<Option<Writers>>,
    /// A put with its own retention was refused (no `s3:PutObjectRetention`): the rest of
    /// the run writes with the bucket's default.
    retention_refused: AtomicBool,
}

#[derive(Debug)]
struct Writers {
    /// The bucket applies a default retention to new versions.
    default_retention: bool,
    /// PutObject and UploadPart: the checksum header plus `x-amz-sdk-checksum-algorithm`.
    puts: Arc<AmazonS3>,
    /// CreateMultipartUpload, CompleteMultipartUpload, AbortMultipartUpload: the SDKs send
    /// no `x-amz-sdk-checksum-algorithm` there (it names the algorithm of a body checksum
    /// these requests do not carry).
    uploads: Arc<AmazonS3>,
}

impl LockedS3 {
    pub(crate) fn new(
        builder: &AmazonS3Builder,
        options: ClientOptions,
        credentials: object_store::aws::AwsCredentialProvider,
        raw: Arc<S3Raw>,
    ) -> Self {
        LockedS3 {
            builder: builder
                .clone()
                .with_credentials(credentials)
                .with_checksum_algorithm(Checksum::SHA256),
            options,
            raw,
            writers: OnceCell::new(),
            retention_refused: AtomicBool::new(false),
        }
    }

    fn client(&self, headers: HeaderMap) -> object_store::Result<AmazonS3> {
        self.builder
            .clone()
            .with_client_options(self.options.clone().with_default_headers(headers))
            .build()
    }

    /// The writers if the bucket has Object Lock enabled (asked once). A bucket whose
    /// configuration cannot be read is written without checksums, with a warning: that
    /// write fails in a locked bucket, and the warning says why.
    async fn writers(&self) -> Option<&Writers> {
        self.writers
            .get_or_init(|| async {
                let lock = match self.raw.object_lock().await {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot tell whether the bucket has Object Lock; writing without checksums (a bucket with a default retention refuses such writes)");
                        return None;
                    }
                };
                if !lock.enabled {
                    return None;
                }
                let mut sdk = HeaderMap::new();
                sdk.insert(
                    HeaderName::from_static(SDK_CHECKSUM_ALGORITHM),
                    HeaderValue::from_static("SHA256"),
                );
                match (self.client(sdk), self.client(HeaderMap::new())) {
                    (Ok(puts), Ok(uploads)) => {
                        tracing::debug!("the bucket has Object Lock: writes carry SHA-256 checksums");
                        Some(Writers {
                            default_retention: lock.default_retention,
                            puts: Arc::new(puts),
                            uploads: Arc::new(uploads),
                        })
                    }
                    (Err(e), _) | (_, Err(e)) => {
                        tracing::warn!(error = %e, "cannot build the checksummed S3 client; writing without checksums");
                        None
                    }
                }
            })
            .await
            .as_ref()
    }

    /// A PutObject with checksums, or `None` when the bucket needs none (the caller writes
    /// through its plain client). With `retain_until` (Unix seconds) and a bucket default
    /// retention, the version gets that GOVERNANCE retention instead of the default; a
    /// refusal (no `s3:PutObjectRetention`) falls back to the default, with a warning.
    pub(crate) async fn put(
        &self,
        path: &Path,
        payload: PutPayload,
        opts: PutOptions,
        retain_until: Option<i64>,
    ) -> Option<object_store::Result<PutResult>> {
        let w = self.writers().await?;
        let until = retain_until
            .filter(|_| w.default_retention && !self.retention_refused.load(Ordering::Relaxed))
            .and_then(|t| chrono::DateTime::from_timestamp(t, 0));
        if let Some(until) = until {
            let mut h = HeaderMap::new();
            h.insert(
                HeaderName::from_static(SDK_CHECKSUM_ALGORITHM),
                HeaderValue::from_static("SHA256"),
            );
            h.insert(
                HeaderName::from_static("x-amz-object-lock-mode"),
                HeaderValue::from_static("GOVERNANCE"),
            );
            let date = until.format("%Y-%m-%dT%H:%M:%SZ").to_string();
            if let Ok(v) = HeaderValue::from_str(&date) {
                h.insert(
                    HeaderName::from_static("x-amz-object-lock-retain-until-date"),
                    v,
                );
            }
            let res = match self.client(h) {
                Ok(c) => c.put_opts(path, payload.clone(), opts.clone()).await,
                Err(e) => Err(e),
            };
            match res {
                Err(object_store::Error::PermissionDenied { source, .. }) => {
                    self.retention_refused.store(true, Ordering::Relaxed);
                    tracing::warn!(object = %path, error = %source, "writing with a short retention was refused (needs s3:PutObjectRetention); the bucket's default retention keeps this object's versions");
                }
                other => return Some(other),
            }
        }
        Some(w.puts.put_opts(path, payload, opts).await)
    }

    /// Deletes the old versions and delete markers of `path` (full key) whose retention has
    /// ended; `None` when the bucket has no Object Lock. Returns (deleted, kept).
    pub(crate) async fn purge(&self, key: &str) -> Option<Result<(u64, u64), String>> {
        self.writers().await?;
        Some(
            self.raw
                .purge_noncurrent(key)
                .await
                .map_err(|e| e.to_string()),
        )
    }

    /// A multipart upload with checksums, or `None` when the bucket needs none.
    pub(crate) async fn put_multipart(
        &self,
        path: &Path,
    ) -> Option<object_store::Result<Box<dyn MultipartUpload>>> {
        let w = self.writers().await?;
        let upload = match w.uploads.create_multipart(path).await {
            Ok(id) => Box::new(ChecksummedUpload {
                state: Arc::new(UploadState {
                    puts: Arc::clone(&w.puts),
                    uploads: Arc::clone(&w.uploads),
                    path: path.clone(),
                    id,
                    parts: std::sync::Mutex::new(Vec::new()),
                }),
                next: 0,
            }) as Box<dyn MultipartUpload>,
            Err(e) => return Some(Err(e)),
        };
        Some(Ok(upload))
    }
}

#[derive(Debug)]
struct UploadState {
    puts: Arc<AmazonS3>,
    uploads: Arc<AmazonS3>,
    path: Path,
    id: String,
    parts: std::sync::Mutex<Vec<(usize, PartId)>>,
}

/// One multipart upload whose parts go through the `puts` client and whose creation and
/// completion go through `uploads` (see [`Writers`]). object_store retries each request.
#[derive(Debug)]
struct ChecksummedUpload {
    state: Arc<UploadState>,
    next: usize,
}

#[async_trait]
impl MultipartUpload for ChecksummedUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let idx = self.next;
        self.next += 1;
        let s = Arc::clone(&self.state);
        Box::pin(async move {
            let part = s.puts.put_part(&s.path, &s.id, idx, data).await?;
            s.parts
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((idx, part));
            Ok(())
        })
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let mut parts =
            std::mem::take(&mut *self.state.parts.lock().unwrap_or_else(|p| p.into_inner()));
        parts.sort_by_key(|(i, _)| *i);
        if parts.len() != self.next || parts.iter().enumerate().any(|(n, (i, _))| n != *i) {
            return Err(object_store::Error::Generic {
                store: "S3",
                source: format!(
                    "completing {} with {} of its {} parts",
                    self.state.path,
                    parts.len(),
                    self.next
                )
                .into(),
            });
        }
        let parts = parts.into_iter().map(|(_, p)| p).collect();
        let s = &self.state;
        s.uploads.complete_multipart(&s.path, &s.id, parts).await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        let s = &self.state;
        s.uploads.abort_multipart(&s.path, &s.id).await
    }
}
