//! `compact` as etcd-druid's compaction Job runs it (`getCompactionJobArgs`), and the
//! full-snapshot Lease update after it (etcdbrctl's `UpdateFullSnapshotLease`), against
//! testkit's stand-in Kubernetes API server (no real API server can run here; the stand-in
//! checks each request against the Lease schema and records it).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use testkit::kubeapi::{KubeApi, is_micro_time};
use testkit::serde_json::{self, Value};
use testkit::{Cli, Fixture, tempfile};

const CLI: Cli = Cli(env!("CARGO_BIN_EXE_etcd-restore"));
const NS: &str = "shoot--dev--a";
const FULL: &str = "etcd-main-full-snap";
const DELTA: &str = "etcd-main-delta-snap";

struct Job {
    tmp: tempfile::TempDir,
}

impl Job {
    /// A writable copy of a fixture store where druid's Local provider flags find it:
    /// `$HOME/<container>/<prefix>`.
    fn new() -> Job {
        let tmp = tempfile::tempdir().unwrap();
        let f = Fixture::load("3.5.1", "basic").unwrap();
        testkit::tree::copy_dir(&f.store(), &tmp.path().join("home/bkp/etcd-main")).unwrap();
        std::fs::create_dir_all(tmp.path().join("data/tmp")).unwrap();
        Job { tmp }
    }

    fn store(&self) -> PathBuf {
        self.tmp.path().join("home/bkp/etcd-main")
    }

    fn sa_dir(&self) -> PathBuf {
        self.tmp.path().join("serviceaccount")
    }

    fn objects(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.store().join("v2"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    /// druid's argument list for the Job, with the store in this job's temp dir.
    fn druid_args(&self, scrape_wait: &str) -> Vec<String> {
        let data = self.tmp.path().join("data");
        let d = data.display();
        vec![
            "compact".into(),
            format!("--data-dir={d}/compaction.etcd"),
            format!("--restoration-temp-snapshots-dir={d}/compaction.restoration.temp"),
            format!("--snapstore-temp-directory={d}/tmp"),
            format!("--metrics-scrape-wait-duration={scrape_wait}"),
            "--enable-snapshot-lease-renewal=true".into(),
            format!("--full-snapshot-lease-name={FULL}"),
            format!("--delta-snapshot-lease-name={DELTA}"),
            "--embedded-etcd-quota-bytes=8589934592".into(),
            "--etcd-defrag-timeout=8m0s".into(),
            "--etcd-snapshot-timeout=30m0s".into(),
            "--storage-provider=Local".into(),
            "--store-prefix=etcd-main".into(),
            "--store-container=bkp".into(),
        ]
    }

    /// The pod's environment: in-cluster variables pointing at `api` (none with `None`).
    fn command(&self, api: Option<&KubeApi>, args: &[String]) -> Command {
        let mut cmd = CLI.command();
        cmd.args(args)
            .arg("--json")
            .env_clear()
            .env("HOME", self.tmp.path().join("home"))
            .env("POD_NAME", "etcd-main-compactor-x7k2p")
            .env("POD_NAMESPACE", NS)
            .env("STORAGE_CONTAINER", "bkp");
        if let Some(api) = api {
            cmd.env("KUBERNETES_SERVICE_HOST", "127.0.0.1")
                .env("KUBERNETES_SERVICE_PORT", api.addr.port().to_string())
                .arg(format!(
                    "--kube-service-account-dir={}",
                    self.sa_dir().display()
                ));
        }
        cmd
    }
}

fn run(cmd: &mut Command) -> (i32, Value, String) {
    let out = cmd.output().expect("run compact");
    (
        out.status.code().unwrap_or(-1),
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `Full-00000000-<rev>-<unix>.gz` → the creation time as a MicroTime.
fn created_micro(object: &str) -> String {
    let secs: i64 = object
        .rsplit('/')
        .next()
        .unwrap()
        .split('-')
        .nth(3)
        .unwrap()
        .split('.')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // Independent of the code under test: through `date`.
    let out = Command::new("date")
        .args(["-u", "-d"])
        .arg(format!("@{}", secs))
        .arg("+%Y-%m-%dT%H:%M:%S.000000Z")
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn druid_job_renews_the_full_snapshot_lease_over_https_in_cluster() {
    let job = Job::new();
    let api = KubeApi::https();
    api.write_service_account(&job.sa_dir());
    api.create_lease(NS, FULL, None);
    api.create_lease(NS, DELTA, Some("5"));
    let full_rv = api.lease(NS, FULL).unwrap()["metadata"]["resourceVersion"].clone();
    let delta_before = api.lease(NS, DELTA).unwrap();

    let t0 = Instant::now();
    let (code, report, err) = run(&mut job.command(Some(&api), &job.druid_args("1s")));
    let took = t0.elapsed();
    assert_eq!(code, 0, "{err}");
    // --metrics-scrape-wait-duration=1s is waited after the work.
    assert!(took >= Duration::from_secs(1), "{took:?}");
    assert!(report["verified"].as_bool().unwrap(), "{report}");
    let revision = report["fold"]["revision"].as_i64().unwrap();
    let object = report["object"].as_str().unwrap();
    assert!(job.store().join(object).is_file());

    // The Lease: the new snapshot's revision and its creation time.
    let lease = api.lease(NS, FULL).unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], revision.to_string());
    let renew = lease["spec"]["renewTime"].as_str().unwrap();
    assert!(is_micro_time(renew), "{renew}");
    assert_eq!(renew, created_micro(object));
    // Everything druid put there is kept.
    assert_eq!(lease["metadata"]["ownerReferences"][0]["kind"], "Etcd");
    // The delta Lease is not written by a compaction (nor by etcdbrctl's).
    assert_eq!(api.lease(NS, DELTA).unwrap(), delta_before);

    let reqs = api.requests();
    assert_eq!(reqs.len(), 2, "{reqs:#?}");
    let path = format!("/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/{FULL}");
    assert_eq!(
        (
            reqs[0].method.as_str(),
            reqs[0].path.as_str(),
            reqs[0].status
        ),
        ("GET", path.as_str(), 200)
    );
    assert_eq!(
        (
            reqs[1].method.as_str(),
            reqs[1].path.as_str(),
            reqs[1].status
        ),
        ("PATCH", path.as_str(), 200)
    );
    assert_eq!(
        reqs[1].content_type.as_deref(),
        Some("application/merge-patch+json")
    );
    for r in &reqs {
        assert_eq!(r.authorization, Some(format!("Bearer {}", api.token)));
    }
    // Optimistic lock: the resourceVersion that was read.
    let patch = reqs[1].body.as_ref().unwrap();
    assert_eq!(patch["metadata"]["resourceVersion"], full_rv);
    assert_eq!(patch["spec"]["holderIdentity"], revision.to_string());
    assert!(api.violations().is_empty(), "{:?}", api.violations());

    let sl = &report["snapshot_lease"]["updated"];
    assert_eq!(sl["patched"], true);
    assert_eq!(sl["attempts"], 1);
    assert_eq!(sl["holder_identity_before"], Value::Null);
}

/// A compaction against a plain-HTTP stand-in (test-only `--kube-api-url`): its exit code,
/// report and stderr; the stand-in's state is left to look at.
fn compact_against(api: &KubeApi) -> (i32, Value, String, Job) {
    let job = Job::new();
    api.write_service_account(&job.sa_dir());
    let mut args = job.druid_args("0s");
    args.push(format!("--kube-api-url={}", api.url()));
    args.push(format!(
        "--kube-service-account-dir={}",
        job.sa_dir().display()
    ));
    let (c, r, e) = run(&mut job.command(None, &args));
    (c, r, e, job)
}

fn methods(api: &KubeApi) -> Vec<(String, u16)> {
    api.requests()
        .into_iter()
        .map(|r| (r.method, r.status))
        .collect()
}

fn pairs(v: &[(&str, u16)]) -> Vec<(String, u16)> {
    v.iter().map(|(m, s)| (m.to_string(), *s)).collect()
}

#[test]
fn lease_update_keeps_newer_revisions_retries_conflicts_and_only_warns_on_failure() {
    // A newer revision already recorded: nothing is written.
    let api = KubeApi::http();
    api.create_lease(NS, FULL, Some("99999999"));
    let before = api.lease(NS, FULL).unwrap();
    let (code, report, err, _job) = compact_against(&api);
    assert_eq!(code, 0, "{err}");
    assert_eq!(api.lease(NS, FULL).unwrap(), before);
    assert_eq!(methods(&api), pairs(&[("GET", 200)]));
    assert_eq!(report["snapshot_lease"]["updated"]["patched"], false);

    // The same revision: only renewTime changes.
    let api = KubeApi::http();
    let (_, probe, _, _) = compact_against(&KubeApi::http());
    let revision = probe["fold"]["revision"].as_i64().unwrap().to_string();
    api.create_lease(NS, FULL, Some(&revision));
    let (code, _, err, _job) = compact_against(&api);
    assert_eq!(code, 0, "{err}");
    let patch = api.requests()[1].body.clone().unwrap();
    assert!(patch["spec"].get("holderIdentity").is_none(), "{patch}");
    assert!(is_micro_time(patch["spec"]["renewTime"].as_str().unwrap()));

    // Two conflicts (another writer between GET and PATCH), then success: read again each time.
    let api = KubeApi::http();
    api.create_lease(NS, FULL, Some("1"));
    api.interfere(2);
    let (code, report, err, _job) = compact_against(&api);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        methods(&api),
        pairs(&[
            ("GET", 200),
            ("PATCH", 409),
            ("GET", 200),
            ("PATCH", 409),
            ("GET", 200),
            ("PATCH", 200)
        ])
    );
    assert_eq!(report["snapshot_lease"]["updated"]["attempts"], 3);
    assert_eq!(
        api.lease(NS, FULL).unwrap()["spec"]["holderIdentity"],
        report["fold"]["revision"].as_i64().unwrap().to_string()
    );
    assert!(api.violations().is_empty(), "{:?}", api.violations());

    // Conflicts every time: 4 attempts (client-go's DefaultBackoff), then a warning; the
    // snapshot is published and the job succeeds, as etcdbrctl's does.
    let api = KubeApi::http();
    api.create_lease(NS, FULL, Some("1"));
    api.interfere(100);
    let (code, report, err, job) = compact_against(&api);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        methods(&api)
            .iter()
            .filter(|(m, s)| m == "PATCH" && *s == 409)
            .count(),
        4
    );
    assert_eq!(methods(&api).len(), 8);
    assert!(err.contains("snapshot lease update failed"), "{err}");
    assert!(
        report["snapshot_lease"]["failed"]
            .as_str()
            .unwrap()
            .contains("409"),
        "{report}"
    );
    assert!(
        job.store()
            .join(report["object"].as_str().unwrap())
            .is_file()
    );

    // A holderIdentity that is no revision, and a missing Lease: warnings, nothing written.
    for (holder, create) in [(Some("etcd-main-0"), true), (None, false)] {
        let api = KubeApi::http();
        if create {
            api.create_lease(NS, FULL, holder);
        }
        let (code, report, err, _job) = compact_against(&api);
        assert_eq!(code, 0, "{err}");
        assert_eq!(
            methods(&api),
            pairs(&[("GET", if create { 200 } else { 404 })])
        );
        let failed = report["snapshot_lease"]["failed"].as_str().unwrap();
        assert!(
            failed.contains(if create { "not a revision" } else { "404" }),
            "{failed}"
        );
    }
}

#[test]
fn lease_renewal_setup_errors_stop_before_any_work_and_tls_is_checked() {
    // No in-cluster configuration: exit 1 before anything is compacted (etcdbrctl's
    // GetKubernetesClientSetOrError is fatal).
    let job = Job::new();
    let before = job.objects();
    let (code, _, err) = run(&mut job.command(None, &job.druid_args("0s")));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("KUBERNETES_SERVICE_HOST"), "{err}");
    assert_eq!(job.objects(), before);

    // In cluster but no token mounted.
    let api = KubeApi::https();
    let (code, _, err) = run(&mut job.command(Some(&api), &job.druid_args("0s")));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("token"), "{err}");
    assert_eq!(job.objects(), before);

    // Empty lease names with renewal on (etcdbrctl's Validate).
    let mut args = job.druid_args("0s");
    args.push("--delta-snapshot-lease-name=".into());
    let (code, _, err) = run(&mut job.command(None, &args));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--delta-snapshot-lease-name"), "{err}");
    // Timeouts must be above zero; durations are Go's.
    for bad in [
        "--etcd-snapshot-timeout=0s",
        "--etcd-defrag-timeout=10",
        "--metrics-scrape-wait-duration=1d",
    ] {
        let mut args = job.druid_args("0s");
        args.push(bad.into());
        let (code, _, err) = run(&mut job.command(None, &args));
        assert_eq!(code, 2, "{bad}: {err}");
    }
    assert_eq!(job.objects(), before);

    // A cluster CA that is not the server's: the TLS handshake fails, the update is a
    // warning, the compaction stands.
    let other = KubeApi::https();
    other.write_service_account(&job.sa_dir());
    std::fs::write(job.sa_dir().join("token"), format!("{}\n", api.token)).unwrap();
    api.create_lease(NS, FULL, None);
    let (code, report, err) = run(&mut job.command(Some(&api), &job.druid_args("0s")));
    assert_eq!(code, 0, "{err}");
    assert!(
        report["snapshot_lease"]["failed"]
            .as_str()
            .unwrap()
            .contains("certificate"),
        "{report}"
    );
    assert!(api.requests().is_empty());
    assert_eq!(api.lease(NS, FULL).unwrap()["spec"], serde_json::json!({}));

    // Renewal off (etcdbrctl's default): no Kubernetes needed, no lease in the report.
    let job = Job::new();
    let args: Vec<String> = job
        .druid_args("0s")
        .into_iter()
        .filter(|a| !a.starts_with("--enable-snapshot-lease-renewal"))
        .collect();
    let (code, report, err) = run(&mut job.command(None, &args));
    assert_eq!(code, 0, "{err}");
    assert!(report.get("snapshot_lease").is_none());
}
