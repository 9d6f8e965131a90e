//! Why a store's flags or credentials could not be resolved.

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("no store given: pass --store URL or --storage-provider with --store-container")]
    NoStore,
    #[error("unsupported store URL {url:?}: use a path, file://, s3://, gs:// or az:// URL")]
    Scheme { url: String },
    #[error("store URL {url:?} has no bucket/container name")]
    NoBucket { url: String },
    #[error(
        "--storage-provider {provider}: storage container name not specified (--store-container or $STORAGE_CONTAINER)"
    )]
    NoContainer { provider: &'static str },
    #[error(
        "--storage-provider Swift is not supported: if your Swift has the S3 API middleware (s3api), use --storage-provider S3 --store-endpoint-override <its S3 endpoint> --store-path-style true with EC2 credentials"
    )]
    Swift,
    #[error("{what}: {detail}")]
    Credentials { what: String, detail: String },
    #[error("cannot determine the home directory for the Local provider ($HOME is not set)")]
    NoHome,
}
