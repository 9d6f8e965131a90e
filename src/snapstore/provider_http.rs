//! What the provider calls this tool sends itself ([`super::versions`] for S3,
//! [`super::azure_list`] for Azure, [`super::gcs_external`]'s token exchange) have in common:
//! the HTTP client with the store's TLS settings, a request object_store's authorizer signed,
//! the answer's XML and failure, and the S3/Azure tag list.

use object_store::client::HttpRequestBody;
use reqwest::{StatusCode, Url};

use super::retry::error_chain;

/// Why a provider listing failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ListError(pub String);

/// Builds the reqwest client for provider calls with the store's TLS settings.
pub(crate) fn http_client(
    allow_http: bool,
    allow_invalid_certificates: bool,
    trusted_ca_pem: Option<&str>,
) -> Result<reqwest::Client, String> {
    let mut b = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(10))
        .read_timeout(std::time::Duration::from_secs(60))
        .https_only(!allow_http)
        .user_agent(concat!("etcd-restore/", env!("CARGO_PKG_VERSION")));
    if allow_invalid_certificates {
        b = b.tls_danger_accept_invalid_certs(true);
    }
    if let Some(pem) = trusted_ca_pem {
        let cert = reqwest::Certificate::from_pem(pem.as_bytes())
            .map_err(|e| format!("trustedCaCert: {}", error_chain(&e)))?;
        b = b.add_root_certificate(cert);
    }
    b.build()
        .map_err(|e| format!("HTTP client: {}", error_chain(&e)))
}

/// The reqwest form of a request object_store's authorizer signed (it may have added query
/// pairs, a SAS token, to the URI).
pub(crate) fn signed(
    http: &reqwest::Client,
    req: &http::Request<HttpRequestBody>,
) -> Result<reqwest::RequestBuilder, String> {
    let url = Url::parse(&req.uri().to_string()).map_err(|e| format!("{}: {e}", req.uri()))?;
    Ok(http
        .request(req.method().clone(), url)
        .headers(req.headers().clone()))
}

pub(crate) fn xml<T: serde::de::DeserializeOwned>(what: &str, body: &[u8]) -> Result<T, ListError> {
    quick_xml::de::from_reader(body).map_err(|e| ListError(format!("{what}: bad answer: {e}")))
}

pub(crate) fn http_fail(what: &str, status: StatusCode, body: &[u8]) -> ListError {
    let text: String = String::from_utf8_lossy(body).chars().take(300).collect();
    ListError(format!("{what}: HTTP {status}: {text}"))
}

/// An S3 `TagSet` (GetObjectTagging) or Azure `Tags` element's list (List Blobs).
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct TagSet {
    #[serde(default, rename = "Tag")]
    pub(crate) tags: Vec<Tag>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Tag {
    pub(crate) key: String,
    #[serde(default)]
    pub(crate) value: String,
}
