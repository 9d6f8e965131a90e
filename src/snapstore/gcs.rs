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

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::{self, BoxStream, StreamExt};
use object_store::gcp::GcpCredentialProvider;
use object_store::path::Path;
use object_store::{
    Attributes, CopyMode, CopyOptions, Error, GetOptions, GetRange, GetResult, GetResultPayload,
    ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMode, PutMultipartOptions, PutOptions,
    PutPayload, PutResult, Result, RetryConfig, UploadPart,
};
use reqwest::{Method, StatusCode, Url};

use super::retry::{Attempts, error_chain, retryable};

const STORE: &str = "GCS";
const DEFAULT_BASE_URL: &str = "https://storage.googleapis.com";
/// GCS's limit of source objects in one compose request.
const MAX_COMPOSE: usize = 32;
/// GCS's limit of components in one composite object (parts of one multipart upload).
pub const MAX_COMPONENTS: u64 = 1024;

/// An HTTP answer that is not a success, kept as the source of object_store errors.
#[derive(Debug, thiserror::Error)]
#[error("{method} {what}: HTTP {status}: {body}")]
struct HttpError {
    method: Method,
    what: String,
    status: StatusCode,
    body: String,
}

/// A request that could not be completed (after retries).
#[derive(Debug, thiserror::Error)]
#[error("{method} {what}: {detail}")]
struct RequestError {
    method: Method,
    what: String,
    detail: String,
}

fn generic(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Error {
    Error::Generic {
        store: STORE,
        source: e.into(),
    }
}

/// Percent-encodes one URL path segment (also `/`): the JSON API's object names.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The JSON API's object resource (the fields used here).
#[derive(Debug, serde::Deserialize)]
struct ObjectResource {
    name: String,
    #[serde(default)]
    size: Option<String>,
    #[serde(default)]
    updated: Option<String>,
    #[serde(default)]
    etag: Option<String>,
    #[serde(default)]
    generation: Option<String>,
    /// Base64 of the big-endian CRC32C of the content.
    #[serde(default)]
    crc32c: Option<String>,
    /// Custom metadata (etcd-backup-restore's exclude entry, [`super::exclude`]).
    #[serde(default)]
    metadata: Option<std::collections::HashMap<String, String>>,
    /// RFC 3339: the end of the bucket retention policy for this object.
    #[serde(default, rename = "retentionExpirationTime")]
    retention_expiration_time: Option<String>,
}

/// GCS's form of a CRC32C: base64 of the big-endian value.
fn crc32c_b64(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(crc32c::crc32c(data).to_be_bytes())
}

impl ObjectResource {
    fn meta(&self) -> Result<ObjectMeta> {
        let location = Path::parse(&self.name).map_err(|source| Error::InvalidPath { source })?;
        let size = match &self.size {
            Some(s) => s
                .parse()
                .map_err(|_| generic(format!("{}: size {s:?} is not a number", self.name)))?,
            None => 0,
        };
        let last_modified = self
            .updated
            .as_deref()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default();
        Ok(ObjectMeta {
            location,
            last_modified,
            size,
            e_tag: self.etag.clone(),
            version: self.generation.clone(),
        })
    }

    fn put_result(&self) -> PutResult {
        PutResult {
            e_tag: self.etag.clone(),
            version: self.generation.clone(),
            extensions: Default::default(),
        }
    }
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct ObjectList {
    #[serde(default)]
    items: Vec<ObjectResource>,
    #[serde(default)]
    prefixes: Vec<String>,
    #[serde(default)]
    next_page_token: Option<String>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct RewriteResponse {
    done: bool,
    #[serde(default)]
    rewrite_token: Option<String>,
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    /// Scheme and host (and port), no trailing `/`: `https://storage.googleapis.com`.
    base: String,
    bucket: String,
    /// None: anonymous (an emulator, as etcdbrctl does for one).
    auth: Option<GcpCredentialProvider>,
    retry: RetryConfig,
}

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

impl Inner {
    fn object_url(&self, name: &str) -> String {
        format!(
            "{}/storage/v1/b/{}/o/{}",
            self.base,
            encode(&self.bucket),
            encode(name)
        )
    }

    fn url(&self, s: &str, query: &[(&str, &str)]) -> Result<Url> {
        let mut u = Url::parse(s).map_err(|e| generic(format!("{s}: {e}")))?;
        if !query.is_empty() {
            let mut q = u.query_pairs_mut();
            for (k, v) in query {
                q.append_pair(k, v);
            }
        }
        Ok(u)
    }

    async fn authorize(&self, req: reqwest::RequestBuilder) -> Result<reqwest::RequestBuilder> {
        match &self.auth {
            None => Ok(req),
            Some(p) => {
                let c = p.get_credential().await?;
                Ok(if c.bearer.is_empty() {
                    req
                } else {
                    req.bearer_auth(&c.bearer)
                })
            }
        }
    }

    /// Sends a request (rebuilt for every try) until it gets an answer that is not retryable;
    /// returns that answer, success or not. The body is not read.
    async fn send(
        &self,
        method: &Method,
        what: &str,
        build: &(dyn Fn() -> Result<reqwest::RequestBuilder> + Send + Sync),
        attempts: &mut Attempts<'_>,
    ) -> Result<reqwest::Response> {
        loop {
            let req = self.authorize(build()?).await?;
            let detail = match req.send().await {
                Ok(resp) if !retryable(resp.status()) => return Ok(resp),
                Ok(resp) => {
                    let status = resp.status();
                    let body = resp.text().await.unwrap_or_default();
                    format!(
                        "HTTP {status}: {}",
                        body.chars().take(300).collect::<String>()
                    )
                }
                Err(e) => error_chain(&e),
            };
            tracing::debug!(%method, object = what, error = %detail, "GCS request failed; retrying");
            if !attempts.again().await {
                return Err(generic(RequestError {
                    method: method.clone(),
                    what: what.to_string(),
                    detail: format!("{detail} (after {} retries)", attempts.tries),
                }));
            }
        }
    }

    /// Sends a request and reads its whole body, retrying also when the body is cut short.
    /// Returns the status and body of the first answer that is not retryable.
    async fn call(
        &self,
        method: Method,
        what: &str,
        build: &(dyn Fn() -> Result<reqwest::RequestBuilder> + Send + Sync),
    ) -> Result<(StatusCode, Bytes)> {
        let (status, body, _) = self.call_retried(method, what, build).await?;
        Ok((status, body))
    }

    /// [`Inner::call`], also saying whether the request was sent more than once: then a
    /// precondition failure may be the answer to our own earlier, lost, success.
    async fn call_retried(
        &self,
        method: Method,
        what: &str,
        build: &(dyn Fn() -> Result<reqwest::RequestBuilder> + Send + Sync),
    ) -> Result<(StatusCode, Bytes, bool)> {
        let mut attempts = Attempts::new(&self.retry);
        loop {
            let resp = self.send(&method, what, build, &mut attempts).await?;
            let status = resp.status();
            match resp.bytes().await {
                Ok(body) => return Ok((status, body, attempts.tries > 0)),
                Err(e) => {
                    let detail = error_chain(&e);
                    tracing::debug!(%method, object = what, error = %detail, "GCS answer cut short; retrying");
                    if !attempts.again().await {
                        return Err(generic(RequestError {
                            method,
                            what: what.to_string(),
                            detail: format!("reading the answer: {detail}"),
                        }));
                    }
                }
            }
        }
    }

    fn status_error(method: Method, what: &str, status: StatusCode, body: &[u8]) -> HttpError {
        HttpError {
            method,
            what: what.to_string(),
            status,
            body: String::from_utf8_lossy(body).chars().take(500).collect(),
        }
    }

    /// Maps a failed answer about `path` to object_store's errors.
    fn fail(method: Method, path: &Path, status: StatusCode, body: &[u8]) -> Error {
        let e = Self::status_error(method, path.as_ref(), status, body);
        match status {
            StatusCode::NOT_FOUND => Error::NotFound {
                path: path.to_string(),
                source: Box::new(e),
            },
            StatusCode::PRECONDITION_FAILED => Error::Precondition {
                path: path.to_string(),
                source: Box::new(e),
            },
            StatusCode::NOT_MODIFIED => Error::NotModified {
                path: path.to_string(),
                source: Box::new(e),
            },
            _ => generic(e),
        }
    }

    async fn metadata(&self, path: &Path, generation: Option<&str>) -> Result<ObjectMeta> {
        self.resource(path, generation).await?.meta()
    }

    async fn resource(&self, path: &Path, generation: Option<&str>) -> Result<ObjectResource> {
        let url = self.object_url(path.as_ref());
        let query: Vec<(&str, &str)> = generation.map(|g| ("generation", g)).into_iter().collect();
        let u = self.url(&url, &query)?;
        let (status, body) = self
            .call(Method::GET, path.as_ref(), &|| Ok(self.http.get(u.clone())))
            .await?;
        if !status.is_success() {
            return Err(Self::fail(Method::GET, path, status, &body));
        }
        serde_json::from_slice(&body).map_err(|e| generic(format!("{path}: object metadata: {e}")))
    }

    /// After a create-only request that was sent again and failed its precondition: whether
    /// the object there is the one we meant to create (same size and CRC32C), i.e. the first
    /// try succeeded and only its answer was lost.
    async fn is_ours(&self, path: &Path, size: u64, crc32c: &str) -> bool {
        match self.resource(path, None).await {
            Ok(r) => {
                let same = r.size.as_deref() == Some(size.to_string().as_str())
                    && r.crc32c.as_deref() == Some(crc32c);
                tracing::debug!(object = %path, same, "create-only request retried after a lost answer");
                same
            }
            Err(_) => false,
        }
    }

    /// One page of a listing.
    async fn list_page(
        &self,
        prefix: &str,
        delimiter: bool,
        token: Option<&str>,
    ) -> Result<ObjectList> {
        let base = format!("{}/storage/v1/b/{}/o", self.base, encode(&self.bucket));
        let mut query = vec![("prefix", prefix)];
        if delimiter {
            query.push(("delimiter", "/"));
        }
        if let Some(t) = token {
            query.push(("pageToken", t));
        }
        let u = self.url(&base, &query)?;
        let what = format!("list {prefix}");
        let (status, body) = self
            .call(Method::GET, &what, &|| Ok(self.http.get(u.clone())))
            .await?;
        if !status.is_success() {
            return Err(generic(Self::status_error(
                Method::GET,
                &what,
                status,
                &body,
            )));
        }
        serde_json::from_slice(&body).map_err(|e| generic(format!("{what}: {e}")))
    }

    /// A `multipart` upload of one object (metadata and bytes in one request).
    async fn upload(
        &self,
        path: &Path,
        data: Bytes,
        if_generation_match: Option<&str>,
    ) -> Result<ObjectResource> {
        let base = format!(
            "{}/upload/storage/v1/b/{}/o",
            self.base,
            encode(&self.bucket)
        );
        let mut query = vec![("uploadType", "multipart")];
        if let Some(g) = if_generation_match {
            query.push(("ifGenerationMatch", g));
        }
        let u = self.url(&base, &query)?;
        let meta = serde_json::json!({
            "name": path.as_ref(),
            "contentType": "application/octet-stream",
        })
        .to_string();
        let boundary = boundary_for(&data);
        let mut body = Vec::with_capacity(data.len() + meta.len() + 256);
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{meta}\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(&data);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let body = Bytes::from(body);
        let content_type = format!("multipart/related; boundary={boundary}");
        let (status, resp, retried) = self
            .call_retried(Method::POST, path.as_ref(), &|| {
                Ok(self
                    .http
                    .post(u.clone())
                    .header(reqwest::header::CONTENT_TYPE, &content_type)
                    .body(body.clone()))
            })
            .await?;
        if status == StatusCode::PRECONDITION_FAILED
            && retried
            && if_generation_match == Some("0")
            && self
                .is_ours(path, data.len() as u64, &crc32c_b64(&data))
                .await
        {
            return self.resource(path, None).await;
        }
        if !status.is_success() {
            return Err(Self::fail(Method::POST, path, status, &resp));
        }
        serde_json::from_slice(&resp).map_err(|e| generic(format!("{path}: upload answer: {e}")))
    }

    async fn delete(&self, path: &Path) -> Result<()> {
        let u = self.url(&self.object_url(path.as_ref()), &[])?;
        let (status, body) = self
            .call(Method::DELETE, path.as_ref(), &|| {
                Ok(self.http.delete(u.clone()))
            })
            .await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(Self::fail(Method::DELETE, path, status, &body))
        }
    }

    /// `compose`: `dest` becomes the concatenation of `sources` (at most [`MAX_COMPOSE`]).
    async fn compose(&self, sources: &[String], dest: &Path) -> Result<ObjectResource> {
        let url = format!("{}/compose", self.object_url(dest.as_ref()));
        let u = self.url(&url, &[])?;
        let body = serde_json::json!({
            "sourceObjects": sources.iter().map(|n| serde_json::json!({ "name": n })).collect::<Vec<_>>(),
            "destination": { "contentType": "application/octet-stream" },
        })
        .to_string();
        let (status, resp) = self
            .call(Method::POST, dest.as_ref(), &|| {
                Ok(self
                    .http
                    .post(u.clone())
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.clone()))
            })
            .await?;
        if !status.is_success() {
            return Err(Self::fail(Method::POST, dest, status, &resp));
        }
        serde_json::from_slice(&resp).map_err(|e| generic(format!("{dest}: compose answer: {e}")))
    }

    /// `rewriteTo` until done.
    async fn rewrite(&self, from: &Path, to: &Path, create: bool) -> Result<()> {
        let url = format!(
            "{}/rewriteTo/b/{}/o/{}",
            self.object_url(from.as_ref()),
            encode(&self.bucket),
            encode(to.as_ref())
        );
        let mut token: Option<String> = None;
        loop {
            let mut query = Vec::new();
            if create {
                query.push(("ifGenerationMatch", "0"));
            }
            if let Some(t) = &token {
                query.push(("rewriteToken", t.as_str()));
            }
            let u = self.url(&url, &query)?;
            let (status, body, retried) = self
                .call_retried(Method::POST, to.as_ref(), &|| {
                    Ok(self
                        .http
                        .post(u.clone())
                        .header(reqwest::header::CONTENT_TYPE, "application/json")
                        .body("{}"))
                })
                .await?;
            if status == StatusCode::NOT_FOUND {
                return Err(Self::fail(Method::POST, from, status, &body));
            }
            if status == StatusCode::PRECONDITION_FAILED && create && retried {
                // Ours if it is the source's content (size and CRC32C).
                if let Ok(src) = self.resource(from, None).await
                    && let (Some(size), Some(crc)) = (src.size.as_deref(), src.crc32c.as_deref())
                    && let Ok(size) = size.parse::<u64>()
                    && self.is_ours(to, size, crc).await
                {
                    return Ok(());
                }
            }
            if status == StatusCode::PRECONDITION_FAILED && create {
                return Err(Error::AlreadyExists {
                    path: to.to_string(),
                    source: Box::new(Self::status_error(Method::POST, to.as_ref(), status, &body)),
                });
            }
            if !status.is_success() {
                return Err(Self::fail(Method::POST, to, status, &body));
            }
            let r: RewriteResponse = serde_json::from_slice(&body)
                .map_err(|e| generic(format!("{to}: rewrite answer: {e}")))?;
            if r.done {
                return Ok(());
            }
            token = r.rewrite_token;
            if token.is_none() {
                return Err(generic(format!(
                    "{to}: rewrite not done and no rewriteToken"
                )));
            }
        }
    }

    /// Starts a media download of `range` of one generation.
    async fn media(
        &self,
        path: &Path,
        generation: &str,
        range: &Range<u64>,
        size: u64,
        attempts: &mut Attempts<'_>,
    ) -> Result<reqwest::Response> {
        let u = self.url(
            &self.object_url(path.as_ref()),
            &[("alt", "media"), ("generation", generation)],
        )?;
        let whole = range.start == 0 && range.end == size;
        let header = format!("bytes={}-{}", range.start, range.end.saturating_sub(1));
        let resp = self
            .send(
                &Method::GET,
                path.as_ref(),
                &|| {
                    let r = self.http.get(u.clone());
                    Ok(if whole {
                        r
                    } else {
                        r.header(reqwest::header::RANGE, &header)
                    })
                },
                attempts,
            )
            .await?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.bytes().await.unwrap_or_default();
            return Err(Self::fail(Method::GET, path, status, &body));
        }
        if !whole && status != StatusCode::PARTIAL_CONTENT {
            return Err(generic(format!(
                "{path}: asked for bytes {}..{} and got HTTP {status} instead of 206",
                range.start, range.end
            )));
        }
        Ok(resp)
    }
}

/// A multipart boundary that does not occur in `data`.
fn boundary_for(data: &[u8]) -> String {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0x5eed);
    boundary_from(data, seed)
}

fn boundary_from(data: &[u8], mut n: u64) -> String {
    loop {
        let b = format!("etcd-restore-{n:016x}");
        if !data.windows(b.len()).any(|w| w == b.as_bytes()) {
            return b;
        }
        n = n
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
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

/// Resolves a requested range against the object's size.
fn resolve_range(range: Option<&GetRange>, size: u64) -> Result<Range<u64>> {
    let r = match range {
        None => 0..size,
        Some(GetRange::Bounded(r)) => r.start..r.end.min(size),
        Some(GetRange::Offset(o)) => *o..size,
        Some(GetRange::Suffix(n)) => size.saturating_sub(*n)..size,
    };
    if r.start > r.end || (r.start >= size && size > 0 && range.is_some()) {
        return Err(generic(format!(
            "range {range:?} is outside an object of {size} bytes"
        )));
    }
    Ok(r)
}

/// The bytes of `range`, resumed after a connection that breaks or a body cut short.
fn media_stream(
    inner: Arc<Inner>,
    path: Path,
    generation: String,
    range: Range<u64>,
    size: u64,
    first: reqwest::Response,
) -> BoxStream<'static, Result<Bytes>> {
    struct State {
        inner: Arc<Inner>,
        path: Path,
        generation: String,
        pos: u64,
        end: u64,
        size: u64,
        resp: Option<reqwest::Response>,
        resumes: usize,
        done: bool,
    }
    let state = State {
        inner,
        path,
        generation,
        pos: range.start,
        end: range.end,
        size,
        resp: Some(first),
        resumes: 0,
        done: false,
    };
    stream::unfold(state, |mut s| async move {
        if s.done {
            return None;
        }
        loop {
            let broken = match s.resp.as_mut() {
                Some(resp) => match resp.chunk().await {
                    Ok(Some(chunk)) => {
                        let room = s.end.saturating_sub(s.pos);
                        let chunk = if (chunk.len() as u64) > room {
                            chunk.slice(..usize::try_from(room).unwrap_or(usize::MAX))
                        } else {
                            chunk
                        };
                        if chunk.is_empty() {
                            continue;
                        }
                        s.pos += chunk.len() as u64;
                        return Some((Ok(chunk), s));
                    }
                    Ok(None) if s.pos >= s.end => return None,
                    Ok(None) => format!(
                        "the answer ended at byte {} of {}",
                        s.pos, s.end
                    ),
                    Err(e) => error_chain(&e),
                },
                None => "no answer".to_string(),
            };
            s.resp = None;
            // Resume from where the body broke, with a fresh retry budget per break but a
            // bound on breaks: a server that always cuts short must not loop forever.
            s.resumes += 1;
            let mut attempts = Attempts::new(&s.inner.retry);
            attempts.tries = s.resumes.saturating_sub(1);
            tracing::debug!(object = %s.path, at = s.pos, error = %broken, "GCS download broke; resuming");
            if !attempts.again().await {
                s.done = true;
                let e = generic(RequestError {
                    method: Method::GET,
                    what: s.path.to_string(),
                    detail: format!("{broken} (resumed {} times)", s.resumes - 1),
                });
                return Some((Err(e), s));
            }
            let rest = s.pos..s.end;
            match s
                .inner
                .media(&s.path, &s.generation, &rest, s.size, &mut attempts)
                .await
            {
                Ok(r) => s.resp = Some(r),
                Err(e) => {
                    s.done = true;
                    return Some((Err(e), s));
                }
            }
        }
    })
    .boxed()
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

/// A multipart upload as etcdbrctl does it on GCS: parts are objects `<name>/<%010d>`,
/// composed into `<name>` at the end and then deleted.
#[derive(Debug)]
struct ComposeUpload {
    inner: Arc<Inner>,
    dest: Path,
    parts: usize,
}

impl ComposeUpload {
    fn part_name(&self, n: usize) -> String {
        format!("{}/{:010}", self.dest.as_ref(), n)
    }

    async fn delete_parts(&self, names: &[String]) {
        for n in names {
            if let Ok(p) = Path::parse(n)
                && let Err(e) = self.inner.delete(&p).await
                && !matches!(e, Error::NotFound { .. })
            {
                tracing::warn!(object = %n, error = %e, "could not remove an upload part");
            }
        }
    }
}

#[async_trait]
impl MultipartUpload for ComposeUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        self.parts += 1;
        let name = self.part_name(self.parts);
        let inner = self.inner.clone();
        Box::pin(async move {
            let path = Path::parse(&name).map_err(|source| Error::InvalidPath { source })?;
            inner
                .upload(&path, Bytes::from(data), None)
                .await
                .map(|_| ())
        })
    }

    async fn complete(&mut self) -> Result<PutResult> {
        if self.parts == 0 {
            let r = self.inner.upload(&self.dest, Bytes::new(), None).await?;
            return Ok(r.put_result());
        }
        let parts: Vec<String> = (1..=self.parts).map(|n| self.part_name(n)).collect();
        // Rounds of at most MAX_COMPOSE sources; intermediate objects are named after the
        // round and are deleted with the parts.
        let mut level = parts.clone();
        let mut made = Vec::new();
        let mut round = 0;
        let result = loop {
            if level.len() <= MAX_COMPOSE {
                break self.inner.compose(&level, &self.dest).await;
            }
            round += 1;
            let mut next = Vec::new();
            for (i, group) in level.chunks(MAX_COMPOSE).enumerate() {
                let name = format!("{}/c{round}-{i:06}", self.dest.as_ref());
                let path = Path::parse(&name).map_err(|source| Error::InvalidPath { source })?;
                if let Err(e) = self.inner.compose(group, &path).await {
                    self.delete_parts(&made).await;
                    self.delete_parts(&parts).await;
                    return Err(e);
                }
                made.push(name.clone());
                next.push(name);
            }
            level = next;
        };
        self.delete_parts(&made).await;
        self.delete_parts(&parts).await;
        result.map(|r| r.put_result())
    }

    async fn abort(&mut self) -> Result<()> {
        let parts: Vec<String> = (1..=self.parts).map(|n| self.part_name(n)).collect();
        self.delete_parts(&parts).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_encoded_as_one_segment() {
        assert_eq!(encode("v2/Full-1 x+y"), "v2%2FFull-1%20x%2By");
        assert_eq!(encode("a~b_c.d-e"), "a~b_c.d-e");
    }

    #[test]
    fn ranges_resolve_against_the_size() {
        assert_eq!(resolve_range(None, 10).unwrap(), 0..10);
        assert_eq!(resolve_range(None, 0).unwrap(), 0..0);
        assert_eq!(
            resolve_range(Some(&GetRange::Bounded(2..5)), 10).unwrap(),
            2..5
        );
        assert_eq!(
            resolve_range(Some(&GetRange::Bounded(2..50)), 10).unwrap(),
            2..10
        );
        assert_eq!(
            resolve_range(Some(&GetRange::Offset(4)), 10).unwrap(),
            4..10
        );
        assert_eq!(
            resolve_range(Some(&GetRange::Suffix(3)), 10).unwrap(),
            7..10
        );
        assert!(resolve_range(Some(&GetRange::Offset(10)), 10).is_err());
    }

    #[test]
    fn boundary_never_occurs_in_the_data() {
        let b = boundary_from(b"", 7);
        let data = format!("xx{b}yy");
        let b2 = boundary_from(data.as_bytes(), 7);
        assert_ne!(b, b2);
        assert!(!data.contains(&b2));
        assert!(!boundary_for(data.as_bytes()).is_empty());
    }

    #[test]
    fn crc32c_in_gcs_form() {
        // GCS's documented value for "hello world" is yZRlqg== (CRC32C 0xc99465aa).
        assert_eq!(crc32c_b64(b"hello world"), "yZRlqg==");
        // fake-gcs-server's answer for an object holding "hello".
        assert_eq!(crc32c_b64(b"hello"), "mnG7TA==");
    }

    #[test]
    fn plain_http_needs_allow_http() {
        let r = RetryConfig::default();
        assert!(GcsJson::new(Some("http://127.0.0.1:1"), "b", None, r.clone(), false).is_err());
        assert!(GcsJson::new(Some("http://127.0.0.1:1/"), "b", None, r, true).is_ok());
    }
}
