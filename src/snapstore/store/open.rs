//! Opening a store: the object_store client of each provider, its credentials, retries and
//! TLS, from a resolved configuration.

use super::*;

/// The retry policy for cloud stores: exponential backoff from 100 ms to 15 s, at most 10 tries
/// within 3 minutes (object_store retries only idempotent requests and 5xx/throttling answers).
pub fn retry_config() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(15),
            base: 2.0,
        },
        max_retries: 10,
        retry_timeout: Duration::from_secs(180),
    }
}

impl Store {
    /// Opens the store described by a resolved configuration (no network access yet).
    pub fn open(config: &StoreConfig) -> Result<Store, StoreError> {
        let describe = config.describe();
        let open_err = |source| StoreError::Open {
            store: describe.clone(),
            source,
        };
        // etcdbrctl creates a missing temp directory (0700) when it opens any store
        // (pkg/snapstore/utils.go `GetSnapstore`): druid's compaction Job points
        // --snapstore-temp-directory into a fresh emptyDir.
        crate::tempdir::ensure(&config.temp_dir, "--snapstore-temp-directory").map_err(|e| {
            StoreError::Setup {
                store: describe.clone(),
                detail: e.to_string(),
            }
        })?;
        let mut lister = None;
        let mut locked = None;
        let inner: Arc<dyn ObjectStore> = match &config.backend {
            Backend::Local { root } => {
                if !root.is_dir() {
                    return Err(StoreError::Setup {
                        store: describe,
                        detail: "no such directory".into(),
                    });
                }
                Arc::new(
                    object_store::local::LocalFileSystem::new_with_prefix(root)
                        .map_err(open_err)?,
                )
            }
            Backend::S3(s3) => {
                let mut b = if s3.from_env {
                    object_store::aws::AmazonS3Builder::from_env()
                } else {
                    object_store::aws::AmazonS3Builder::new()
                };
                b = b
                    .with_bucket_name(&s3.bucket)
                    .with_retry(retry_config())
                    // Create-only copies (compact's final step) through a one-part multipart
                    // upload completed with If-None-Match, which AWS S3 honours.
                    .with_copy_if_not_exists(object_store::aws::S3CopyIfNotExists::Multipart)
                    .with_virtual_hosted_style_request(s3.virtual_hosted_style)
                    .with_allow_http(s3.allow_http);
                if let Some(e) = &s3.endpoint {
                    b = b.with_endpoint(e);
                }
                if let Some(r) = &s3.region {
                    b = b.with_region(r);
                } else if s3.endpoint.is_some() {
                    // S3-compatible servers accept any region, but the signature needs one.
                    b = b.with_region("us-east-1");
                }
                if let Some(k) = &s3.access_key_id {
                    b = b.with_access_key_id(k);
                }
                if let Some(k) = &s3.secret_access_key {
                    b = b.with_secret_access_key(k);
                }
                if let Some(r) = &s3.role_arn {
                    b = b.with_config(object_store::aws::AmazonS3ConfigKey::RoleArn, r);
                }
                if let Some(t) = &s3.web_identity_token_file {
                    b = b.with_config(
                        object_store::aws::AmazonS3ConfigKey::WebIdentityTokenFile,
                        t,
                    );
                }
                if let Some(k) = &s3.sse_customer_key {
                    b = b.with_ssec_encryption(k);
                }
                if s3.disable_bulk_delete {
                    b = b.with_disable_bulk_delete(true);
                }
                let options = client_options(
                    s3.allow_http,
                    s3.allow_invalid_certificates,
                    s3.trusted_ca_pem.as_deref(),
                    &describe,
                )?;
                b = b.with_client_options(options.clone());
                let bucket_url = s3_bucket_url(&b, s3);
                let built = b.clone().build().map_err(open_err)?;
                let raw = Arc::new(crate::snapstore::versions::S3Raw {
                    http: crate::snapstore::versions::http_client(
                        s3.allow_http,
                        s3.allow_invalid_certificates,
                        s3.trusted_ca_pem.as_deref(),
                    )
                    .map_err(|detail| StoreError::Setup {
                        store: describe.clone(),
                        detail,
                    })?,
                    bucket_url: bucket_url.0,
                    region: bucket_url.1,
                    credentials: built.credentials().clone(),
                    retry: retry_config(),
                });
                locked = Some(Arc::new(crate::snapstore::locked_s3::LockedS3::new(
                    &b,
                    options,
                    built.credentials().clone(),
                    Arc::clone(&raw),
                )));
                lister = Some(crate::snapstore::versions::Lister::S3(raw));
                Arc::new(built)
            }
            Backend::Gcs(g) => {
                // The JSON API client (crate::snapstore::gcs); object_store's GCS builder only provides
                // the credentials, and is not even built for an emulator (anonymous), so that
                // nothing can ask Google or a metadata server for a token.
                let auth = if g.anonymous {
                    None
                } else if let (true, Some(p)) = (g.external_account, &g.service_account_path) {
                    let ext = crate::snapstore::gcs_external::ExternalAccount::from_file(
                        p,
                        retry_config(),
                    )
                    .map_err(|detail| StoreError::Setup {
                        store: describe.clone(),
                        detail,
                    })?;
                    Some(Arc::new(ext) as object_store::gcp::GcpCredentialProvider)
                } else if g.base_url.is_some() && g.service_account_path.is_none() {
                    // Without a key file object_store would try application default
                    // credentials and then the cloud metadata server: never for a store
                    // named by its endpoint.
                    return Err(StoreError::Setup {
                        store: describe,
                        detail: "an https endpoint override and no credentials: set GOOGLE_APPLICATION_CREDENTIALS (a service_account or external_account file), or use an http:// emulator endpoint or STORAGE_EMULATOR_HOST (no authentication); the metadata server is never asked for a store with an endpoint override".into(),
                    });
                } else {
                    let mut b = if g.from_env {
                        object_store::gcp::GoogleCloudStorageBuilder::from_env()
                    } else {
                        object_store::gcp::GoogleCloudStorageBuilder::new()
                    };
                    b = b.with_bucket_name(&g.bucket).with_retry(retry_config());
                    if let Some(p) = &g.service_account_path {
                        b = b.with_service_account_path(p.display().to_string());
                    }
                    b = b.with_client_options(client_options(
                        g.allow_http,
                        false,
                        None,
                        &describe,
                    )?);
                    Some(b.build().map_err(open_err)?.credentials().clone())
                };
                let gcs = crate::snapstore::gcs::GcsJson::new(
                    g.base_url.as_deref(),
                    &g.bucket,
                    auth,
                    retry_config(),
                    g.allow_http,
                )
                .map_err(open_err)?;
                lister = Some(crate::snapstore::versions::Lister::Gcs(gcs.clone()));
                Arc::new(gcs)
            }
            Backend::Azure(a) => {
                let mut b = if a.from_env {
                    object_store::azure::MicrosoftAzureBuilder::from_env()
                } else {
                    object_store::azure::MicrosoftAzureBuilder::new()
                };
                b = b
                    .with_container_name(&a.container)
                    .with_retry(retry_config())
                    .with_allow_http(a.allow_http);
                if let Some(acct) = &a.account {
                    b = b.with_account(acct);
                }
                if let Some(k) = &a.access_key {
                    b = b.with_access_key(k);
                }
                if let Some(e) = &a.endpoint {
                    b = b.with_endpoint(e.trim_end_matches('/').to_string());
                }
                b = b.with_client_options(client_options(a.allow_http, false, None, &describe)?);
                let account = b
                    .get_config_value(&object_store::azure::AzureConfigKey::AccountName)
                    .unwrap_or_default();
                let container_url = match &a.endpoint {
                    Some(e) => format!("{}/{}", e.trim_end_matches('/'), a.container),
                    None => format!("https://{account}.blob.core.windows.net/{}", a.container),
                };
                let built = b.build().map_err(open_err)?;
                lister = Some(crate::snapstore::versions::Lister::Azure(Arc::new(
                    crate::snapstore::azure_list::AzureRaw {
                        http: crate::snapstore::versions::http_client(a.allow_http, false, None)
                            .map_err(|detail| StoreError::Setup {
                                store: describe.clone(),
                                detail,
                            })?,
                        container_url,
                        account,
                        credentials: built.credentials().clone(),
                        retry: retry_config(),
                    },
                )));
                Arc::new(built)
            }
        };
        Ok(Store {
            inner,
            prefix: config.prefix.clone(),
            describe,
            config: Some(config.clone()),
            lister,
            locked,
        })
    }
}

/// The bucket's URL and signing region as object_store's builder resolves them (path style
/// `<endpoint>/<bucket>`; virtual-hosted: the endpoint already names the bucket).
fn s3_bucket_url(
    b: &object_store::aws::AmazonS3Builder,
    s3: &crate::snapstore::config::S3Config,
) -> (String, String) {
    use object_store::aws::AmazonS3ConfigKey as K;
    let region = b
        .get_config_value(&K::Region)
        .unwrap_or_else(|| "us-east-1".to_string());
    let url = match (b.get_config_value(&K::Endpoint), s3.virtual_hosted_style) {
        (Some(e), false) => format!("{}/{}", e.trim_end_matches('/'), s3.bucket),
        (Some(e), true) => e.trim_end_matches('/').to_string(),
        (None, false) => format!("https://s3.{region}.amazonaws.com/{}", s3.bucket),
        (None, true) => format!("https://{}.s3.{region}.amazonaws.com", s3.bucket),
    };
    (url, region)
}

fn client_options(
    allow_http: bool,
    allow_invalid_certificates: bool,
    trusted_ca_pem: Option<&str>,
    describe: &str,
) -> Result<ClientOptions, StoreError> {
    // No overall request timeout: a multi-GB snapshot streams for minutes. A stalled
    // connection is caught by the read timeout instead (and retried).
    let mut o = ClientOptions::new()
        .with_allow_http(allow_http)
        .with_connect_timeout(Duration::from_secs(10))
        .with_timeout_disabled()
        .with_read_timeout(Duration::from_secs(60));
    if allow_invalid_certificates {
        o = o.with_allow_invalid_certificates(true);
    }
    if let Some(pem) = trusted_ca_pem {
        let cert =
            object_store::Certificate::from_pem(pem.as_bytes()).map_err(|e| StoreError::Setup {
                store: describe.to_string(),
                detail: format!("trustedCaCert: {e}"),
            })?;
        o = o.with_root_certificate(cert);
    }
    Ok(o)
}
