//! The JSON API's resources (the fields used here) and GCS's form of a CRC32C.

use chrono::{DateTime, Utc};
use object_store::path::Path;
use object_store::{Error, ObjectMeta, PutResult, Result};

use super::error::generic;

/// The JSON API's object resource (the fields used here).
#[derive(Debug, serde::Deserialize)]
pub(super) struct ObjectResource {
    pub(super) name: String,
    #[serde(default)]
    pub(super) size: Option<String>,
    #[serde(default)]
    pub(super) updated: Option<String>,
    #[serde(default)]
    pub(super) etag: Option<String>,
    #[serde(default)]
    pub(super) generation: Option<String>,
    /// Base64 of the big-endian CRC32C of the content.
    #[serde(default)]
    pub(super) crc32c: Option<String>,
    /// Custom metadata (etcd-backup-restore's exclude entry, [`crate::snapstore::exclude`]).
    #[serde(default)]
    pub(super) metadata: Option<std::collections::HashMap<String, String>>,
    /// RFC 3339: the end of the bucket retention policy for this object.
    #[serde(default, rename = "retentionExpirationTime")]
    pub(super) retention_expiration_time: Option<String>,
}

/// GCS's form of a CRC32C: base64 of the big-endian value.
pub(super) fn crc32c_b64(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(crc32c::crc32c(data).to_be_bytes())
}

impl ObjectResource {
    pub(super) fn meta(&self) -> Result<ObjectMeta> {
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

    pub(super) fn put_result(&self) -> PutResult {
        PutResult {
            e_tag: self.etag.clone(),
            version: self.generation.clone(),
            extensions: Default::default(),
        }
    }
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ObjectList {
    #[serde(default)]
    pub(super) items: Vec<ObjectResource>,
    #[serde(default)]
    pub(super) prefixes: Vec<String>,
    #[serde(default)]
    pub(super) next_page_token: Option<String>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RewriteResponse {
    pub(super) done: bool,
    #[serde(default)]
    pub(super) rewrite_token: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_in_gcs_form() {
        // GCS's documented value for "hello world" is yZRlqg== (CRC32C 0xc99465aa).
        assert_eq!(crc32c_b64(b"hello world"), "yZRlqg==");
        // fake-gcs-server's answer for an object holding "hello".
        assert_eq!(crc32c_b64(b"hello"), "mnG7TA==");
    }
}
