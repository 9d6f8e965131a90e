//! Google Cloud Storage through its JSON API (`/storage/v1`, `/upload/storage/v1`), the API
//! etcdbrctl's Go client speaks, as an [`ObjectStore`].
//!
//! object_store's own GCS client speaks the XML API, and GCS emulators (fake-gcs-server, the
//! one the tests run) do not implement XML uploads, multipart uploads or copies, so that
//! client could never be tested on a real server here. This one is used for every GCS store;
//! object_store's builder is kept only for what it does well, the credentials (service-account
//! key, application default credentials, the metadata server), and only when the store is not
//! an emulator.
//!
//! * list: `GET /storage/v1/b/<bucket>/o?prefix=` (all pages);
//! * get: object metadata, then `?alt=media` pinned to that generation; a body cut short is
//!   resumed with a `Range` request for the rest, on the same generation;
//! * put: a `multipart` upload (metadata + bytes), `ifGenerationMatch=0` for create-only;
//! * multipart put: each part its own object `<name>/<%010d>` (etcdbrctl's chunk names), then
//!   `compose` (at most 32 sources per call, composed in rounds), then the parts are deleted;
//! * copy: `rewriteTo` (until `done`), `ifGenerationMatch=0` for create-only;
//! * delete: `DELETE`.
//!
//! Every request is retried with [`super::store::retry_config`]'s backoff on connection
//! errors, 408, 429 and 5xx answers and bodies cut short.
//!
//! * `client`: the requests, retries and error mapping; `resource`: the JSON resources;
//! * `download`: ranges and resumed media streams; `compose`: multipart uploads;
//! * `error`: the errors object_store's carry as their source.

mod client;
mod compose;
mod download;
mod error;
mod resource;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::DateTime;
use futures::stream::{self, BoxStream, StreamExt};
use object_store::gcp::GcpCredentialProvider;
use object_store::path::Path;
use object_store::{
    Attributes, CopyMode, CopyOptions, Error, GetOptions, GetResult, GetResultPayload, ListResult,
    MultipartUpload, ObjectMeta, ObjectStore, PutMode, PutMultipartOptions, PutOptions, PutPayload,
    PutResult, Result, RetryConfig,
};

use super::retry::{Attempts, error_chain};
use client::Inner;
use compose::ComposeUpload;
use download::{media_stream, resolve_range};
use error::{STORE, generic};
use resource::ObjectResource;

const DEFAULT_BASE_URL: &str = "https://storage.googleapis.com";
/// GCS's limit of components in one composite object (parts of one multipart upload).
pub const MAX_COMPONENTS: u64 = 1024;

/// A GCS bucket through the JSON API.
#[derive(Debug, Clone)]
pub struct GcsJson {
    inner: Arc<Inner>,
}

impl fmt::Display for GcsJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "GoogleCloudStorage({}, {})",
            self.inner.bucket, self.inner.base
        )
    }
}

impl GcsJson {
    /// `base`: the service's scheme and host (`https://storage.googleapis.com`, or an
    /// emulator's `http://127.0.0.1:4443`); `auth`: None for anonymous requests.
    pub fn new(
        base: Option<&str>,
        bucket: &str,
        auth: Option<GcpCredentialProvider>,
        retry: RetryConfig,
        allow_http: bool,
    ) -> Result<GcsJson> {
        let base = base
            .unwrap_or(DEFAULT_BASE_URL)
            .trim_end_matches('/')
            .to_string();
        if base.starts_with("http://") && !allow_http {
            return Err(generic(format!("{base}: plain http is not allowed")));
        }
        // No overall timeout: a multi-GB snapshot streams for minutes; a stalled connection is
        // caught by the read timeout (and retried or resumed).
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(60))
            .https_only(!allow_http)
            .user_agent(concat!("etcd-restore/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| generic(format!("HTTP client: {}", error_chain(&e))))?;
        Ok(GcsJson {
            inner: Arc::new(Inner {
                http,
                base,
                bucket: bucket.to_string(),
                auth,
                retry,
            }),
        })
    }

    /// The live objects below `prefix` as etcd-backup-restore's `GCSSnapStore.List` sees
    /// them (`pkg/snapstore/gcs_snapstore.go`), a page at a time: those whose metadata holds
    /// `x-etcd-snapshot-exclude=true` dropped (or marked), `retentionExpirationTime` as the
    /// immutability end.
    pub(crate) async fn list_detailed(
        &self,
        prefix: &str,
        include_excluded: bool,
        emit: &mut (dyn FnMut(super::exclude::ListedObject) + Send),
    ) -> Result<()> {
        let mut token: Option<String> = None;
        loop {
            let page = self
                .inner
                .list_page(prefix, false, token.as_deref())
                .await?;
            for o in page.items {
                let excluded = o.metadata.as_ref().is_some_and(|m| {
                    m.iter()
                        .any(|(k, v)| super::exclude::is_exclude_entry(k, v))
                });
                if excluded && !include_excluded {
                    tracing::info!(object = %crate::show::name(&o.name), "snapshot withdrawn by its exclude metadata");
                    continue;
                }
                let size = o.meta()?.size;
                emit(super::exclude::ListedObject {
                    immutable_until: o
                        .retention_expiration_time
                        .as_deref()
                        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                        .map(|t| t.timestamp()),
                    key: o.name,
                    size,
                    version: None,
                    excluded,
                });
            }
            match page.next_page_token.filter(|t| !t.is_empty()) {
                Some(t) => token = Some(t),
                None => return Ok(()),
            }
        }
    }

    fn list_stream(
        &self,
        prefix: Option<&Path>,
        delimiter: bool,
    ) -> BoxStream<'static, Result<ListResult>> {
        let inner = self.inner.clone();
        let prefix = match prefix {
            Some(p) if !p.as_ref().is_empty() => format!("{}/", p.as_ref()),
            _ => String::new(),
        };
        // State: None = finished; Some(token) = the next page (Some(None) = the first).
        stream::unfold(Some(None::<String>), move |state| {
            let inner = inner.clone();
            let prefix = prefix.clone();
            async move {
                let token = state?;
                match inner.list_page(&prefix, delimiter, token.as_deref()).await {
                    Err(e) => Some((Err(e), None)),
                    Ok(page) => {
                        let next = page.next_page_token.clone().filter(|t| !t.is_empty());
                        let objects: Result<Vec<ObjectMeta>> =
                            page.items.iter().map(ObjectResource::meta).collect();
                        let common_prefixes: Result<Vec<Path>> = page
                            .prefixes
                            .iter()
                            .map(|p| {
                                Path::parse(p.trim_end_matches('/'))
                                    .map_err(|source| Error::InvalidPath { source })
                            })
                            .collect();
                        let result = objects.and_then(|objects| {
                            Ok(ListResult {
                                common_prefixes: common_prefixes?,
                                objects,
                                extensions: Default::default(),
                            })
                        });
                        let more = result.is_ok() && next.is_some();
                        Some((result, more.then_some(next)))
                    }
                }
            }
        })
        .boxed()
    }
}

#[async_trait]
impl ObjectStore for GcsJson {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let data = Bytes::from(payload);
        let (condition, create) = match &opts.mode {
            PutMode::Overwrite => (None, false),
            PutMode::Create => (Some("0".to_string()), true),
            PutMode::Update(v) => match &v.version {
                Some(g) => (Some(g.clone()), false),
                None => {
                    return Err(Error::NotImplemented {
                        operation: "GCS conditional put without a generation".into(),
                        implementer: STORE.into(),
                    });
                }
            },
        };
        match self
            .inner
            .upload(location, data, condition.as_deref())
            .await
        {
            Ok(r) => Ok(r.put_result()),
            Err(Error::Precondition { path, source }) if create => {
                Err(Error::AlreadyExists { path, source })
            }
            Err(e) => Err(e),
        }
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        _opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        Ok(Box::new(ComposeUpload {
            inner: self.inner.clone(),
            dest: location.clone(),
            parts: 0,
        }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        if options.if_match.is_some()
            || options.if_none_match.is_some()
            || options.if_modified_since.is_some()
            || options.if_unmodified_since.is_some()
        {
            return Err(Error::NotImplemented {
                operation: "GCS conditional get".into(),
                implementer: STORE.into(),
            });
        }
        let meta = self
            .inner
            .metadata(location, options.version.as_deref())
            .await?;
        let range = resolve_range(options.range.as_ref(), meta.size)?;
        let payload = if options.head {
            GetResultPayload::Stream(stream::empty().boxed())
        } else {
            let generation = meta.version.clone().ok_or_else(|| {
                generic(format!("{location}: the object metadata has no generation"))
            })?;
            let mut attempts = Attempts::new(&self.inner.retry);
            let first = self
                .inner
                .media(location, &generation, &range, meta.size, &mut attempts)
                .await?;
            GetResultPayload::Stream(media_stream(
                self.inner.clone(),
                location.clone(),
                generation,
                range.clone(),
                meta.size,
                first,
            ))
        };
        Ok(GetResult {
            payload,
            meta,
            range,
            attributes: Attributes::default(),
            extensions: Default::default(),
        })
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let inner = self.inner.clone();
        locations
            .map(move |p| {
                let inner = inner.clone();
                async move {
                    let p = p?;
                    inner.delete(&p).await?;
                    Ok(p)
                }
            })
            .buffered(8)
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.list_stream(prefix, false)
            .flat_map(|page| match page {
                Ok(p) => stream::iter(p.objects.into_iter().map(Ok).collect::<Vec<_>>()),
                Err(e) => stream::iter(vec![Err(e)]),
            })
            .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let mut pages = self.list_stream(prefix, true);
        let mut out = ListResult {
            common_prefixes: Vec::new(),
            objects: Vec::new(),
            extensions: Default::default(),
        };
        while let Some(page) = pages.next().await {
            let page = page?;
            out.common_prefixes.extend(page.common_prefixes);
            out.objects.extend(page.objects);
        }
        Ok(out)
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        let create = matches!(options.mode, CopyMode::Create);
        self.inner.rewrite(from, to, create).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_needs_allow_http() {
        let r = RetryConfig::default();
        assert!(GcsJson::new(Some("http://127.0.0.1:1"), "b", None, r.clone(), false).is_err());
        assert!(GcsJson::new(Some("http://127.0.0.1:1/"), "b", None, r, true).is_ok());
    }
}
