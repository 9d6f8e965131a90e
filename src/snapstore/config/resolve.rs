//! `--store URL` parsing and `--storage-provider` routing: the flags, the environment and the
//! provider's credential conventions ([`super::credentials`]) resolved into one [`StoreConfig`]
//! before anything touches the network.

use std::path::{Path, PathBuf};

use super::args::{MIN_CHUNK_SIZE, Provider, StoreArgs};
use super::credentials::{
    aws_credentials, azure_credentials, ecs_credentials, gcs_credentials, ocs_credentials,
    oss_credentials,
};
use super::env::{EnvLookup, process_env};
use super::error::ConfigError;
use super::store_config::{Backend, GcsConfig, S3Config, StoreConfig, gcs_base_url};

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
