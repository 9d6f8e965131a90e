//! etcd-druid's compaction Job, run as druid writes it: the whole argument list of
//! `getCompactionJobArgs` and the environment of `createCompactionJob`
//! (gardener/etcd-druid `internal/controller/compaction/reconciler.go`, `internal/utils/envvar.go`
//! `GetBackupRestoreContainerEnvVars`) on a fresh directory tree — the Job's `emptyDir` volume
//! at `/var/etcd/data` exists and is empty, nothing below it does — against a Local store.
//! Only the volume's mount point is moved into the test's directory, and the service-account
//! mount (`/var/run/secrets/kubernetes.io/serviceaccount`) is pointed at the stand-in Lease API
//! server's (`--kube-service-account-dir`, test only): the Job renews the full-snapshot Lease.
//! `tests/it/compact/lease.rs` covers the Lease update itself.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use testkit::kubeapi::KubeApi;
use testkit::{Cli, Fixture, tempfile};

const CLI: Cli = Cli(env!("CARGO_BIN_EXE_etcd-restore"));

/// The Etcd resource's name (druid derives the lease names from it) and its namespace.
const ETCD: &str = "etcd-main";
const NS: &str = "shoot--dev--test";
/// The Local store's container and prefix, as an Etcd's `spec.backup.store` gives them.
const CONTAINER: &str = "default.bkp";
const PREFIX: &str = "etcd-main";

/// `getCompactionJobArgs` for an Etcd with the default quota, both timeouts set and a Local
/// store, with `/var/etcd/data` (the Job's `etcd-workspace-dir` mount) at `data`.
fn druid_args(data: &Path) -> Vec<String> {
    let d = data.display();
    vec![
        "compact".into(),
        format!("--data-dir={d}/compaction.etcd"),
        format!("--restoration-temp-snapshots-dir={d}/compaction.restoration.temp"),
        format!("--snapstore-temp-directory={d}/tmp"),
        // druid's default `metricsScrapeWaitDuration` (0) as `Duration.String()` prints it.
        "--metrics-scrape-wait-duration=0s".into(),
        "--enable-snapshot-lease-renewal=true".into(),
        format!("--full-snapshot-lease-name={ETCD}-full-snap"),
        format!("--delta-snapshot-lease-name={ETCD}-delta-snap"),
        // DefaultETCDQuota (8 Gi).
        "--embedded-etcd-quota-bytes=8589934592".into(),
        "--etcd-defrag-timeout=15m0s".into(),
        "--etcd-snapshot-timeout=15m0s".into(),
        "--storage-provider=Local".into(),
        format!("--store-prefix={PREFIX}"),
        format!("--store-container={CONTAINER}"),
    ]
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn druids_compaction_job_runs_unchanged_on_a_fresh_volume() {
    let f = Fixture::load("3.5.1", "basic").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    // etcdbrctl's Local store: $HOME/<container>/<prefix>.
    let home = tmp.path().join("home");
    let store = home.join(CONTAINER).join(PREFIX);
    testkit::tree::copy_dir(&f.store(), &store).unwrap();
    let data = tmp.path().join("var/etcd/data");
    std::fs::create_dir_all(&data).unwrap();
    let before: Vec<_> = std::fs::read_dir(store.join("v2")).unwrap().collect();
    let api = KubeApi::https();
    let sa = tmp.path().join("serviceaccount");
    api.write_service_account(&sa);
    let full_lease = format!("{ETCD}-full-snap");
    api.create_lease(NS, &full_lease, None);
    api.create_lease(NS, &format!("{ETCD}-delta-snap"), None);

    let out = CLI
        .command()
        .args(druid_args(&data))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &home)
        .env("POD_NAME", format!("{ETCD}-compactor-x7k2p"))
        .env("POD_NAMESPACE", NS)
        .env("STORAGE_CONTAINER", CONTAINER)
        .env("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        .env("KUBERNETES_SERVICE_PORT", api.addr.port().to_string())
        .arg(format!("--kube-service-account-dir={}", sa.display()))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}\n{stderr}", out.status);

    // Both temporary directories were created, private, and our work in them is gone.
    for dir in ["tmp", "compaction.restoration.temp"] {
        let p = data.join(dir);
        assert_eq!(mode(&p), 0o700, "{}", p.display());
        let left: Vec<_> = std::fs::read_dir(&p).unwrap().collect();
        assert!(left.is_empty(), "{}: {left:?}", p.display());
    }
    // The compacted full snapshot is in the store, at the backup's last revision.
    let after: Vec<String> = std::fs::read_dir(store.join("v2"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(after.len(), before.len() + 1, "{after:?}\n{stderr}");
    let want_name = format!("Full-00000000-{:08}-", f.oracle.final_revision);
    assert!(
        after.iter().any(|n| n.starts_with(&want_name)),
        "no {want_name}* among {after:?}"
    );
    // The full-snapshot Lease names the new snapshot's revision.
    let lease = api.lease(NS, &full_lease).unwrap();
    assert_eq!(
        lease["spec"]["holderIdentity"],
        f.oracle.final_revision.to_string(),
        "{lease:#}\n{stderr}"
    );
    assert!(api.violations().is_empty(), "{:?}", api.violations());
    // And a restore from the store now starts from it.
    let dir = tmp.path().join("restored.etcd");
    let r = CLI.restore(&store, &dir, &["--json"]);
    let report: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert!(
        report["replay"]["base"]
            .as_str()
            .unwrap()
            .contains(&want_name),
        "{report}"
    );
    assert_eq!(
        report["replay"]["final_revision"].as_i64(),
        Some(f.oracle.final_revision)
    );
}
