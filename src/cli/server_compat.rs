//! etcdbrctl `server` flags that etcd-druid's StatefulSet passes to the backup sidecar
//! (`internal/component/statefulset/builder.go` `getBackupRestoreContainerCommandArgs`) for
//! what `serve` does not run: the snapshotter and its garbage collector, the defragmentation
//! schedule, snapshot and member lease renewal, profiling, the embedded etcd. They are
//! accepted so the sidecar's spec works unchanged, and named in one notice when given.

use super::restore::EmbeddedEtcdArgs;

#[derive(clap::Args, Debug)]
pub struct ServerCompatArgs {
    #[arg(long, hide = true)]
    schedule: Option<String>,
    #[arg(long, hide = true)]
    delta_snapshot_period: Option<String>,
    #[arg(long, hide = true)]
    delta_snapshot_memory_limit: Option<String>,
    #[arg(long, hide = true)]
    delta_snapshot_retention_period: Option<String>,
    #[arg(long, hide = true)]
    garbage_collection_period: Option<String>,
    #[arg(long, hide = true)]
    garbage_collection_policy: Option<String>,
    #[arg(long, hide = true)]
    max_backups: Option<String>,
    #[arg(long, hide = true, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    compress_snapshots: Option<String>,
    #[arg(long, hide = true)]
    compression_policy: Option<String>,
    #[arg(long, hide = true)]
    defragmentation_schedule: Option<String>,
    #[arg(long, hide = true)]
    etcd_defrag_timeout: Option<String>,
    #[arg(long, hide = true)]
    etcd_snapshot_timeout: Option<String>,
    #[arg(long, hide = true, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    enable_snapshot_lease_renewal: Option<String>,
    #[arg(long, hide = true)]
    full_snapshot_lease_name: Option<String>,
    #[arg(long, hide = true)]
    delta_snapshot_lease_name: Option<String>,
    #[arg(long, hide = true, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    enable_member_lease_renewal: Option<String>,
    #[arg(long, hide = true)]
    k8s_heartbeat_duration: Option<String>,
    #[arg(long, hide = true, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    enable_profiling: Option<String>,
    #[arg(long, hide = true, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    use_etcd_wrapper: Option<String>,
    #[arg(long, hide = true)]
    etcd_connection_timeout_leader_election: Option<String>,

    #[command(flatten)]
    embedded: EmbeddedEtcdArgs,
}

impl ServerCompatArgs {
    /// One notice naming the flags given.
    pub fn notice(&self) {
        self.embedded.notice();
        let given: Vec<&str> = [
            ("--schedule", &self.schedule),
            ("--delta-snapshot-period", &self.delta_snapshot_period),
            (
                "--delta-snapshot-memory-limit",
                &self.delta_snapshot_memory_limit,
            ),
            (
                "--delta-snapshot-retention-period",
                &self.delta_snapshot_retention_period,
            ),
            (
                "--garbage-collection-period",
                &self.garbage_collection_period,
            ),
            (
                "--garbage-collection-policy",
                &self.garbage_collection_policy,
            ),
            ("--max-backups", &self.max_backups),
            ("--compress-snapshots", &self.compress_snapshots),
            ("--compression-policy", &self.compression_policy),
            ("--defragmentation-schedule", &self.defragmentation_schedule),
            ("--etcd-defrag-timeout", &self.etcd_defrag_timeout),
            ("--etcd-snapshot-timeout", &self.etcd_snapshot_timeout),
            (
                "--enable-snapshot-lease-renewal",
                &self.enable_snapshot_lease_renewal,
            ),
            ("--full-snapshot-lease-name", &self.full_snapshot_lease_name),
            (
                "--delta-snapshot-lease-name",
                &self.delta_snapshot_lease_name,
            ),
            (
                "--enable-member-lease-renewal",
                &self.enable_member_lease_renewal,
            ),
            ("--k8s-heartbeat-duration", &self.k8s_heartbeat_duration),
            ("--enable-profiling", &self.enable_profiling),
            ("--use-etcd-wrapper", &self.use_etcd_wrapper),
            (
                "--etcd-connection-timeout-leader-election",
                &self.etcd_connection_timeout_leader_election,
            ),
        ]
        .into_iter()
        .filter(|(_, v)| v.is_some())
        .map(|(f, _)| f)
        .collect();
        if !given.is_empty() {
            eprintln!(
                "notice: accepted for etcdbrctl compatibility and not used (this server takes no snapshots, collects no garbage, defragments nothing, renews no leases, serves no profiles): {}",
                given.join(" ")
            );
        }
    }
}
