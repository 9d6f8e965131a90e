//! Listing with versions, tags and immutability: the provider calls object_store has no API
//! for, sent by this tool itself (signed with object_store's credentials, retried with
//! [`super::retry`]) and folded with etcd-backup-restore's rules ([`super::exclude`]).
//!
//! S3 here; Azure in [`super::azure_list`]; GCS through its JSON API client
//! ([`super::gcs::GcsJson::list_detailed`]).

use std::sync::Arc;

use futures::stream::{self, StreamExt};
use object_store::RetryConfig;
use object_store::aws::{AwsAuthorizer, AwsCredentialProvider};
use object_store::client::HttpRequestBody;
use reqwest::{StatusCode, Url};

use super::exclude::{self, ListedObject, S3Key, S3Version, S3VersionFold};
use super::provider_http::{TagSet, http_fail, signed, xml};
use super::retry::{self, error_chain};

// The listing error's public name; the client is reached here by store.rs.
pub use super::provider_http::ListError;
pub(crate) use super::provider_http::http_client;

/// Tag reads in flight at once (only keys with a delete marker need one).
const TAG_CONCURRENCY: usize = 8;

/// A provider client for listings object_store cannot do.
#[derive(Debug, Clone)]
pub(crate) enum Lister {
    S3(Arc<S3Raw>),
    Azure(Arc<super::azure_list::AzureRaw>),
    Gcs(super::gcs::GcsJson),
}

/// An S3 bucket's versioning and object-lock state and its `ListObjectVersions`.
#[derive(Debug)]
pub(crate) struct S3Raw {
    pub(crate) http: reqwest::Client,
    /// The bucket's URL, no trailing `/` (`http://127.0.0.1:5000/bucket`).
    pub(crate) bucket_url: String,
    pub(crate) region: String,
    pub(crate) credentials: AwsCredentialProvider,
    pub(crate) retry: RetryConfig,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct VersioningConfiguration {
    #[serde(default)]
    status: Option<String>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ObjectLockConfiguration {
    #[serde(default)]
    object_lock_enabled: Option<String>,
    #[serde(default)]
    rule: Option<LockRule>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct LockRule {
    #[serde(default)]
    default_retention: Option<DefaultRetention>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DefaultRetention {
    #[serde(default)]
    days: Option<i64>,
}

/// A bucket's Object Lock configuration.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ObjectLock {
    pub(crate) enabled: bool,
    /// A default retention rule applies to new versions (in days or years).
    pub(crate) default_retention: bool,
    pub(crate) days: Option<i64>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListVersionsResult {
    #[serde(default)]
    is_truncated: bool,
    #[serde(default)]
    next_key_marker: Option<String>,
    #[serde(default)]
    next_version_id_marker: Option<String>,
    #[serde(default, rename = "Version")]
    versions: Vec<VersionEntry>,
    #[serde(default, rename = "DeleteMarker")]
    delete_markers: Vec<MarkerEntry>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct VersionEntry {
    key: String,
    version_id: String,
    #[serde(default)]
    is_latest: bool,
    last_modified: String,
    #[serde(default)]
    size: u64,
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct MarkerEntry {
    key: String,
    #[serde(default)]
    version_id: String,
    #[serde(default)]
    is_latest: bool,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Tagging {
    #[serde(default)]
    tag_set: TagSet,
}

/// Percent-encodes an object key for a URL path (keeps `/`).
fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl S3Raw {
    /// A signed GET (signed again for every try, the signature carries the time).
    async fn get(&self, url: &Url, what: &str) -> Result<(StatusCode, bytes::Bytes), ListError> {
        self.send(http::Method::GET, url, what).await
    }

    async fn send(
        &self,
        method: http::Method,
        url: &Url,
        what: &str,
    ) -> Result<(StatusCode, bytes::Bytes), ListError> {
        retry::call(&self.retry, what, || async {
            let cred = self
                .credentials
                .get_credential()
                .await
                .map_err(|e| format!("{what}: credentials: {}", error_chain(&e)))?;
            let mut req = http::Request::builder()
                .method(method.clone())
                .uri(url.as_str())
                .body(HttpRequestBody::empty())
                .map_err(|e| format!("{what}: {e}"))?;
            AwsAuthorizer::new(&cred, "s3", &self.region)
                .try_authorize(&mut req, None)
                .map_err(|e| format!("{what}: signing: {}", error_chain(&e)))?;
            signed(&self.http, &req)
        })
        .await
        .map(|(status, _, body)| (status, body))
        .map_err(ListError)
    }

    fn url(&self, path: &str, query: &[(&str, &str)]) -> Result<Url, ListError> {
        let mut u = Url::parse(&format!("{}{path}", self.bucket_url))
            .map_err(|e| ListError(format!("{}{path}: {e}", self.bucket_url)))?;
        if !query.is_empty() {
            let mut q = u.query_pairs_mut();
            for (k, v) in query {
                q.append_pair(k, v);
            }
        }
        Ok(u)
    }

    /// `GetBucketVersioning`: whether the status is `Enabled` (upstream's only test).
    pub(crate) async fn versioning_enabled(&self) -> Result<bool, ListError> {
        let what = "GetBucketVersioning (needs s3:GetBucketVersioning, as etcdbrctl does)";
        let (status, body) = self
            .get(&self.url("/", &[("versioning", "")])?, what)
            .await?;
        if !status.is_success() {
            return Err(http_fail(what, status, &body));
        }
        let v: VersioningConfiguration = xml(what, &body)?;
        Ok(v.status.as_deref() == Some("Enabled"))
    }

    /// `GetObjectLockConfiguration`: whether Object Lock is enabled and its default retention
    /// in days. A bucket without a configuration answers 404: not enabled.
    pub(crate) async fn object_lock(&self) -> Result<ObjectLock, ListError> {
        let what = "GetObjectLockConfiguration (needs s3:GetBucketObjectLockConfiguration)";
        let (status, body) = self
            .get(&self.url("/", &[("object-lock", "")])?, what)
            .await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(ObjectLock::default());
        }
        if !status.is_success() {
            return Err(http_fail(what, status, &body));
        }
        let c: ObjectLockConfiguration = xml(what, &body)?;
        let rule = c.rule.and_then(|r| r.default_retention);
        Ok(ObjectLock {
            enabled: c.object_lock_enabled.as_deref() == Some("Enabled"),
            days: rule.as_ref().and_then(|d| d.days),
            default_retention: rule.is_some(),
        })
    }

    /// Deletes every version and delete marker of exactly `key` except the current one,
    /// by version id, one `ListObjectVersions` page at a time. A version its retention
    /// still protects (403) is kept. Returns (deleted, kept).
    pub(crate) async fn purge_noncurrent(&self, key: &str) -> Result<(u64, u64), ListError> {
        let (mut deleted, mut kept) = (0, 0);
        let mut markers: Option<(String, String)> = None;
        loop {
            let page = self.versions_page(key, markers.as_ref()).await?;
            let old = page
                .versions
                .iter()
                .filter(|v| v.key == key && !v.is_latest)
                .map(|v| &v.version_id)
                .chain(
                    page.delete_markers
                        .iter()
                        .filter(|m| m.key == key && !m.is_latest)
                        .map(|m| &m.version_id),
                );
            for id in old {
                let what = format!("DeleteObject {key} (version {id})");
                let url = self.url(&format!("/{}", encode_key(key)), &[("versionId", id)])?;
                match self.send(http::Method::DELETE, &url, &what).await? {
                    (s, _) if s.is_success() => deleted += 1,
                    (StatusCode::FORBIDDEN, _) => kept += 1,
                    (s, body) => return Err(http_fail(&what, s, &body)),
                }
            }
            match (page.is_truncated, page.next_key_marker) {
                (true, Some(k)) => {
                    markers = Some((k, page.next_version_id_marker.unwrap_or_default()))
                }
                _ => return Ok((deleted, kept)),
            }
        }
    }

    /// The default retention in days when object lock is enabled with one. Upstream logs a
    /// failure and lists without immutability; so do we.
    pub(crate) async fn retention_days(&self) -> Option<i64> {
        match self.object_lock().await.map(|l| (l.enabled, l.days)) {
            Ok((false, _)) => {
                tracing::warn!(
                    "bucket versioning is enabled but object lock is not: snapshots are not immutable"
                );
                None
            }
            Ok((true, None)) => {
                tracing::warn!(
                    "object lock is enabled without a default retention in days: no immutability end is known"
                );
                None
            }
            Ok((true, days)) => days,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the object lock configuration");
                None
            }
        }
    }

    /// `GetObjectTagging` of one version: whether it carries the exclude tag. An error counts
    /// as "not tagged", as in upstream's `IsSnapshotMarkedToBeIgnored`.
    async fn excluded(&self, key: &str, version_id: &str) -> bool {
        let what = format!("GetObjectTagging {key} (version {version_id})");
        let url = match self.url(
            &format!("/{}", encode_key(key)),
            &[("tagging", ""), ("versionId", version_id)],
        ) {
            Ok(u) => u,
            Err(_) => return false,
        };
        match self.get(&url, &what).await {
            Ok((status, body)) if status.is_success() => match xml::<Tagging>(&what, &body) {
                Ok(t) => t
                    .tag_set
                    .tags
                    .iter()
                    .any(|t| exclude::is_exclude_entry(&t.key, &t.value)),
                Err(e) => {
                    tracing::warn!(error = %e, "treating the snapshot as not excluded");
                    false
                }
            },
            Ok((status, body)) => {
                tracing::warn!(error = %http_fail(&what, status, &body), "treating the snapshot as not excluded");
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "treating the snapshot as not excluded");
                false
            }
        }
    }

    /// One `ListObjectVersions` page.
    async fn versions_page(
        &self,
        prefix: &str,
        markers: Option<&(String, String)>,
    ) -> Result<ListVersionsResult, ListError> {
        let mut query = vec![("versions", ""), ("prefix", prefix)];
        if let Some((k, v)) = markers {
            query.push(("key-marker", k));
            if !v.is_empty() {
                query.push(("version-id-marker", v));
            }
        }
        let what = format!("ListObjectVersions {prefix}");
        let (status, body) = self.get(&self.url("/", &query)?, &what).await?;
        if !status.is_success() {
            return Err(http_fail(&what, status, &body));
        }
        xml(&what, &body)
    }

    /// The keys below `prefix` as upstream's versioned `List` sees them, handed to `emit` a
    /// page at a time: folded to their oldest version, withdrawn keys dropped (or marked with
    /// `include_excluded`). The immutability end needs the name's creation time: the caller's.
    pub(crate) async fn list_versioned(
        &self,
        prefix: &str,
        include_excluded: bool,
        emit: &mut (dyn FnMut(ListedObject) + Send),
    ) -> Result<(), ListError> {
        let mut fold = S3VersionFold::default();
        let mut markers: Option<(String, String)> = None;
        loop {
            let page = self.versions_page(prefix, markers.as_ref()).await?;
            for v in page.versions {
                let last_modified_ms = chrono::DateTime::parse_from_rfc3339(&v.last_modified)
                    .map(|t| t.timestamp_millis())
                    .map_err(|e| {
                        ListError(format!(
                            "{}: LastModified {:?}: {e}",
                            v.key, v.last_modified
                        ))
                    })?;
                fold.version(
                    &v.key,
                    S3Version {
                        version_id: v.version_id,
                        last_modified_ms,
                        size: v.size,
                    },
                );
            }
            for m in page.delete_markers {
                fold.delete_marker(&m.key);
            }
            let next = match (page.is_truncated, page.next_key_marker) {
                (true, Some(k)) => Some((k, page.next_version_id_marker.unwrap_or_default())),
                (true, None) => {
                    return Err(ListError(format!(
                        "ListObjectVersions {prefix}: a truncated page without NextKeyMarker"
                    )));
                }
                (false, _) => None,
            };
            let done = fold.complete(next.as_ref().map(|(k, _)| k.as_str()));
            let resolved = stream::iter(done)
                .map(|(key, k)| self.resolve(key, k))
                .buffered(TAG_CONCURRENCY)
                .collect::<Vec<_>>()
                .await;
            for (key, k, excluded) in resolved {
                let Some(oldest) = k.oldest else { continue };
                if excluded && !include_excluded {
                    tracing::info!(object = %crate::show::name(&key), version = %oldest.version_id, "snapshot withdrawn by its exclude tag");
                    continue;
                }
                emit(ListedObject {
                    key,
                    size: oldest.size,
                    version: Some(oldest.version_id),
                    immutable_until: None,
                    excluded,
                });
            }
            match next {
                Some(n) => markers = Some(n),
                None => return Ok(()),
            }
        }
    }

    async fn resolve(&self, key: String, k: S3Key) -> (String, S3Key, bool) {
        let excluded = match (&k.oldest, exclude::s3_needs_tags(&k)) {
            (Some(v), true) => self.excluded(&key, &v.version_id).await,
            _ => false,
        };
        (key, k, excluded)
    }
}
