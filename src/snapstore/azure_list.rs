//! Azure Blob listing with blob index tags, versions and immutability policies
//! (`include=metadata,tags,versions,immutabilitypolicy`), as etcd-backup-restore v0.43's
//! `ABSSnapStore.List` asks for them (`pkg/snapstore/abs_snapstore.go`); object_store's
//! listing asks for none of them.

use object_store::RetryConfig;
use object_store::azure::{AzureAuthorizer, AzureCredentialProvider};
use object_store::client::HttpRequestBody;
use reqwest::Url;

use super::exclude::{self, ListedObject};
use super::provider_http::{ListError, TagSet, http_fail, signed, xml};
use super::retry::{self, error_chain};

/// A container's blob listing with tags and versions.
#[derive(Debug)]
pub(crate) struct AzureRaw {
    pub(crate) http: reqwest::Client,
    /// The container's URL, no trailing `/`.
    pub(crate) container_url: String,
    pub(crate) account: String,
    pub(crate) credentials: AzureCredentialProvider,
    pub(crate) retry: RetryConfig,
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EnumerationResults {
    #[serde(default)]
    blobs: Blobs,
    #[serde(default)]
    next_marker: Option<String>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct Blobs {
    #[serde(default, rename = "Blob")]
    blobs: Vec<Blob>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Blob {
    name: String,
    #[serde(default)]
    properties: Properties,
    #[serde(default)]
    tags: Option<Tags>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct Properties {
    #[serde(default, rename = "Content-Length")]
    content_length: u64,
    /// RFC 1123 (`ImmutabilityPolicyExpiresOn` in the Go SDK).
    #[serde(default, rename = "ImmutabilityPolicyUntilDate")]
    immutability_until: Option<String>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Tags {
    #[serde(default)]
    tag_set: TagSet,
}

fn parse_time(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc2822(s)
        .or_else(|_| chrono::DateTime::parse_from_rfc3339(s))
        .map(|t| t.timestamp())
        .ok()
}

impl AzureRaw {
    async fn page(
        &self,
        prefix: &str,
        marker: Option<&str>,
    ) -> Result<EnumerationResults, ListError> {
        let mut url = Url::parse(&self.container_url)
            .map_err(|e| ListError(format!("{}: {e}", self.container_url)))?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("restype", "container")
                .append_pair("comp", "list")
                .append_pair("prefix", prefix)
                .append_pair("include", "metadata,tags,versions,immutabilitypolicy");
            if let Some(m) = marker {
                q.append_pair("marker", m);
            }
        }
        let what = format!("List Blobs {prefix} (include=tags,versions)");
        let (_, body) = self.send(http::Method::GET, &url, &what).await?;
        xml(&what, &body)
    }

    /// One request signed with the container's credentials, under the store's retry policy;
    /// a status other than success is an error naming `what`.
    async fn send(
        &self,
        method: http::Method,
        url: &Url,
        what: &str,
    ) -> Result<(reqwest::header::HeaderMap, bytes::Bytes), ListError> {
        let (status, headers, body) = retry::call(&self.retry, what, || async {
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
            AzureAuthorizer::new(&cred, &self.account)
                .try_authorize(&mut req)
                .map_err(|e| format!("{what}: signing: {}", error_chain(&e)))?;
            signed(&self.http, &req)
        })
        .await
        .map_err(ListError)?;
        if !status.is_success() {
            return Err(http_fail(what, status, &body));
        }
        Ok((headers, body))
    }

    /// Whether the container is immutable (a time-based policy, or version-level WORM):
    /// then a temporary blob could not be deleted (Get Container Properties).
    pub(crate) async fn immutable(&self) -> Result<bool, ListError> {
        let mut url = Url::parse(&self.container_url)
            .map_err(|e| ListError(format!("{}: {e}", self.container_url)))?;
        url.query_pairs_mut().append_pair("restype", "container");
        let what = "Get Container Properties";
        let (headers, _) = self.send(http::Method::HEAD, &url, what).await?;
        let set = |h: &str| headers.get(h).and_then(|v| v.to_str().ok()) == Some("true");
        Ok(set("x-ms-has-immutability-policy")
            || set("x-ms-immutable-storage-with-versioning-enabled"))
    }

    /// Every listed item below `prefix` (every version, as upstream lists them), a page at a
    /// time; those tagged `x-etcd-snapshot-exclude=true` dropped (or marked).
    pub(crate) async fn list(
        &self,
        prefix: &str,
        include_excluded: bool,
        emit: &mut (dyn FnMut(ListedObject) + Send),
    ) -> Result<(), ListError> {
        let mut marker: Option<String> = None;
        loop {
            let page = self.page(prefix, marker.as_deref()).await?;
            for b in page.blobs.blobs {
                let excluded = b.tags.as_ref().is_some_and(|t| {
                    t.tag_set
                        .tags
                        .iter()
                        .any(|t| exclude::is_exclude_entry(&t.key, &t.value))
                });
                if excluded && !include_excluded {
                    tracing::info!(object = %crate::show::name(&b.name), "snapshot withdrawn by its exclude tag");
                    continue;
                }
                emit(ListedObject {
                    immutable_until: b
                        .properties
                        .immutability_until
                        .as_deref()
                        .and_then(parse_time),
                    key: b.name,
                    size: b.properties.content_length,
                    // Upstream reads the blob by name (the current version).
                    version: None,
                    excluded,
                });
            }
            match page.next_marker.filter(|m| !m.is_empty()) {
                Some(m) => marker = Some(m),
                None => return Ok(()),
            }
        }
    }
}
