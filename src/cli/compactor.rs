//! etcdbrctl compact's compactor flags (`pkg/types/compactor.go` `CompactorConfig`), which
//! druid's compaction Job passes (`internal/controller/compaction/reconciler.go`
//! `getCompactionJobArgs`), and what follows a successful compaction there
//! (`pkg/compactor/compactor.go`): the full-snapshot Lease update, then the metrics scrape wait.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use etcd_restore::kube::lease::{LeaseUpdate, update_full_snapshot_lease};
use etcd_restore::kube::{KubeClient, KubeConfig, KubeError, SERVICE_ACCOUNT_DIR};
use etcd_restore::snapstore::config::{parse_go_bool, process_env};
use etcd_restore::snapstore::{ObjectKind, classify_object};

use super::duration::{parse_go_duration, parse_positive_go_duration};

/// etcdbrctl's defaults (`pkg/types/health.go`).
const DEFAULT_FULL_LEASE: &str = "full-snapshot-revisions";
const DEFAULT_DELTA_LEASE: &str = "delta-snapshot-revisions";

fn go_bool(s: &str) -> Result<bool, String> {
    parse_go_bool(s).ok_or_else(|| format!("{s:?} is not a boolean (true, false, 1, 0, t, f)"))
}

#[derive(clap::Args, Debug)]
#[command(next_help_heading = "etcdbrctl compactor flags")]
pub struct CompactorArgs {
    /// etcdbrctl defragments its embedded etcd after compacting; the snapshot written here is
    /// always defragmented (accepted for compatibility).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool)]
    defragment: Option<bool>,

    /// Bound on publishing the new snapshot (upload, copy to its name, size check); etcdbrctl's
    /// bound on taking and saving it. Go duration, > 0.
    #[arg(long, value_name = "DURATION", default_value = "30m0s", value_parser = parse_positive_go_duration)]
    pub etcd_snapshot_timeout: Duration,

    /// etcdbrctl's bound on its embedded etcd's defragmentation; nothing here runs a separate
    /// defragmentation (the fold writes a compact file). Checked like etcdbrctl (> 0).
    #[arg(long, value_name = "DURATION", default_value = "8m0s", value_parser = parse_positive_go_duration)]
    etcd_defrag_timeout: Duration,

    /// After a successful compaction, write the new snapshot's revision and creation time into
    /// the full-snapshot Lease through the Kubernetes API (in-cluster service account; namespace
    /// $POD_NAMESPACE), as etcdbrctl does. A failed update is a warning; no in-cluster
    /// configuration is an error before any work.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool)]
    enable_snapshot_lease_renewal: bool,

    /// The Lease that records the latest full snapshot's revision.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_FULL_LEASE)]
    full_snapshot_lease_name: String,

    /// The delta-snapshot Lease: must be named when renewal is on (like etcdbrctl), but a
    /// compaction does not write it (etcdbrctl's does not either).
    #[arg(long, value_name = "NAME", default_value = DEFAULT_DELTA_LEASE)]
    delta_snapshot_lease_name: String,

    /// After a successful compaction, wait this long before exiting so Prometheus can scrape
    /// the Job (Go duration).
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_go_duration)]
    pub metrics_scrape_wait_duration: Duration,

    /// Test only: the API server URL instead of https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT.
    #[arg(long, hide = true, value_name = "URL")]
    kube_api_url: Option<String>,

    /// Test only: where the service-account `token` and `ca.crt` are.
    #[arg(long, hide = true, value_name = "DIR", default_value = SERVICE_ACCOUNT_DIR)]
    kube_service_account_dir: PathBuf,
}

/// The lease renewal set up before the compaction starts.
pub struct LeaseRenewal {
    client: KubeClient,
    namespace: Option<String>,
    name: String,
}

/// What the Lease step did, for the report.
#[derive(serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaseOutcome {
    Updated(LeaseUpdate),
    Failed(String),
}

impl CompactorArgs {
    /// etcdbrctl's `CompactorConfig.Validate` and its Kubernetes client, both before any work:
    /// an error here means nothing was compacted. `Ok(None)`: renewal is off.
    pub fn prepare(&self) -> anyhow::Result<Option<LeaseRenewal>> {
        if self.defragment == Some(false) {
            eprintln!(
                "notice: --defragment=false: the snapshot written is defragmented all the same"
            );
        }
        if !self.enable_snapshot_lease_renewal {
            return Ok(None);
        }
        if self.full_snapshot_lease_name.is_empty() {
            anyhow::bail!(
                "--full-snapshot-lease-name cannot be empty when --enable-snapshot-lease-renewal is true"
            );
        }
        if self.delta_snapshot_lease_name.is_empty() {
            anyhow::bail!(
                "--delta-snapshot-lease-name cannot be empty when --enable-snapshot-lease-renewal is true"
            );
        }
        let config = KubeConfig::in_cluster(
            &process_env,
            &self.kube_service_account_dir,
            self.kube_api_url.as_deref(),
        )?;
        let client = KubeClient::new(config)?;
        let namespace = process_env("POD_NAMESPACE").filter(|n| !n.is_empty());
        if namespace.is_none() {
            eprintln!("warning: {}", KubeError::NoNamespace);
        }
        Ok(Some(LeaseRenewal {
            client,
            namespace,
            name: self.full_snapshot_lease_name.clone(),
        }))
    }
}

impl LeaseRenewal {
    /// Records `object` (the published full snapshot) in the Lease. etcdbrctl only logs a
    /// failure here (`Snapshot lease update failed`) and still succeeds; so does this.
    pub async fn renew(&self, object: &str, revision: i64) -> LeaseOutcome {
        let r = async {
            let ns = self.namespace.as_deref().ok_or(KubeError::NoNamespace)?;
            update_full_snapshot_lease(&self.client, ns, &self.name, revision, created_on(object))
                .await
        }
        .await;
        match r {
            Ok(u) => {
                if u.patched {
                    eprintln!(
                        "renewed lease {}/{} (holderIdentity {}, renewTime {})",
                        u.namespace,
                        u.name,
                        u.holder_identity.as_deref().unwrap_or(""),
                        u.renew_time.as_deref().unwrap_or("")
                    );
                } else {
                    eprintln!(
                        "lease {}/{} already records a newer revision ({}); left as it is",
                        u.namespace,
                        u.name,
                        u.holder_identity.as_deref().unwrap_or("")
                    );
                }
                LeaseOutcome::Updated(u)
            }
            Err(e) => {
                eprintln!(
                    "warning: snapshot lease update failed: {e} (the snapshot is published; etcd-druid reads the revision from the lease, so it may schedule another compaction)"
                );
                LeaseOutcome::Failed(e.to_string())
            }
        }
    }
}

/// The snapshot's creation time, from its name (etcdbrctl uses the snapshot's `CreatedOn`, of
/// which the name holds the seconds).
fn created_on(object: &str) -> DateTime<Utc> {
    let secs = match classify_object(object, None) {
        ObjectKind::Snapshot(s) => s.name.created_on,
        _ => Utc::now().timestamp(),
    };
    Utc.timestamp_opt(secs, 0).single().unwrap_or_else(Utc::now)
}
