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
//! The checksum costs no extra pass: object_store signs the payload, and the SHA-256 it
//! computes for the signature is the one the checksum header carries. It is still only used
//! where the bucket reports Object Lock enabled (`GetObjectLockConfiguration`, asked once per
//! store): S3-compatible servers differ in what they make of checksum headers.

use std::sync::Arc;

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
}

#[derive(Debug)]
struct Writers {
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
                let enabled = match self.raw.object_lock().await {
                    Ok((enabled, _)) => enabled,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot tell whether the bucket has Object Lock; writing without checksums (a bucket with a default retention refuses such writes)");
                        false
                    }
                };
                if !enabled {
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
    /// through its plain client).
    pub(crate) async fn put(
        &self,
        path: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Option<object_store::Result<PutResult>> {
        let w = self.writers().await?;
        Some(w.puts.put_opts(path, payload, opts).await)
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
