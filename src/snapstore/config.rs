//! Where the backups are: `--store URL`, or etcdbrctl's `--storage-provider` flags and credential
//! conventions, resolved into one [`StoreConfig`] before anything touches the network.
//!
//! Resolution reads environment variables and credential files through [`EnvLookup`] so it can be
//! unit-tested without touching the process environment.

use std::path::{Path, PathBuf};

use thiserror::Error;

/// etcdbrctl's `--min-chunk-size` default and minimum (S3's smallest multipart part).
pub const MIN_CHUNK_SIZE: u64 = 5 * 1024 * 1024;

/// Store flags shared by every command that reads or writes backups.
#[derive(clap::Args, Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreArgs {
    /// Backup store: a directory or file:// URL holding v1/ and/or v2/, s3://bucket/prefix,
    /// gs://bucket/prefix or az://container/prefix.
    #[arg(long, value_name = "URL", conflicts_with = "storage_provider")]
    pub store: Option<String>,

    /// etcdbrctl's way of naming the store: Local, S3, GCS, ABS, OSS, ECS, OCS or Swift.
    #[arg(long, value_name = "PROVIDER", ignore_case = true)]
    pub storage_provider: Option<Provider>,

    /// Bucket/container (etcdbrctl; default from $STORAGE_CONTAINER).
    #[arg(long, value_name = "NAME", env = "STORAGE_CONTAINER")]
    pub store_container: Option<String>,

    /// Prefix inside the bucket: the directory that holds v1/ and v2/.
    #[arg(long, value_name = "PREFIX")]
    pub store_prefix: Option<String>,

    /// Endpoint of an S3-compatible, Azure or GCS service (MinIO, Azurite, ...).
    #[arg(long, value_name = "URL")]
    pub store_endpoint_override: Option<String>,

    /// S3 region (default: from the credentials, $AWS_REGION, or us-east-1).
    #[arg(long, value_name = "REGION")]
    pub store_region: Option<String>,

    /// S3 addressing: path style (`endpoint/bucket/key`, the default; MinIO, ECS, OCS) or
    /// virtual-hosted (`bucket.endpoint/key`; needed by OSS).
    #[arg(long, value_name = "BOOL")]
    pub store_path_style: Option<bool>,

    /// Allow plain http to the store (implied by an http:// endpoint).
    #[arg(long)]
    pub store_allow_http: bool,

    /// Delete objects one by one (for S3-compatible stores without multi-object delete).
    #[arg(long)]
    pub store_disable_bulk_delete: bool,

    /// Also list snapshots withdrawn with `x-etcd-snapshot-exclude=true` (an S3 tag, Azure
    /// blob index tag or GCS metadata entry; etcd-backup-restore's `List(includeAll)`), marked
    /// as excluded. For forensics: a restore normally must not use them.
    #[arg(long)]
    pub include_excluded: bool,

    /// Directory for temporary files (compact's work directory); created with mode 0700 when
    /// missing, like etcdbrctl.
    #[arg(long, value_name = "DIR", default_value = "/tmp")]
    pub snapstore_temp_directory: PathBuf,

    /// Parallel part uploads for multipart uploads.
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_parallel_chunk_uploads: u32,

    /// Part size for multipart uploads (at least 5 MiB).
    #[arg(long, value_name = "BYTES", default_value_t = MIN_CHUNK_SIZE, value_parser = clap::value_parser!(u64).range(MIN_CHUNK_SIZE..))]
    pub min_chunk_size: u64,
}

/// Flags of commands that download and apply deltas (restore, compact, validate).
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct FetchArgs {
    /// Deltas downloaded ahead of the one being applied.
    #[arg(long, value_name = "N", default_value_t = 6, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_fetchers: u32,

    /// Accept a full snapshot without etcd's SHA-256 trailer, and do not check it.
    #[arg(long)]
    pub skip_hash_check: bool,

    /// Memory the job sizes its buffers from: per-key history state, commit batches, sort
    /// runs and upload parts (B, KiB, MiB, GiB). Peak RSS stays near this whatever the size
    /// of the database or of a delta; a smaller budget spills more to the temp directory.
    #[arg(long, value_name = "SIZE", default_value = "64MiB", value_parser = parse_size)]
    pub memory_budget: u64,
}

/// The default `--memory-budget`.
pub const DEFAULT_MEMORY_BUDGET: u64 = 64 << 20;

impl Default for FetchArgs {
    fn default() -> Self {
        FetchArgs {
            max_fetchers: 6,
            skip_hash_check: false,
            memory_budget: DEFAULT_MEMORY_BUDGET,
        }
    }
}

/// `64MiB`, `512KiB`, `1GiB`, `1048576`: a byte count for a flag. At least 16 MiB: below that
/// the fixed costs (the mapped program, the runtime) are most of the budget.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mul) = [
        ("GiB", 1u64 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
        ("B", 1),
    ]
    .iter()
    .find_map(|(u, m)| t.strip_suffix(u).map(|n| (n.trim(), *m)))
    .unwrap_or((t, 1));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size like 64MiB, 1GiB or 1048576"))?;
    let bytes = n
        .checked_mul(mul)
        .ok_or_else(|| format!("{s:?} is too large"))?;
    if bytes < 16 << 20 {
        return Err(format!("{s:?} is below the 16MiB minimum"));
    }
    Ok(bytes)
}

/// etcdbrctl's `--storage-provider` values.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    #[value(name = "Local")]
    Local,
    #[value(name = "S3")]
    S3,
    #[value(name = "GCS")]
    Gcs,
    #[value(name = "ABS")]
    Abs,
    #[value(name = "OSS")]
    Oss,
    #[value(name = "ECS")]
    Ecs,
    #[value(name = "OCS")]
    Ocs,
    #[value(name = "Swift")]
    Swift,
}

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

/// Reads an environment variable; injectable for tests.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl StoreArgs {
    /// Resolves the flags against the process environment.
    pub fn resolve(&self) -> Result<StoreConfig, ConfigError> {
        self.resolve_with(&process_env)
    }

    pub fn resolve_with(&self, env: EnvLookup<'_>) -> Result<StoreConfig, ConfigError> {
        let backend_prefix = match (&self.store, self.storage_provider) {
            (Some(url), _) => self.resolve_url(url, env)?,
            (None, Some(p)) => self.resolve_provider(p, env)?,
            (None, None) => return Err(ConfigError::NoStore),
        };
        let (backend, prefix) = backend_prefix;
        Ok(StoreConfig {
            backend,
            prefix: clean_prefix(&prefix),
            temp_dir: self.snapstore_temp_directory.clone(),
            max_parallel_chunk_uploads: self.max_parallel_chunk_uploads.max(1),
            min_chunk_size: self.min_chunk_size.max(MIN_CHUNK_SIZE),
            include_excluded: self.include_excluded,
        })
    }

    fn endpoint_allows_http(&self, endpoint: Option<&str>) -> bool {
        self.store_allow_http || endpoint.is_some_and(|e| e.starts_with("http://"))
    }

    fn resolve_url(&self, url: &str, env: EnvLookup<'_>) -> Result<(Backend, String), ConfigError> {
        let Some((scheme, rest)) = url.split_once("://") else {
            // A plain path.
            return Ok((
                Backend::Local {
                    root: join_prefix(Path::new(url), self.store_prefix.as_deref()),
                },
                String::new(),
            ));
        };
        if scheme == "file" {
            return Ok((
                Backend::Local {
                    root: join_prefix(Path::new(rest), self.store_prefix.as_deref()),
                },
                String::new(),
            ));
        }
        let (bucket, prefix) = match rest.split_once('/') {
            Some((b, p)) => (b.to_string(), p.to_string()),
            None => (rest.to_string(), String::new()),
        };
        if bucket.is_empty() {
            return Err(ConfigError::NoBucket { url: url.into() });
        }
        let prefix = match &self.store_prefix {
            Some(extra) => format!("{prefix}/{extra}"),
            None => prefix,
        };
        let endpoint = self.store_endpoint_override.clone();
        let backend = match scheme {
            "s3" | "s3a" => {
                let mut s3 = aws_credentials(env, "")?.unwrap_or_default();
                s3.bucket = bucket;
                s3.from_env = true;
                self.apply_s3_flags(&mut s3, endpoint);
                Backend::S3(s3)
            }
            "gs" | "gcs" => {
                let mut g = gcs_credentials(env)?;
                g.bucket = bucket;
                g.from_env = true;
                self.apply_gcs_endpoint(&mut g, endpoint, env);
                Backend::Gcs(g)
            }
            "az" | "azure" | "abfs" => {
                let mut a = azure_credentials(env)?.unwrap_or_default();
                a.container = bucket;
                a.from_env = true;
                if endpoint.is_some() {
                    a.endpoint = endpoint;
                }
                a.allow_http = self.endpoint_allows_http(a.endpoint.as_deref());
                Backend::Azure(a)
            }
            _ => return Err(ConfigError::Scheme { url: url.into() }),
        };
        Ok((backend, prefix))
    }

    fn apply_s3_flags(&self, s3: &mut S3Config, endpoint: Option<String>) {
        if endpoint.is_some() {
            s3.endpoint = endpoint;
        }
        if let Some(r) = &self.store_region {
            s3.region = Some(r.clone());
        }
        if let Some(path_style) = self.store_path_style {
            s3.virtual_hosted_style = !path_style;
        }
        s3.allow_http = s3.allow_http || self.endpoint_allows_http(s3.endpoint.as_deref());
        s3.disable_bulk_delete |= self.store_disable_bulk_delete;
    }

    /// etcdbrctl's GCS endpoint rules: `--store-endpoint-override` wins over the
    /// `storageAPIEndpoint` file (already in `g.base_url`); `$STORAGE_EMULATOR_HOST` (`host:port`
    /// or a URL) is the endpoint when neither is given. An `http://` endpoint or a set
    /// `$STORAGE_EMULATOR_HOST` means an emulator: no credentials (Go's `WithoutAuthentication`).
    fn apply_gcs_endpoint(&self, g: &mut GcsConfig, endpoint: Option<String>, env: EnvLookup<'_>) {
        if let Some(e) = endpoint {
            g.base_url = Some(gcs_base_url(&e));
        }
        let emulator = env("STORAGE_EMULATOR_HOST").filter(|h| !h.trim().is_empty());
        if let Some(host) = &emulator
            && g.base_url.is_none()
        {
            let host = host.trim();
            g.base_url = Some(gcs_base_url(&if host.contains("://") {
                host.to_string()
            } else {
                format!("http://{host}")
            }));
        }
        g.allow_http = self.endpoint_allows_http(g.base_url.as_deref());
        g.anonymous = emulator.is_some()
            || g.base_url
                .as_deref()
                .is_some_and(|u| u.starts_with("http://"));
    }

    fn container(&self, provider: &'static str) -> Result<String, ConfigError> {
        match self.store_container.as_deref() {
            Some(c) if !c.is_empty() => Ok(c.to_string()),
            _ => Err(ConfigError::NoContainer { provider }),
        }
    }

    fn resolve_provider(
        &self,
        provider: Provider,
        env: EnvLookup<'_>,
    ) -> Result<(Backend, String), ConfigError> {
        let prefix = self.store_prefix.clone().unwrap_or_default();
        let endpoint = self.store_endpoint_override.clone();
        let backend = match provider {
            Provider::Local => {
                // etcdbrctl: $HOME/<container>/<prefix>, even for an absolute container.
                let home = env("HOME").ok_or(ConfigError::NoHome)?;
                let container = self
                    .store_container
                    .clone()
                    .filter(|c| !c.is_empty())
                    .unwrap_or_else(|| "default.bkp".into());
                let mut root = PathBuf::from(home);
                for part in container.split('/').filter(|p| !p.is_empty()) {
                    root.push(part);
                }
                return Ok((
                    Backend::Local {
                        root: join_prefix(&root, Some(&prefix)),
                    },
                    String::new(),
                ));
            }
            Provider::S3 => {
                let mut s3 = aws_credentials(env, "")?.unwrap_or_default();
                s3.bucket = self.container("S3")?;
                s3.from_env = true;
                self.apply_s3_flags(&mut s3, endpoint);
                Backend::S3(s3)
            }
            Provider::Oss => {
                let mut s3 = oss_credentials(env)?;
                s3.bucket = self.container("OSS")?;
                self.apply_s3_flags(&mut s3, endpoint);
                Backend::S3(s3)
            }
            Provider::Ecs => {
                let mut s3 = ecs_credentials(env)?;
                s3.bucket = self.container("ECS")?;
                self.apply_s3_flags(&mut s3, endpoint);
                Backend::S3(s3)
            }
            Provider::Ocs => {
                let mut s3 = ocs_credentials(env)?;
                s3.bucket = self.container("OCS")?;
                self.apply_s3_flags(&mut s3, endpoint);
                Backend::S3(s3)
            }
            Provider::Gcs => {
                let mut g = gcs_credentials(env)?;
                g.bucket = self.container("GCS")?;
                g.from_env = true;
                self.apply_gcs_endpoint(&mut g, endpoint, env);
                Backend::Gcs(g)
            }
            Provider::Abs => {
                let mut a = azure_credentials(env)?.ok_or_else(|| ConfigError::Credentials {
                    what: "ABS credentials".into(),
                    detail: "set AZURE_APPLICATION_CREDENTIALS (directory with storageAccount, storageKey) or AZURE_APPLICATION_CREDENTIALS_JSON".into(),
                })?;
                a.container = self.container("ABS")?;
                if endpoint.is_some() {
                    a.endpoint = endpoint;
                }
                a.allow_http = self.endpoint_allows_http(a.endpoint.as_deref());
                Backend::Azure(a)
            }
            Provider::Swift => return Err(ConfigError::Swift),
        };
        Ok((backend, prefix))
    }
}

fn join_prefix(root: &Path, prefix: Option<&str>) -> PathBuf {
    let mut p = root.to_path_buf();
    for part in prefix
        .unwrap_or_default()
        .split('/')
        .filter(|s| !s.is_empty())
    {
        p.push(part);
    }
    p
}

fn clean_prefix(p: &str) -> String {
    p.split('/')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("/")
}

/// etcdbrctl's GCS endpoint is the JSON API URL (`.../storage/v1/`); the client
/// ([`super::gcs`]) adds `/storage/v1` and `/upload/storage/v1` to the host root itself.
fn gcs_base_url(endpoint: &str) -> String {
    let e = endpoint.trim_end_matches('/');
    e.strip_suffix("/storage/v1").unwrap_or(e).to_string()
}

// ---- credential files ---------------------------------------------------------------------

/// A credential directory (one file per field, as Kubernetes mounts a secret) or JSON file.
enum CredSource {
    Json(PathBuf),
    Dir(PathBuf),
}

/// etcdbrctl's lookup order: `<NAME>_JSON` file, then a `*.json` file inside the `<NAME>`
/// directory, then the directory's per-field files.
fn cred_source(env: EnvLookup<'_>, var: &str) -> Result<Option<CredSource>, ConfigError> {
    if let Some(file) = env(&format!("{var}_JSON")) {
        return Ok(Some(CredSource::Json(file.into())));
    }
    let Some(dir) = env(var) else {
        return Ok(None);
    };
    let dir = PathBuf::from(dir);
    let entries = std::fs::read_dir(&dir).map_err(|e| ConfigError::Credentials {
        what: format!("{var}={}", dir.display()),
        detail: e.to_string(),
    })?;
    let mut json = None;
    for entry in entries.flatten() {
        let p = entry.path();
        if p.extension().is_some_and(|x| x == "json") && p.is_file() {
            json = Some(p);
            break;
        }
    }
    Ok(Some(match json {
        Some(p) => CredSource::Json(p),
        None => CredSource::Dir(dir),
    }))
}

/// Field lookup over either source. Directory values are used as-is (etcdbrctl does not trim
/// them either, but a trailing newline from `echo` is a common accident, so we trim it).
struct Fields {
    what: String,
    json: Option<serde_json::Map<String, serde_json::Value>>,
    dir: Option<PathBuf>,
}

impl Fields {
    fn load(src: CredSource) -> Result<Fields, ConfigError> {
        match src {
            CredSource::Json(p) => {
                let what = p.display().to_string();
                let text = std::fs::read_to_string(&p).map_err(|e| ConfigError::Credentials {
                    what: what.clone(),
                    detail: e.to_string(),
                })?;
                let v: serde_json::Value =
                    serde_json::from_str(&text).map_err(|e| ConfigError::Credentials {
                        what: what.clone(),
                        detail: format!("not valid JSON: {e}"),
                    })?;
                match v {
                    serde_json::Value::Object(m) => Ok(Fields {
                        what,
                        json: Some(m),
                        dir: None,
                    }),
                    _ => Err(ConfigError::Credentials {
                        what,
                        detail: "expected a JSON object".into(),
                    }),
                }
            }
            CredSource::Dir(d) => Ok(Fields {
                what: d.display().to_string(),
                json: None,
                dir: Some(d),
            }),
        }
    }

    fn str(&self, name: &str) -> Result<Option<String>, ConfigError> {
        if let Some(m) = &self.json {
            return Ok(match m.get(name) {
                Some(serde_json::Value::String(s)) if !s.is_empty() => Some(s.clone()),
                Some(serde_json::Value::Bool(b)) => Some(b.to_string()),
                _ => None,
            });
        }
        if let Some(d) = &self.dir {
            let p = d.join(name);
            return match std::fs::read_to_string(&p) {
                Ok(s) => {
                    let s = s.trim_end_matches(['\n', '\r']).to_string();
                    Ok((!s.is_empty()).then_some(s))
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(ConfigError::Credentials {
                    what: p.display().to_string(),
                    detail: e.to_string(),
                }),
            };
        }
        Ok(None)
    }

    fn bool(&self, name: &str) -> Result<Option<bool>, ConfigError> {
        match self.str(name)? {
            None => Ok(None),
            Some(s) => parse_go_bool(&s).map(Some).ok_or(ConfigError::Credentials {
                what: format!("{} ({name})", self.what),
                detail: format!("{s:?} is not a boolean"),
            }),
        }
    }

    fn require(&self, names: &[&str]) -> Result<(), ConfigError> {
        let mut missing = Vec::new();
        for n in names {
            if self.str(n)?.is_none() {
                missing.push(*n);
            }
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Credentials {
                what: self.what.clone(),
                detail: format!("missing {}", missing.join(", ")),
            })
        }
    }
}

/// Go's `strconv.ParseBool`.
pub fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// S3: `AWS_APPLICATION_CREDENTIALS[_JSON]` with accessKeyID, secretAccessKey, region, endpoint,
/// s3ForcePathStyle, insecureSkipVerify, trustedCaCert, sseCustomerKey, roleARN, tokenPath.
fn aws_credentials(env: EnvLookup<'_>, var_prefix: &str) -> Result<Option<S3Config>, ConfigError> {
    let Some(src) = cred_source(env, &format!("{var_prefix}AWS_APPLICATION_CREDENTIALS"))? else {
        return Ok(None);
    };
    let f = Fields::load(src)?;
    let mut s3 = S3Config {
        access_key_id: f.str("accessKeyID")?,
        secret_access_key: f.str("secretAccessKey")?,
        region: f.str("region")?,
        endpoint: f.str("endpoint")?,
        trusted_ca_pem: f.str("trustedCaCert")?,
        sse_customer_key: f.str("sseCustomerKey")?,
        role_arn: f.str("roleARN")?,
        web_identity_token_file: f.str("tokenPath")?,
        allow_invalid_certificates: f.bool("insecureSkipVerify")?.unwrap_or(false),
        ..S3Config::default()
    };
    if let Some(path_style) = f.bool("s3ForcePathStyle")? {
        s3.virtual_hosted_style = !path_style;
    }
    if let Some(alg) = f.str("sseCustomerAlgorithm")?
        && alg != "AES256"
    {
        return Err(ConfigError::Credentials {
            what: f.what.clone(),
            detail: format!("sseCustomerAlgorithm {alg:?}: only AES256 exists"),
        });
    }
    if s3.access_key_id.is_none() && s3.role_arn.is_none() {
        return Err(ConfigError::Credentials {
            what: f.what.clone(),
            detail: "neither accessKeyID nor roleARN is set".into(),
        });
    }
    s3.allow_http = s3
        .endpoint
        .as_deref()
        .is_some_and(|e| e.starts_with("http://"));
    Ok(Some(s3))
}

/// OSS through its S3-compatible API: `ALICLOUD_APPLICATION_CREDENTIALS[_JSON]` with
/// storageEndpoint, accessKeyID, accessKeySecret. OSS needs virtual-hosted addressing and has
/// no S3 multi-object delete.
fn oss_credentials(env: EnvLookup<'_>) -> Result<S3Config, ConfigError> {
    let src = cred_source(env, "ALICLOUD_APPLICATION_CREDENTIALS")?.ok_or_else(|| {
        ConfigError::Credentials {
            what: "OSS credentials".into(),
            detail: "set ALICLOUD_APPLICATION_CREDENTIALS or ALICLOUD_APPLICATION_CREDENTIALS_JSON"
                .into(),
        }
    })?;
    let f = Fields::load(src)?;
    f.require(&["storageEndpoint", "accessKeyID", "accessKeySecret"])?;
    let endpoint = f.str("storageEndpoint")?.unwrap_or_default();
    let endpoint = if endpoint.contains("://") {
        endpoint
    } else {
        format!("https://{endpoint}")
    };
    // oss-<region>.aliyuncs.com → region oss-<region>; the signature needs some region.
    let host = endpoint.split("://").nth(1).unwrap_or_default();
    let region = host.split('.').next().unwrap_or_default().to_string();
    Ok(S3Config {
        allow_http: endpoint.starts_with("http://"),
        endpoint: Some(endpoint),
        region: Some(region).filter(|r| !r.is_empty()),
        access_key_id: f.str("accessKeyID")?,
        secret_access_key: f.str("accessKeySecret")?,
        virtual_hosted_style: true,
        disable_bulk_delete: true,
        ..S3Config::default()
    })
}

/// Dell ECS: environment variables ECS_ENDPOINT, ECS_ACCESS_KEY_ID, ECS_SECRET_ACCESS_KEY,
/// ECS_DISABLE_SSL, ECS_INSECURE_SKIP_VERIFY; region US-Standard, path style.
fn ecs_credentials(env: EnvLookup<'_>) -> Result<S3Config, ConfigError> {
    let get = |name: &str| {
        env(name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| ConfigError::Credentials {
                what: "ECS credentials".into(),
                detail: format!("missing environment variable {name}"),
            })
    };
    let endpoint = get("ECS_ENDPOINT")?;
    let flag = |name: &str| env(name).and_then(|v| parse_go_bool(&v)).unwrap_or(false);
    let disable_ssl = flag("ECS_DISABLE_SSL");
    Ok(S3Config {
        endpoint: Some(with_scheme(&endpoint, disable_ssl)),
        region: Some("US-Standard".into()),
        access_key_id: Some(get("ECS_ACCESS_KEY_ID")?),
        secret_access_key: Some(get("ECS_SECRET_ACCESS_KEY")?),
        allow_http: disable_ssl,
        allow_invalid_certificates: flag("ECS_INSECURE_SKIP_VERIFY"),
        ..S3Config::default()
    })
}

/// OpenShift Container Storage: `OPENSHIFT_APPLICATION_CREDENTIALS[_JSON]` with endpoint, region,
/// accessKeyID, secretAccessKey, disableSSL, insecureSkipVerify; path style.
fn ocs_credentials(env: EnvLookup<'_>) -> Result<S3Config, ConfigError> {
    let src = cred_source(env, "OPENSHIFT_APPLICATION_CREDENTIALS")?.ok_or_else(|| {
        ConfigError::Credentials {
            what: "OCS credentials".into(),
            detail:
                "set OPENSHIFT_APPLICATION_CREDENTIALS or OPENSHIFT_APPLICATION_CREDENTIALS_JSON"
                    .into(),
        }
    })?;
    let f = Fields::load(src)?;
    f.require(&["endpoint", "region", "accessKeyID", "secretAccessKey"])?;
    let disable_ssl = f.bool("disableSSL")?.unwrap_or(false);
    Ok(S3Config {
        endpoint: f.str("endpoint")?.map(|e| with_scheme(&e, disable_ssl)),
        region: f.str("region")?,
        access_key_id: f.str("accessKeyID")?,
        secret_access_key: f.str("secretAccessKey")?,
        allow_http: disable_ssl,
        allow_invalid_certificates: f.bool("insecureSkipVerify")?.unwrap_or(false),
        ..S3Config::default()
    })
}

fn with_scheme(endpoint: &str, plain_http: bool) -> String {
    if endpoint.contains("://") {
        endpoint.to_string()
    } else if plain_http {
        format!("http://{endpoint}")
    } else {
        format!("https://{endpoint}")
    }
}

/// etcdbrctl's check of a service-account key's `project_id`.
pub(crate) fn gcs_project_id_ok(id: &str) -> bool {
    // ^[a-z][a-z0-9-]{4,28}[a-z0-9]$
    let b = id.as_bytes();
    (6..=30).contains(&b.len())
        && b.first().is_some_and(|c| c.is_ascii_lowercase())
        && b.last()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// The fields etcdbrctl allows in a service-account key (any other one is refused there).
const GCS_SERVICE_ACCOUNT_FIELDS: [&str; 11] = [
    "type",
    "project_id",
    "client_email",
    "universe_domain",
    "auth_uri",
    "auth_provider_x509_cert_url",
    "client_x509_cert_url",
    "client_id",
    "private_key_id",
    "private_key",
    "token_uri",
];

/// GCS: `GOOGLE_APPLICATION_CREDENTIALS` = a service-account JSON key, checked as etcdbrctl
/// checks it (`project_id` format, no field outside its list); an optional
/// `storageAPIEndpoint` file in the same directory (the mounted secret) overrides the endpoint
/// (etcdbrctl, deprecated there).
fn gcs_credentials(env: EnvLookup<'_>) -> Result<GcsConfig, ConfigError> {
    let mut g = GcsConfig::default();
    let Some(path) = env("GOOGLE_APPLICATION_CREDENTIALS") else {
        return Ok(g);
    };
    let path = PathBuf::from(path);
    let what = format!("GOOGLE_APPLICATION_CREDENTIALS={}", path.display());
    let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::Credentials {
        what: what.clone(),
        detail: e.to_string(),
    })?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| ConfigError::Credentials {
            what: what.clone(),
            detail: format!("not valid JSON: {e}"),
        })?;
    match v.get("type").and_then(|t| t.as_str()) {
        Some("service_account") => {
            let project = v.get("project_id").and_then(|p| p.as_str()).unwrap_or("");
            if !gcs_project_id_ok(project) {
                return Err(ConfigError::Credentials {
                    what,
                    detail: format!(
                        "service account project ID {project:?} does not match ^[a-z][a-z0-9-]{{4,28}}[a-z0-9]$"
                    ),
                });
            }
            if let Some(m) = v.as_object()
                && let Some(f) = m
                    .keys()
                    .find(|k| !GCS_SERVICE_ACCOUNT_FIELDS.contains(&k.as_str()))
            {
                return Err(ConfigError::Credentials {
                    what,
                    detail: format!(
                        "forbidden field {f:?} is present, allowed fields are {}",
                        GCS_SERVICE_ACCOUNT_FIELDS.join(", ")
                    ),
                });
            }
        }
        Some("external_account") => {
            let dir = path.parent().unwrap_or(Path::new("."));
            super::gcs_external::validate(&v, dir)
                .map_err(|detail| ConfigError::Credentials { what, detail })?;
            g.external_account = true;
        }
        other => {
            return Err(ConfigError::Credentials {
                what,
                detail: format!(
                    "unsupported credential type {other:?} is used, only \"service_account\" or \"external_account\" is allowed"
                ),
            });
        }
    }
    if let Some(dir) = path.parent() {
        match std::fs::read_to_string(dir.join("storageAPIEndpoint")) {
            Ok(e) if !e.trim().is_empty() => g.base_url = Some(gcs_base_url(e.trim())),
            _ => {}
        }
    }
    g.service_account_path = Some(path);
    Ok(g)
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

/// ABS: `AZURE_APPLICATION_CREDENTIALS[_JSON]` with storageAccount, storageKey and an optional
/// domain (default blob.core.windows.net).
fn azure_credentials(env: EnvLookup<'_>) -> Result<Option<AzureConfig>, ConfigError> {
    let Some(src) = cred_source(env, "AZURE_APPLICATION_CREDENTIALS")? else {
        return Ok(None);
    };
    let f = Fields::load(src)?;
    f.require(&["storageAccount", "storageKey"])?;
    let account = f.str("storageAccount")?.unwrap_or_default();
    let endpoint = f.str("domain")?.map(|d| format!("https://{account}.{d}"));
    Ok(Some(AzureConfig {
        account: Some(account),
        access_key: f.str("storageKey")?,
        endpoint,
        ..AzureConfig::default()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use std::collections::HashMap;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        fetch: FetchArgs,
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("t").chain(args.iter().copied()))
    }

    fn resolve(args: &[&str], env: &HashMap<&str, String>) -> Result<StoreConfig, ConfigError> {
        let cli = parse(args).unwrap();
        cli.store.resolve_with(&|k: &str| env.get(k).cloned())
    }

    fn s3(c: &StoreConfig) -> &S3Config {
        match &c.backend {
            Backend::S3(s) => s,
            _ => panic!("{c:?}"),
        }
    }

    #[test]
    fn defaults_match_etcdbrctl() {
        let cli = parse(&["--store", "/x"]).unwrap();
        assert_eq!(cli.fetch.max_fetchers, 6);
        assert!(!cli.fetch.skip_hash_check);
        assert_eq!(cli.store.max_parallel_chunk_uploads, 5);
        assert_eq!(cli.store.min_chunk_size, MIN_CHUNK_SIZE);
        assert_eq!(cli.store.snapstore_temp_directory, PathBuf::from("/tmp"));
        assert!(parse(&["--store", "/x", "--min-chunk-size", "1024"]).is_err());
        assert!(parse(&["--store", "/x", "--max-fetchers", "0"]).is_err());
        assert!(parse(&["--store", "/x", "--storage-provider", "S3"]).is_err());
        // Provider names are case-insensitive, as etcdbrctl users type them both ways.
        let cli = parse(&["--storage-provider", "abs"]).unwrap();
        assert_eq!(cli.store.storage_provider, Some(Provider::Abs));
    }

    #[test]
    fn plain_path_and_file_url() {
        let env = HashMap::new();
        let c = resolve(&["--store", "/backups/etcd"], &env).unwrap();
        assert_eq!(
            c.backend,
            Backend::Local {
                root: "/backups/etcd".into()
            }
        );
        let c = resolve(
            &["--store", "file:///backups/etcd", "--store-prefix", "a/b"],
            &env,
        )
        .unwrap();
        assert_eq!(
            c.backend,
            Backend::Local {
                root: "/backups/etcd/a/b".into()
            }
        );
        assert_eq!(c.prefix, "");
    }

    #[test]
    fn local_provider_is_under_home() {
        let env = HashMap::from([("HOME", "/home/u".to_string())]);
        let c = resolve(
            &["--storage-provider", "Local", "--store-prefix", "p"],
            &env,
        )
        .unwrap();
        assert_eq!(
            c.backend,
            Backend::Local {
                root: "/home/u/default.bkp/p".into()
            }
        );
        let c = resolve(
            &["--storage-provider", "Local", "--store-container", "/abs/c"],
            &env,
        )
        .unwrap();
        assert_eq!(
            c.backend,
            Backend::Local {
                root: "/home/u/abs/c".into()
            }
        );
    }

    #[test]
    fn s3_url_with_minio_style_flags() {
        let env = HashMap::new();
        let c = resolve(
            &[
                "--store",
                "s3://bucket/some/prefix/",
                "--store-endpoint-override",
                "http://127.0.0.1:9000",
                "--store-region",
                "eu-1",
            ],
            &env,
        )
        .unwrap();
        let s = s3(&c);
        assert_eq!(s.bucket, "bucket");
        assert_eq!(c.prefix, "some/prefix");
        assert_eq!(s.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(s.region.as_deref(), Some("eu-1"));
        assert!(s.allow_http);
        assert!(!s.virtual_hosted_style);
        assert!(s.from_env);
        assert!(resolve(&["--store", "s3:///p"], &env).is_err());
        assert!(matches!(
            resolve(&["--store", "ftp://h/p"], &env),
            Err(ConfigError::Scheme { .. })
        ));
    }

    #[test]
    fn s3_provider_reads_credential_directory_and_json() {
        let dir = tempfile::tempdir().unwrap();
        for (k, v) in [
            ("accessKeyID", "AK\n"),
            ("secretAccessKey", "SK"),
            ("region", "eu-west-1"),
            ("s3ForcePathStyle", "false"),
            ("insecureSkipVerify", "true"),
        ] {
            std::fs::write(dir.path().join(k), v).unwrap();
        }
        let env = HashMap::from([(
            "AWS_APPLICATION_CREDENTIALS",
            dir.path().display().to_string(),
        )]);
        let c = resolve(
            &[
                "--storage-provider",
                "S3",
                "--store-container",
                "b",
                "--store-prefix",
                "etcd/main",
            ],
            &env,
        )
        .unwrap();
        let s = s3(&c);
        assert_eq!(s.access_key_id.as_deref(), Some("AK"));
        assert_eq!(s.secret_access_key.as_deref(), Some("SK"));
        assert_eq!(s.region.as_deref(), Some("eu-west-1"));
        assert!(s.virtual_hosted_style);
        assert!(s.allow_invalid_certificates);
        assert_eq!(c.prefix, "etcd/main");

        let json = dir.path().join("creds.json");
        std::fs::write(
            &json,
            r#"{"accessKeyID":"J","secretAccessKey":"JS","region":"r","endpoint":"http://minio:9000","s3ForcePathStyle":true}"#,
        )
        .unwrap();
        // A JSON file inside the directory wins over the per-field files.
        let c = resolve(
            &["--storage-provider", "S3", "--store-container", "b"],
            &env,
        )
        .unwrap();
        assert_eq!(s3(&c).access_key_id.as_deref(), Some("J"));
        assert_eq!(s3(&c).endpoint.as_deref(), Some("http://minio:9000"));
        assert!(s3(&c).allow_http);
        let env = HashMap::from([(
            "AWS_APPLICATION_CREDENTIALS_JSON",
            json.display().to_string(),
        )]);
        let c = resolve(
            &[
                "--storage-provider",
                "S3",
                "--store-container",
                "b",
                "--store-endpoint-override",
                "https://e",
            ],
            &env,
        )
        .unwrap();
        // The flag overrides the file's endpoint.
        assert_eq!(s3(&c).endpoint.as_deref(), Some("https://e"));
        assert!(!s3(&c).virtual_hosted_style);
    }

    #[test]
    fn container_is_required_for_cloud_providers() {
        let env = HashMap::new();
        assert!(matches!(
            resolve(&["--storage-provider", "S3"], &env),
            Err(ConfigError::NoContainer { provider: "S3" })
        ));
        // $STORAGE_CONTAINER is read by clap's env support, not by our lookup.
        assert!(matches!(resolve(&[], &env), Err(ConfigError::NoStore)));
    }

    #[test]
    fn swift_fails_with_one_clear_line() {
        let err = resolve(
            &["--storage-provider", "Swift", "--store-container", "c"],
            &HashMap::new(),
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(!msg.contains('\n'));
        assert!(
            msg.contains("--storage-provider S3") && msg.contains("s3api"),
            "{msg}"
        );
    }

    #[test]
    fn oss_route() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("oss.json"),
            r#"{"storageEndpoint":"oss-eu-central-1.aliyuncs.com","accessKeyID":"a","accessKeySecret":"s"}"#,
        )
        .unwrap();
        let env = HashMap::from([(
            "ALICLOUD_APPLICATION_CREDENTIALS",
            dir.path().display().to_string(),
        )]);
        let c = resolve(
            &["--storage-provider", "OSS", "--store-container", "b"],
            &env,
        )
        .unwrap();
        let s = s3(&c);
        assert_eq!(
            s.endpoint.as_deref(),
            Some("https://oss-eu-central-1.aliyuncs.com")
        );
        assert_eq!(s.region.as_deref(), Some("oss-eu-central-1"));
        assert!(s.virtual_hosted_style && s.disable_bulk_delete);
        assert_eq!(s.secret_access_key.as_deref(), Some("s"));
        let missing = tempfile::tempdir().unwrap();
        std::fs::write(missing.path().join("accessKeyID"), "a").unwrap();
        let env = HashMap::from([(
            "ALICLOUD_APPLICATION_CREDENTIALS",
            missing.path().display().to_string(),
        )]);
        let err = resolve(
            &["--storage-provider", "OSS", "--store-container", "b"],
            &env,
        )
        .unwrap_err();
        assert!(err.to_string().contains("storageEndpoint"), "{err}");
    }

    #[test]
    fn ecs_route_from_environment() {
        let env = HashMap::from([
            ("ECS_ENDPOINT", "ecs.local:9020".to_string()),
            ("ECS_ACCESS_KEY_ID", "a".to_string()),
            ("ECS_SECRET_ACCESS_KEY", "s".to_string()),
            ("ECS_DISABLE_SSL", "true".to_string()),
        ]);
        let c = resolve(
            &["--storage-provider", "ECS", "--store-container", "b"],
            &env,
        )
        .unwrap();
        let s = s3(&c);
        assert_eq!(s.endpoint.as_deref(), Some("http://ecs.local:9020"));
        assert_eq!(s.region.as_deref(), Some("US-Standard"));
        assert!(s.allow_http && !s.virtual_hosted_style);
        let err = resolve(
            &["--storage-provider", "ECS", "--store-container", "b"],
            &HashMap::new(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("ECS_ENDPOINT"));
    }

    #[test]
    fn ocs_route() {
        let dir = tempfile::tempdir().unwrap();
        for (k, v) in [
            ("endpoint", "ocs.local"),
            ("region", "r"),
            ("accessKeyID", "a"),
            ("secretAccessKey", "s"),
            ("disableSSL", "false"),
        ] {
            std::fs::write(dir.path().join(k), v).unwrap();
        }
        let env = HashMap::from([(
            "OPENSHIFT_APPLICATION_CREDENTIALS",
            dir.path().display().to_string(),
        )]);
        let c = resolve(
            &["--storage-provider", "OCS", "--store-container", "b"],
            &env,
        )
        .unwrap();
        assert_eq!(s3(&c).endpoint.as_deref(), Some("https://ocs.local"));
        assert!(!s3(&c).allow_http);
    }

    #[test]
    fn gcs_configuration_path() {
        let dir = tempfile::tempdir().unwrap();
        let sa = dir.path().join("serviceaccount.json");
        std::fs::write(
            &sa,
            r#"{"type":"service_account","project_id":"my-project-1"}"#,
        )
        .unwrap();
        std::fs::write(
            dir.path().join("storageAPIEndpoint"),
            "http://127.0.0.1:4443/storage/v1/\n",
        )
        .unwrap();
        let env = HashMap::from([("GOOGLE_APPLICATION_CREDENTIALS", sa.display().to_string())]);
        let c = resolve(
            &[
                "--storage-provider",
                "GCS",
                "--store-container",
                "b",
                "--store-prefix",
                "x",
            ],
            &env,
        )
        .unwrap();
        match &c.backend {
            Backend::Gcs(g) => {
                assert_eq!(g.bucket, "b");
                assert_eq!(g.service_account_path.as_deref(), Some(sa.as_path()));
                assert_eq!(g.base_url.as_deref(), Some("http://127.0.0.1:4443"));
                assert!(g.allow_http);
                // An http endpoint is an emulator: no credentials, like etcdbrctl.
                assert!(g.anonymous);
            }
            _ => panic!("{}", c.describe()),
        }
        let c = resolve(&["--store", "gs://bkt/pre"], &HashMap::new()).unwrap();
        assert_eq!(c.describe(), "gs://bkt/pre");
        // etcdbrctl's checks of the key: the project ID's format and the allowed fields.
        for (bad, why) in [
            (
                r#"{"type":"service_account","project_id":"p"}"#,
                "project ID",
            ),
            (r#"{"type":"service_account"}"#, "project ID"),
            (
                r#"{"type":"service_account","project_id":"Upper-case1"}"#,
                "project ID",
            ),
            (
                r#"{"type":"service_account","project_id":"my-project-1","gcs_base_url":"http://x"}"#,
                "gcs_base_url",
            ),
        ] {
            std::fs::write(&sa, bad).unwrap();
            let err = resolve(
                &["--storage-provider", "GCS", "--store-container", "b"],
                &env,
            )
            .unwrap_err();
            assert!(err.to_string().contains(why), "{bad}: {err}");
        }
        // external_account: upstream's checks start with the projectID file beside it
        // (tests/gcs_credentials.rs has the accepted and refused files).
        std::fs::write(&sa, r#"{"type":"external_account"}"#).unwrap();
        let err = resolve(
            &["--storage-provider", "GCS", "--store-container", "b"],
            &env,
        )
        .unwrap_err();
        assert!(err.to_string().contains("projectID"), "{err}");
    }

    fn gcs(c: &StoreConfig) -> &GcsConfig {
        match &c.backend {
            Backend::Gcs(g) => g,
            _ => panic!("{c:?}"),
        }
    }

    #[test]
    fn gcs_endpoints_and_the_emulator() {
        let gcs_args = ["--storage-provider", "GCS", "--store-container", "b"];
        // Nothing set: Google itself, with credentials.
        let c = resolve(&gcs_args, &HashMap::new()).unwrap();
        let g = gcs(&c);
        assert_eq!(g.base_url, None);
        assert!(!g.anonymous && !g.allow_http);
        // $STORAGE_EMULATOR_HOST as host:port (the Go client's form) or as a URL.
        for host in [
            "127.0.0.1:4443",
            "http://127.0.0.1:4443",
            "http://127.0.0.1:4443/",
        ] {
            let env = HashMap::from([("STORAGE_EMULATOR_HOST", host.to_string())]);
            let c = resolve(&gcs_args, &env).unwrap();
            let g = gcs(&c);
            assert_eq!(
                g.base_url.as_deref(),
                Some("http://127.0.0.1:4443"),
                "{host}"
            );
            assert!(g.anonymous && g.allow_http, "{host}");
            let c = resolve(&["--store", "gs://b/p"], &env).unwrap();
            assert!(gcs(&c).anonymous);
            assert_eq!(c.describe(), "gs://b/p (endpoint http://127.0.0.1:4443)");
        }
        // The flag wins over the emulator variable, which still means no credentials.
        let env = HashMap::from([("STORAGE_EMULATOR_HOST", "127.0.0.1:1".to_string())]);
        let mut args = gcs_args.to_vec();
        args.extend([
            "--store-endpoint-override",
            "http://127.0.0.1:2/storage/v1/",
        ]);
        let c = resolve(&args, &env).unwrap();
        assert_eq!(gcs(&c).base_url.as_deref(), Some("http://127.0.0.1:2"));
        assert!(gcs(&c).anonymous);
        // An https endpoint without the variable is a real service: credentials are used.
        let mut args = gcs_args.to_vec();
        args.extend([
            "--store-endpoint-override",
            "https://gcs.example/storage/v1/",
        ]);
        let c = resolve(&args, &HashMap::new()).unwrap();
        assert_eq!(gcs(&c).base_url.as_deref(), Some("https://gcs.example"));
        assert!(!gcs(&c).anonymous && !gcs(&c).allow_http);
    }

    #[test]
    fn abs_route() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("storageAccount"), "acct").unwrap();
        std::fs::write(dir.path().join("storageKey"), "a2V5").unwrap();
        std::fs::write(dir.path().join("domain"), "blob.core.chinacloudapi.cn").unwrap();
        let env = HashMap::from([(
            "AZURE_APPLICATION_CREDENTIALS",
            dir.path().display().to_string(),
        )]);
        let c = resolve(
            &["--storage-provider", "ABS", "--store-container", "c"],
            &env,
        )
        .unwrap();
        match &c.backend {
            Backend::Azure(a) => {
                assert_eq!(a.container, "c");
                assert_eq!(a.account.as_deref(), Some("acct"));
                assert_eq!(
                    a.endpoint.as_deref(),
                    Some("https://acct.blob.core.chinacloudapi.cn")
                );
            }
            _ => panic!("{}", c.describe()),
        }
        let err = resolve(
            &["--storage-provider", "ABS", "--store-container", "c"],
            &HashMap::new(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("AZURE_APPLICATION_CREDENTIALS"));
    }
}
