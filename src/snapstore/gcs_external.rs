//! GCS workload identity federation: `external_account` credential files, accepted with
//! etcd-backup-restore's validation (v0.39+, `validateExternalAccountCredentials` in
//! `pkg/snapstore/gcs_snapstore.go`, itself copied from gardener-extension-provider-gcp) and
//! turned into access tokens the way Google's `externalaccount` client does: the projected
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

use super::retry;

/// `allowedSubjectTokenType`.
pub const ALLOWED_SUBJECT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
/// `allowedTokenURLs`.
pub const ALLOWED_TOKEN_URLS: [&str; 1] = ["https://sts.googleapis.com/v1/token"];
const IMPERSONATION_PREFIX: &str =
    "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/";
const IMPERSONATION_SUFFIX: &str = ":generateAccessToken";
/// The scopes Go's `storage.NewClient` asks for.
const SCOPES: [&str; 2] = [
    "https://www.googleapis.com/auth/devstorage.full_control",
    "https://www.googleapis.com/auth/cloud-platform",
];
/// The test-only override of Google's auth hosts (module docs).
pub const TEST_AUTH_URL_ENV: &str = "ETCD_RESTORE_TEST_GOOGLE_AUTH_URL";

const REQUIRED: [&str; 6] = [
    "audience",
    "credential_source",
    "subject_token_type",
    "token_url",
    "type",
    "universe_domain",
];
const IMPERSONATION_KEY: &str = "service_account_impersonation_url";

/// `allowedServiceAccountImpersonationURLRegExps`:
/// `^https://iamcredentials\.googleapis\.com/v1/projects/-/serviceAccounts/.+:generateAccessToken$`
/// (RE2: `.` is not a newline, `$` is the end of the text).
fn impersonation_url_allowed(u: &str) -> bool {
    u.strip_prefix(IMPERSONATION_PREFIX)
        .and_then(|r| r.strip_suffix(IMPERSONATION_SUFFIX))
        .is_some_and(|mid| !mid.is_empty() && !mid.contains('\n'))
}

fn is_https(u: &str) -> bool {
    reqwest::Url::parse(u).is_ok_and(|u| u.scheme() == "https")
}

/// Go's `%q` of a JSON value as upstream prints it in its errors (close enough: the JSON).
fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

/// Upstream's checks, in upstream's order, on a parsed `external_account` file whose
/// directory is `dir` (the mounted secret: `projectID` and `token` beside it).
pub fn validate(creds: &Value, dir: &Path) -> Result<(), String> {
    let project = std::fs::read(dir.join("projectID"))
        .map_err(|e| format!("{}: {e}", dir.join("projectID").display()))?;
    // Compared as read, like upstream (`string(projectID)`): a trailing newline fails.
    if !super::config::gcs_project_id_ok(&String::from_utf8_lossy(&project)) {
        return Err(
            "external account project ID does not match the expected format \"^(?P<project>[a-z][a-z0-9-]{4,28}[a-z0-9])$\""
                .into(),
        );
    }
    let Some(map) = creds.as_object() else {
        return Err(
            "failed to parse external account credentials config: not a JSON object".into(),
        );
    };
    let extra: Vec<&str> = map
        .keys()
        .map(String::as_str)
        .filter(|k| !REQUIRED.contains(k) && *k != IMPERSONATION_KEY)
        .collect();
    if !extra.is_empty() {
        return Err(format!(
            "credentialsConfig contains not allowed fields {:?}, the only allowed fields are \"{}, {IMPERSONATION_KEY}\"",
            extra.join(","),
            REQUIRED.join(", ")
        ));
    }
    if let Some(f) = REQUIRED.iter().find(|f| !map.contains_key(**f)) {
        return Err(format!(
            "credentialsConfig is missing the required field {f:?}"
        ));
    }
    let stt = &map["subject_token_type"];
    if stt.as_str() != Some(ALLOWED_SUBJECT_TOKEN_TYPE) {
        return Err(format!(
            "field \"subject_token_type\" has invalid value {}, allowed is {ALLOWED_SUBJECT_TOKEN_TYPE:?}",
            shown(stt)
        ));
    }
    let Some(token_url) = map["token_url"].as_str() else {
        return Err("field \"token_url\" must have value of type string".into());
    };
    if !ALLOWED_TOKEN_URLS.contains(&token_url) {
        return Err(format!(
            "field \"token_url\" is set to {token_url:?} which is not among the allowed values {:?}",
            ALLOWED_TOKEN_URLS.join(",")
        ));
    }
    if !is_https(token_url) {
        return Err(format!(
            "field \"token_url\" having value {token_url:?} must use the https scheme"
        ));
    }
    let Some(source) = map["credential_source"].as_object() else {
        return Err("field \"credential_source\" must have value of type map[string]any".into());
    };
    let expected = serde_json::json!({
        "file": dir.join("token").display().to_string(),
        "format": { "type": "text" },
    });
    if Value::Object(source.clone()) != expected {
        return Err(format!(
            "field \"credential_source\" has invalid value {}, expected value is {expected}",
            Value::Object(source.clone())
        ));
    }
    if let Some(u) = map.get(IMPERSONATION_KEY) {
        let Some(u) = u.as_str() else {
            return Err(format!(
                "field {IMPERSONATION_KEY:?} must have value of type string"
            ));
        };
        if !impersonation_url_allowed(u) {
            return Err(format!(
                "field {IMPERSONATION_KEY:?} is set to {u:?} which is not among the allowed values \"^https://iamcredentials\\\\.googleapis\\\\.com/v1/projects/-/serviceAccounts/.+:generateAccessToken$\""
            ));
        }
        if !is_https(u) {
            return Err(format!(
                "field {IMPERSONATION_KEY:?} is using a scheme other than https"
            ));
        }
    }
    Ok(())
}

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
    /// From a file [`validate`] accepted.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn impersonation_urls_as_upstream_regexp() {
        let ok = "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/sa@p.iam.gserviceaccount.com:generateAccessToken";
        assert!(impersonation_url_allowed(ok));
        for bad in [
            "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/:generateAccessToken",
            "https://iamcredentials.googleapis.com/v1/projects/p/serviceAccounts/sa:generateAccessToken",
            "http://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/sa:generateAccessToken",
            "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/sa:generateAccessToken/x",
            "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/s\na:generateAccessToken",
        ] {
            assert!(!impersonation_url_allowed(bad), "{bad}");
        }
    }
}
