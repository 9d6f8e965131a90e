//! The full-snapshot Lease after a compaction, exactly as etcdbrctl writes it
//! (`pkg/health/heartbeat/heartbeat.go` `UpdateFullSnapshotLease`, called by
//! `pkg/compactor/compactor.go` through `FullSnapshotCaseLeaseUpdate`):
//!
//! * `GET /apis/coordination.k8s.io/v1/namespaces/$POD_NAMESPACE/leases/<name>`;
//! * a `spec.holderIdentity` that is not a decimal integer is an error; one above the new
//!   snapshot's revision means a newer full snapshot was recorded: nothing is written;
//! * otherwise a JSON merge patch (`application/merge-patch+json`, controller-runtime's
//!   `MergeFromWithOptimisticLock`) carrying the `metadata.resourceVersion` that was read,
//!   `spec.renewTime` = the snapshot's creation time as a `MicroTime`, and
//!   `spec.holderIdentity` = the revision in decimal unless it already says that revision;
//! * a 409 Conflict (someone else wrote the Lease in between) starts over, at most 4 attempts
//!   10, 50 and 250 ms apart (client-go's `retry.DefaultBackoff`); the whole update is bounded
//!   by 60 s (`brtypes.LeaseUpdateTimeoutDuration`).
//!
//! The delta-snapshot Lease is not touched by a compaction, in etcdbrctl either.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::{KubeClient, KubeError};

/// `brtypes.LeaseUpdateTimeoutDuration`.
pub const LEASE_UPDATE_TIMEOUT: Duration = Duration::from_secs(60);
/// `retry.DefaultBackoff`: 4 steps, 10 ms, factor 5, jitter 0.1.
const ATTEMPTS: u32 = 4;
const FIRST_BACKOFF: Duration = Duration::from_millis(10);

/// What was done to the Lease (part of compact's `--json` report).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LeaseUpdate {
    pub namespace: String,
    pub name: String,
    /// `spec.holderIdentity` as it was read.
    pub holder_identity_before: Option<String>,
    /// As it is now (unchanged when `patched` is false).
    pub holder_identity: Option<String>,
    /// The `spec.renewTime` written, if `patched`.
    pub renew_time: Option<String>,
    /// False when the Lease already named a newer revision.
    pub patched: bool,
    /// GET/PATCH rounds (more than 1 after a conflict).
    pub attempts: u32,
}

/// Kubernetes' `metav1.MicroTime` text: RFC 3339 in UTC with exactly six fractional digits.
pub fn micro_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

fn lease_path(namespace: &str, name: &str) -> String {
    format!("/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}")
}

/// Records `revision` (the new full snapshot's last revision) and `created` (its creation
/// time) in the Lease `namespace`/`name`.
pub async fn update_full_snapshot_lease(
    client: &KubeClient,
    namespace: &str,
    name: &str,
    revision: i64,
    created: DateTime<Utc>,
) -> Result<LeaseUpdate, KubeError> {
    let work = update(client, namespace, name, revision, created);
    tokio::time::timeout(LEASE_UPDATE_TIMEOUT, work)
        .await
        .unwrap_or_else(|_| {
            Err(KubeError::Timeout {
                namespace: namespace.into(),
                name: name.into(),
                seconds: LEASE_UPDATE_TIMEOUT.as_secs(),
            })
        })
}

async fn update(
    client: &KubeClient,
    namespace: &str,
    name: &str,
    revision: i64,
    created: DateTime<Utc>,
) -> Result<LeaseUpdate, KubeError> {
    let path = lease_path(namespace, name);
    let lease_err = |detail: String| KubeError::Lease {
        namespace: namespace.into(),
        name: name.into(),
        detail,
    };
    let mut backoff = FIRST_BACKOFF;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let lease = client.request("GET", &path, None).await?;
        check_is_lease(&lease).map_err(&lease_err)?;
        let before = match lease.pointer("/spec/holderIdentity") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                return Err(lease_err(format!(
                    "spec.holderIdentity is not a string: {other}"
                )));
            }
        };
        let recorded = match &before {
            None => None,
            // strconv.ParseInt(s, 10, 64)
            Some(s) => Some(s.parse::<i64>().map_err(|e| {
                lease_err(format!(
                    "spec.holderIdentity {s:?} is not a revision ({e}); etcdbrctl refuses it too"
                ))
            })?),
        };
        if recorded.is_some_and(|r| r > revision) {
            return Ok(LeaseUpdate {
                namespace: namespace.into(),
                name: name.into(),
                holder_identity: before.clone(),
                holder_identity_before: before,
                renew_time: None,
                patched: false,
                attempts: attempt,
            });
        }
        let Some(resource_version) = lease
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
        else {
            return Err(lease_err(
                "no metadata.resourceVersion to patch against (optimistic lock)".into(),
            ));
        };
        let renew_time = micro_time(created);
        let mut spec = json!({ "renewTime": renew_time });
        let holder = if recorded == Some(revision) {
            before.clone()
        } else {
            spec["holderIdentity"] = Value::String(revision.to_string());
            Some(revision.to_string())
        };
        let patch = json!({
            "metadata": { "resourceVersion": resource_version },
            "spec": spec,
        });
        let body = serde_json::to_vec(&patch).expect("JSON");
        match client
            .request("PATCH", &path, Some(("application/merge-patch+json", body)))
            .await
        {
            Ok(_) => {
                return Ok(LeaseUpdate {
                    namespace: namespace.into(),
                    name: name.into(),
                    holder_identity_before: before,
                    holder_identity: holder,
                    renew_time: Some(renew_time),
                    patched: true,
                    attempts: attempt,
                });
            }
            Err(KubeError::Status { status: 409, .. }) if attempt < ATTEMPTS => {
                tracing::info!(
                    lease = name,
                    attempt,
                    "lease changed since it was read; reading it again"
                );
                tokio::time::sleep(jitter(backoff)).await;
                backoff *= 5;
            }
            Err(e) => return Err(e),
        }
    }
}

/// The answer must be a coordination.k8s.io/v1 Lease (a proxy or a wrong URL answers
/// something else with 200).
fn check_is_lease(v: &Value) -> Result<(), String> {
    let api = v.get("apiVersion").and_then(Value::as_str);
    let kind = v.get("kind").and_then(Value::as_str);
    if api != Some("coordination.k8s.io/v1") || kind != Some("Lease") {
        return Err(format!(
            "the API answered apiVersion {api:?} kind {kind:?}, not a coordination.k8s.io/v1 Lease"
        ));
    }
    Ok(())
}

/// Up to 10% more, like `wait.Jitter(d, 0.1)`.
fn jitter(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|t| t.subsec_nanos())
        .unwrap_or(0);
    d + d.mul_f64(f64::from(nanos % 1000) / 10_000.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn micro_time_is_kubernetes_rfc3339_micro_in_utc() {
        let t = Utc.timestamp_opt(1_700_000_000, 123_456_789).unwrap();
        assert_eq!(micro_time(t), "2023-11-14T22:13:20.123456Z");
        let t = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
        assert_eq!(micro_time(t), "2023-11-14T22:13:20.000000Z");
    }
}
