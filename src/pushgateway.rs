//! Pushing a run's metrics to a Prometheus Pushgateway.
//!
//! Jobs and CronJobs end before Prometheus scrapes them, so their metrics go to a Pushgateway,
//! which keeps the last push per grouping key. The grouping key is `job` plus `command` plus
//! `store`: one series set per command per backup store, so two clusters' compaction CronJobs
//! pushing to one gateway never replace each other's metrics. A PUT replaces the whole group,
//! which is what a one-shot run wants (no stale series from an earlier run survive).

use std::time::Duration;

use base64::Engine as _;

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("pushgateway URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("pushing metrics to {url}: {source}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("pushing metrics to {url}: the gateway answered {status}: {body}")]
    Rejected {
        url: String,
        status: u16,
        body: String,
    },
}

/// Where one run's metrics go: `<gateway>/metrics/job/<job>/command/<command>/store@base64/<…>`.
pub fn group_url(
    gateway: &str,
    job: &str,
    command: &str,
    store: &str,
) -> Result<String, PushError> {
    let bad = |reason: &str| PushError::BadUrl {
        url: gateway.to_string(),
        reason: reason.to_string(),
    };
    if !(gateway.starts_with("http://") || gateway.starts_with("https://")) {
        return Err(bad("must start with http:// or https://"));
    }
    // Label values travel base64url-encoded (`@base64`), so a store URL with slashes is safe
    // in a path segment; job and command are our own names.
    let b64 = |v: &str| base64::engine::general_purpose::URL_SAFE.encode(v.as_bytes());
    let store = if store.is_empty() {
        // The gateway's convention for an empty label value.
        "store@base64/=".to_string()
    } else {
        format!("store@base64/{}", b64(store))
    };
    Ok(format!(
        "{}/metrics/job@base64/{}/command@base64/{}/{store}",
        gateway.trim_end_matches('/'),
        b64(job),
        b64(command)
    ))
}

/// Replaces the group's metrics with `text` (Prometheus text exposition format 0.0.4).
pub async fn push(
    gateway: &str,
    command: &str,
    store: &str,
    text: String,
) -> Result<(), PushError> {
    let url = group_url(gateway, "etcd-restore", command, store)?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|source| PushError::Http {
            url: url.clone(),
            source,
        })?;
    let response = client
        .put(&url)
        .header("Content-Type", "text/plain; version=0.0.4")
        .body(text)
        .send()
        .await
        .map_err(|source| PushError::Http {
            url: url.clone(),
            source,
        })?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let body = response.text().await.unwrap_or_default();
    Err(PushError::Rejected {
        url,
        status: status.as_u16(),
        body: body.chars().take(500).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_urls_encode_label_values() {
        let u = group_url("http://gw:9091/", "etcd-restore", "compact", "s3://b/p").unwrap();
        assert_eq!(
            u,
            "http://gw:9091/metrics/job@base64/ZXRjZC1yZXN0b3Jl/command@base64/Y29tcGFjdA==/store@base64/czM6Ly9iL3A="
        );
        assert!(group_url("gw:9091", "j", "c", "s").is_err());
        assert!(
            group_url("http://gw", "j", "c", "")
                .unwrap()
                .ends_with("/store@base64/=")
        );
    }
}
