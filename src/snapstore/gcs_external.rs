//! GCS workload identity federation: an `external_account` credential file, accepted by
//! [`super::gcs_credential_checks`] as etcd-backup-restore checks it, turned into access tokens
//! the way Google's `externalaccount` client does: the projected
//! service-account token (`credential_source.file`) is exchanged at the STS `token_url`, then,
//! if given, for a service account's token at `service_account_impersonation_url`.
//!
//! Tests reach a loopback stand-in instead of Google through one test-only override:
//! `ETCD_RESTORE_TEST_GOOGLE_AUTH_URL=http://127.0.0.1:<port>` replaces the scheme and host of
//! both (allowed) URLs when the requests are sent; validation still sees the real ones.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use object_store::gcp::GcpCredential;
use object_store::{CredentialProvider, RetryConfig};
use serde_json::Value;

use super::gcs_credential_checks::IMPERSONATION_KEY;
use super::retry;

/// The scopes Go's `storage.NewClient` asks for.
const SCOPES: [&str; 2] = [
    "https://www.googleapis.com/auth/devstorage.full_control",
    "https://www.googleapis.com/auth/cloud-platform",
];
/// The test-only override of Google's auth hosts (module docs).
pub const TEST_AUTH_URL_ENV: &str = "ETCD_RESTORE_TEST_GOOGLE_AUTH_URL";

/// Access tokens from an `external_account` file, cached until a minute before they expire.
#[derive(Debug)]
pub struct ExternalAccount {
    http: reqwest::Client,
    audience: String,
    subject_token_type: String,
    token_url: String,
    impersonation_url: Option<String>,
    token_file: PathBuf,
    retry: RetryConfig,
    cache: tokio::sync::Mutex<Option<(Arc<GcpCredential>, Instant)>>,
}

#[derive(serde::Deserialize)]
struct StsAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct ImpersonationAnswer {
    access_token: String,
    #[serde(default)]
    expire_time: Option<String>,
}

impl ExternalAccount {
    /// From a file [`super::gcs_credential_checks`] accepted.
    pub fn from_file(path: &Path, retry: RetryConfig) -> Result<ExternalAccount, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let v: Value =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let s = |k: &str| v[k].as_str().map(str::to_string);
        let over = std::env::var(TEST_AUTH_URL_ENV)
            .ok()
            .filter(|o| !o.is_empty());
        let http = super::provider_http::http_client(over.is_some(), false, None)?;
        let rebase = |u: String| match &over {
            Some(base) => match reqwest::Url::parse(&u) {
                Ok(p) => format!("{}{}", base.trim_end_matches('/'), p.path()),
                Err(_) => u,
            },
            None => u,
        };
        Ok(ExternalAccount {
            http,
            audience: s("audience").unwrap_or_default(),
            subject_token_type: s("subject_token_type").unwrap_or_default(),
            token_url: rebase(s("token_url").unwrap_or_default()),
            impersonation_url: s(IMPERSONATION_KEY).map(rebase),
            token_file: PathBuf::from(v["credential_source"]["file"].as_str().unwrap_or_default()),
            retry,
            cache: tokio::sync::Mutex::new(None),
        })
    }

    async fn post(
        &self,
        url: &str,
        what: &str,
        body: &(dyn Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder + Sync),
    ) -> Result<bytes::Bytes, String> {
        let (status, _, answer) = retry::call(&self.retry, what, || async {
            Ok(body(self.http.post(url)))
        })
        .await?;
        if !status.is_success() {
            let text: String = String::from_utf8_lossy(&answer).chars().take(300).collect();
            return Err(format!("{what}: HTTP {status}: {text}"));
        }
        Ok(answer)
    }

    /// The STS exchange, then the impersonation if configured: a token and its lifetime.
    async fn fetch(&self) -> Result<(String, Duration), String> {
        let subject = std::fs::read_to_string(&self.token_file).map_err(|e| {
            format!(
                "reading the subject token {}: {e}",
                self.token_file.display()
            )
        })?;
        let subject = subject.trim().to_string();
        let scope = SCOPES.join(" ");
        let form = [
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            ("audience", self.audience.as_str()),
            ("scope", scope.as_str()),
            (
                "requested_token_type",
                "urn:ietf:params:oauth:token-type:access_token",
            ),
            ("subject_token", subject.as_str()),
            ("subject_token_type", self.subject_token_type.as_str()),
        ];
        // application/x-www-form-urlencoded, through Url's encoder (reqwest is built without
        // its `form` feature).
        let mut enc = reqwest::Url::parse("http://form.invalid/").map_err(|e| e.to_string())?;
        enc.query_pairs_mut().extend_pairs(form);
        let encoded = enc.query().unwrap_or_default().to_string();
        let sts_body = self
            .post(&self.token_url, "STS token exchange", &|r| {
                r.header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(encoded.clone())
            })
            .await?;
        let sts: StsAnswer = serde_json::from_slice(&sts_body)
            .map_err(|e| format!("STS token exchange: bad answer: {e}"))?;
        let sts_ttl = Duration::from_secs(sts.expires_in.unwrap_or(3600));
        let Some(url) = &self.impersonation_url else {
            return Ok((sts.access_token, sts_ttl));
        };
        let body = serde_json::json!({ "scope": SCOPES, "lifetime": "3600s" }).to_string();
        let bearer = sts.access_token;
        let imp_body = self
            .post(url, "service account impersonation", &|r| {
                r.bearer_auth(&bearer)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.clone())
            })
            .await?;
        let imp: ImpersonationAnswer = serde_json::from_slice(&imp_body)
            .map_err(|e| format!("service account impersonation: bad answer: {e}"))?;
        let ttl = imp
            .expire_time
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
            .and_then(|t| {
                (t.timestamp() - chrono::Utc::now().timestamp())
                    .try_into()
                    .ok()
            })
            .map(Duration::from_secs)
            .unwrap_or(Duration::from_secs(3600));
        Ok((imp.access_token, ttl))
    }
}

#[async_trait::async_trait]
impl CredentialProvider for ExternalAccount {
    type Credential = GcpCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<GcpCredential>> {
        let mut cache = self.cache.lock().await;
        if let Some((c, until)) = cache.as_ref()
            && Instant::now() < *until
        {
            return Ok(c.clone());
        }
        let (bearer, ttl) = self
            .fetch()
            .await
            .map_err(|e| object_store::Error::Generic {
                store: "GCS",
                source: format!("external_account credentials: {e}").into(),
            })?;
        let c = Arc::new(GcpCredential { bearer });
        let refresh = Instant::now() + ttl.saturating_sub(Duration::from_secs(60));
        *cache = Some((c.clone(), refresh));
        Ok(c)
    }
}
