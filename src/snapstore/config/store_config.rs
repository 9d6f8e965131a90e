//! A resolved store: which provider, where, and with which credentials ([`StoreConfig`]). Its
//! `Debug` forms leave secrets out.

use std::path::PathBuf;

/// A fully resolved store location and its credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct StoreConfig {
    pub backend: Backend,
    /// Path inside the bucket/root that holds v1/ and v2/ ("" for the root).
    pub prefix: String,
    pub temp_dir: PathBuf,
    pub max_parallel_chunk_uploads: u32,
    pub min_chunk_size: u64,
    /// List withdrawn snapshots too ([`super::exclude`]).
    pub include_excluded: bool,
}

impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreConfig")
            .field("backend", &self.backend)
            .field("prefix", &self.prefix)
            .field("temp_dir", &self.temp_dir)
            .finish_non_exhaustive()
    }
}

impl StoreConfig {
    /// A one-line description without secrets.
    pub fn describe(&self) -> String {
        let prefix = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("/{}", self.prefix)
        };
        match &self.backend {
            Backend::Local { root } => format!("file://{}", root.display()),
            Backend::S3(s3) => format!(
                "s3://{}{prefix}{}",
                s3.bucket,
                s3.endpoint
                    .as_ref()
                    .map(|e| format!(" (endpoint {e})"))
                    .unwrap_or_default()
            ),
            Backend::Gcs(g) => format!(
                "gs://{}{prefix}{}",
                g.bucket,
                g.base_url
                    .as_ref()
                    .map(|e| format!(" (endpoint {e})"))
                    .unwrap_or_default()
            ),
            Backend::Azure(a) => format!(
                "az://{}{prefix}{}",
                a.container,
                a.endpoint
                    .as_ref()
                    .map(|e| format!(" (endpoint {e})"))
                    .unwrap_or_default()
            ),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// A directory on this machine; the prefix is already part of `root`.
    Local {
        root: PathBuf,
    },
    S3(S3Config),
    Gcs(GcsConfig),
    Azure(AzureConfig),
}

#[derive(Clone, Default, PartialEq, Eq)]
pub struct S3Config {
    pub bucket: String,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// AssumeRoleWithWebIdentity (etcdbrctl `roleARN` + `tokenPath`).
    pub role_arn: Option<String>,
    pub web_identity_token_file: Option<String>,
    pub virtual_hosted_style: bool,
    pub allow_http: bool,
    pub allow_invalid_certificates: bool,
    pub trusted_ca_pem: Option<String>,
    /// SSE-C key, base64 (etcdbrctl `sseCustomerKey`).
    pub sse_customer_key: Option<String>,
    pub disable_bulk_delete: bool,
    /// Also read the usual AWS_* environment variables.
    pub from_env: bool,
}

#[derive(Clone, Default, PartialEq, Eq)]
pub struct GcsConfig {
    pub bucket: String,
    /// A service-account JSON key file ($GOOGLE_APPLICATION_CREDENTIALS).
    pub service_account_path: Option<PathBuf>,
    /// The service's scheme and host, without `/storage/v1` (default
    /// https://storage.googleapis.com).
    pub base_url: Option<String>,
    pub allow_http: bool,
    /// No credentials at all: an emulator (an `http://` endpoint or `$STORAGE_EMULATOR_HOST`),
    /// as etcdbrctl's Go client does for one. Nothing asks Google or a metadata server for a
    /// token then.
    pub anonymous: bool,
    /// `service_account_path` is a workload identity `external_account` file
    /// ([`super::gcs_external`]).
    pub external_account: bool,
    pub from_env: bool,
}

#[derive(Clone, Default, PartialEq, Eq)]
pub struct AzureConfig {
    pub container: String,
    pub account: Option<String>,
    pub access_key: Option<String>,
    /// Blob service URL without the container (`https://<account>.<domain>` or an emulator's
    /// `http://127.0.0.1:10000/devstoreaccount1`).
    pub endpoint: Option<String>,
    pub allow_http: bool,
    pub from_env: bool,
}

fn redact(v: &Option<String>) -> &'static str {
    if v.is_some() {
        "Some(<redacted>)"
    } else {
        "None"
    }
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &redact(&self.secret_access_key))
            .field("role_arn", &self.role_arn)
            .field("web_identity_token_file", &self.web_identity_token_file)
            .field("virtual_hosted_style", &self.virtual_hosted_style)
            .field("allow_http", &self.allow_http)
            .field(
                "allow_invalid_certificates",
                &self.allow_invalid_certificates,
            )
            .field("trusted_ca_pem", &self.trusted_ca_pem.is_some())
            .field("sse_customer_key", &redact(&self.sse_customer_key))
            .field("disable_bulk_delete", &self.disable_bulk_delete)
            .field("from_env", &self.from_env)
            .finish()
    }
}

impl std::fmt::Debug for GcsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcsConfig")
            .field("bucket", &self.bucket)
            .field("service_account_path", &self.service_account_path)
            .field("base_url", &self.base_url)
            .field("allow_http", &self.allow_http)
            .field("anonymous", &self.anonymous)
            .field("from_env", &self.from_env)
            .finish()
    }
}

impl std::fmt::Debug for AzureConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureConfig")
            .field("container", &self.container)
            .field("account", &self.account)
            .field("access_key", &redact(&self.access_key))
            .field("endpoint", &self.endpoint)
            .field("allow_http", &self.allow_http)
            .field("from_env", &self.from_env)
            .finish()
    }
}

/// etcdbrctl's GCS endpoint is the JSON API URL (`.../storage/v1/`); the client
/// ([`super::gcs`]) adds `/storage/v1` and `/upload/storage/v1` to the host root itself.
pub(super) fn gcs_base_url(endpoint: &str) -> String {
    let e = endpoint.trim_end_matches('/');
    e.strip_suffix("/storage/v1").unwrap_or(e).to_string()
}
