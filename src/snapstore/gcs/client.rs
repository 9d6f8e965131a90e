//! The JSON API's requests: authorized, retried with the store's backoff (also when a body is
//! cut short), and their failures mapped to object_store's errors.

use std::ops::Range;

use bytes::Bytes;
use object_store::gcp::GcpCredentialProvider;
use object_store::path::Path;
use object_store::{Error, ObjectMeta, Result, RetryConfig};
use reqwest::{Method, StatusCode, Url};

use super::error::{HttpError, RequestError, generic};
use super::resource::{ObjectList, ObjectResource, RewriteResponse, crc32c_b64};
use crate::snapstore::retry::{Attempts, error_chain, retryable};

/// GCS's limit of source objects in one compose request.
pub(super) const MAX_COMPOSE: usize = 32;

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

#[derive(Debug)]
pub(super) struct Inner {
    pub(super) http: reqwest::Client,
    /// Scheme and host (and port), no trailing `/`: `https://storage.googleapis.com`.
    pub(super) base: String,
    pub(super) bucket: String,
    /// None: anonymous (an emulator, as etcdbrctl does for one).
    pub(super) auth: Option<GcpCredentialProvider>,
    pub(super) retry: RetryConfig,
}

impl Inner {
    pub(super) fn object_url(&self, name: &str) -> String {
        format!(
            "{}/storage/v1/b/{}/o/{}",
            self.base,
            encode(&self.bucket),
            encode(name)
        )
    }

    pub(super) fn url(&self, s: &str, query: &[(&str, &str)]) -> Result<Url> {
        let mut u = Url::parse(s).map_err(|e| generic(format!("{s}: {e}")))?;
        if !query.is_empty() {
            let mut q = u.query_pairs_mut();
            for (k, v) in query {
                q.append_pair(k, v);
            }
        }
        Ok(u)
    }

    pub(super) async fn authorize(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder> {
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
    pub(super) async fn send(
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
    pub(super) async fn call(
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
    pub(super) async fn call_retried(
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

    pub(super) fn status_error(
        method: Method,
        what: &str,
        status: StatusCode,
        body: &[u8],
    ) -> HttpError {
        HttpError {
            method,
            what: what.to_string(),
            status,
            body: String::from_utf8_lossy(body).chars().take(500).collect(),
        }
    }

    /// Maps a failed answer about `path` to object_store's errors.
    pub(super) fn fail(method: Method, path: &Path, status: StatusCode, body: &[u8]) -> Error {
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

    pub(super) async fn metadata(
        &self,
        path: &Path,
        generation: Option<&str>,
    ) -> Result<ObjectMeta> {
        self.resource(path, generation).await?.meta()
    }

    pub(super) async fn resource(
        &self,
        path: &Path,
        generation: Option<&str>,
    ) -> Result<ObjectResource> {
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
    pub(super) async fn is_ours(&self, path: &Path, size: u64, crc32c: &str) -> bool {
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
    pub(super) async fn list_page(
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
    pub(super) async fn upload(
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

    pub(super) async fn delete(&self, path: &Path) -> Result<()> {
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
    pub(super) async fn compose(&self, sources: &[String], dest: &Path) -> Result<ObjectResource> {
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
    pub(super) async fn rewrite(&self, from: &Path, to: &Path, create: bool) -> Result<()> {
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
    pub(super) async fn media(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_encoded_as_one_segment() {
        assert_eq!(encode("v2/Full-1 x+y"), "v2%2FFull-1%20x%2By");
        assert_eq!(encode("a~b_c.d-e"), "a~b_c.d-e");
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
}
