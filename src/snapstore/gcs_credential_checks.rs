//! etcdbrctl's checks of a GCS credential file (`$GOOGLE_APPLICATION_CREDENTIALS`), before
//! anything touches the network: a `service_account` key's project ID and fields, or an
//! `external_account` file (workload identity federation) as etcd-backup-restore v0.39+
//! validates it (`validateExternalAccountCredentials` in `pkg/snapstore/gcs_snapstore.go`,
//! itself copied from gardener-extension-provider-gcp). [`super::gcs_external`] turns an
//! accepted `external_account` file into tokens.

use std::path::Path;

use serde_json::Value;

/// The two kinds of key file etcdbrctl accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyType {
    ServiceAccount,
    ExternalAccount,
}

/// etcdbrctl's checks of the parsed key file at `path`, by its `type`: the error is the
/// detail etcdbrctl would give.
pub(crate) fn check(v: &Value, path: &Path) -> Result<KeyType, String> {
    match v.get("type").and_then(|t| t.as_str()) {
        Some("service_account") => {
            let project = v.get("project_id").and_then(|p| p.as_str()).unwrap_or("");
            if !project_id_ok(project) {
                return Err(format!(
                    "service account project ID {project:?} does not match ^[a-z][a-z0-9-]{{4,28}}[a-z0-9]$"
                ));
            }
            if let Some(m) = v.as_object()
                && let Some(f) = m
                    .keys()
                    .find(|k| !GCS_SERVICE_ACCOUNT_FIELDS.contains(&k.as_str()))
            {
                return Err(format!(
                    "forbidden field {f:?} is present, allowed fields are {}",
                    GCS_SERVICE_ACCOUNT_FIELDS.join(", ")
                ));
            }
            Ok(KeyType::ServiceAccount)
        }
        Some("external_account") => {
            let dir = path.parent().unwrap_or(Path::new("."));
            validate_external_account(v, dir)?;
            Ok(KeyType::ExternalAccount)
        }
        other => Err(format!(
            "unsupported credential type {other:?} is used, only \"service_account\" or \"external_account\" is allowed"
        )),
    }
}

/// etcdbrctl's check of a service-account key's `project_id`.
fn project_id_ok(id: &str) -> bool {
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

/// `allowedSubjectTokenType`.
pub(crate) const ALLOWED_SUBJECT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
/// `allowedTokenURLs`.
pub(crate) const ALLOWED_TOKEN_URLS: [&str; 1] = ["https://sts.googleapis.com/v1/token"];
const IMPERSONATION_PREFIX: &str =
    "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/";
const IMPERSONATION_SUFFIX: &str = ":generateAccessToken";

const REQUIRED: [&str; 6] = [
    "audience",
    "credential_source",
    "subject_token_type",
    "token_url",
    "type",
    "universe_domain",
];
pub(crate) const IMPERSONATION_KEY: &str = "service_account_impersonation_url";

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
fn validate_external_account(creds: &Value, dir: &Path) -> Result<(), String> {
    let project = std::fs::read(dir.join("projectID"))
        .map_err(|e| format!("{}: {e}", dir.join("projectID").display()))?;
    // Compared as read, like upstream (`string(projectID)`): a trailing newline fails.
    if !project_id_ok(&String::from_utf8_lossy(&project)) {
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
