//! The GCS client's errors, kept as the sources of object_store's errors.

use object_store::Error;
use reqwest::{Method, StatusCode};

pub(super) const STORE: &str = "GCS";

/// An HTTP answer that is not a success, kept as the source of object_store errors.
#[derive(Debug, thiserror::Error)]
#[error("{method} {what}: HTTP {status}: {body}")]
pub(super) struct HttpError {
    pub(super) method: Method,
    pub(super) what: String,
    pub(super) status: StatusCode,
    pub(super) body: String,
}

/// A request that could not be completed (after retries).
#[derive(Debug, thiserror::Error)]
#[error("{method} {what}: {detail}")]
pub(super) struct RequestError {
    pub(super) method: Method,
    pub(super) what: String,
    pub(super) detail: String,
}

pub(super) fn generic(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Error {
    Error::Generic {
        store: STORE,
        source: e.into(),
    }
}
