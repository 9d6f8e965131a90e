//! etcdbrctl's credential conventions per provider: a `<NAME>_JSON` file or a mounted secret
//! directory with one file per field (S3, OSS, OCS, ABS), environment variables (ECS), or a GCS
//! key file checked as etcdbrctl checks it ([`crate::snapstore::gcs_credential_checks`]).

use std::path::PathBuf;

use crate::snapstore::gcs_credential_checks::{KeyType, check};

use super::env::EnvLookup;
use super::error::ConfigError;
use super::store_config::{AzureConfig, GcsConfig, S3Config, gcs_base_url};

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
pub(super) fn aws_credentials(
    env: EnvLookup<'_>,
    var_prefix: &str,
) -> Result<Option<S3Config>, ConfigError> {
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
pub(super) fn oss_credentials(env: EnvLookup<'_>) -> Result<S3Config, ConfigError> {
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
pub(super) fn ecs_credentials(env: EnvLookup<'_>) -> Result<S3Config, ConfigError> {
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
pub(super) fn ocs_credentials(env: EnvLookup<'_>) -> Result<S3Config, ConfigError> {
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

/// GCS: `GOOGLE_APPLICATION_CREDENTIALS` = a service-account JSON key, checked as etcdbrctl
/// checks it (`project_id` format, no field outside its list); an optional
/// `storageAPIEndpoint` file in the same directory (the mounted secret) overrides the endpoint
/// (etcdbrctl, deprecated there).
pub(super) fn gcs_credentials(env: EnvLookup<'_>) -> Result<GcsConfig, ConfigError> {
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
    g.external_account = check(&v, &path)
        .map_err(|detail| ConfigError::Credentials { what, detail })?
        == KeyType::ExternalAccount;
    if let Some(dir) = path.parent() {
        match std::fs::read_to_string(dir.join("storageAPIEndpoint")) {
            Ok(e) if !e.trim().is_empty() => g.base_url = Some(gcs_base_url(e.trim())),
            _ => {}
        }
    }
    g.service_account_path = Some(path);
    Ok(g)
}

/// ABS: `AZURE_APPLICATION_CREDENTIALS[_JSON]` with storageAccount, storageKey and an optional
/// domain (default blob.core.windows.net).
pub(super) fn azure_credentials(env: EnvLookup<'_>) -> Result<Option<AzureConfig>, ConfigError> {
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
