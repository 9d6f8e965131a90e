//! Compaction into an S3 bucket with Object Lock and a default retention (GOVERNANCE, 1 day),
//! on moto, through a recording proxy (docs/compact.md, "Object-locked S3 buckets"): the run
//! succeeds, the new full snapshot is listed and restores to what etcd serves, and every
//! write carried what AWS requires there — `x-amz-checksum-sha256` (the body's) with
//! `x-amz-sdk-checksum-algorithm: SHA256` on PutObject and UploadPart, both signed;
//! `x-amz-checksum-algorithm: SHA256` on CreateMultipartUpload — and no other request did.
//! One snapshot fits one part, the other needs three.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use testkit::faultproxy::{FaultPlan, FaultProxy, RecordedRequest};
use testkit::objstore::{self, MOTO_ACCESS_KEY, MotoServer};
use testkit::{EtcdBins, EtcdConfig, EtcdProcess, Fixture};

const CLI: testkit::Cli = testkit::Cli(env!("CARGO_BIN_EXE_etcd-restore"));
const LOCK: &str = "etcd/v2/.etcd-restore-compact.lock";

/// `create ROOT`: the locked bucket holding ROOT's files under the prefix. Then, either way:
/// every version and delete marker below the prefix with its retention and checksum.
const BUCKET: &str = r#"
import sys, os, json, boto3
cmd, endpoint, bucket, prefix = sys.argv[1:5]
s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing",
                  aws_secret_access_key="testing", region_name="us-east-1")
if cmd == "create":
    root = sys.argv[5]
    s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    s3.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}})
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            with open(p, "rb") as fh:
                s3.put_object(Bucket=bucket, Key=prefix + "/" + os.path.relpath(p, root), Body=fh.read())
versions, markers = [], []
for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
    for v in page.get("Versions", []):
        e = {"key": v["Key"], "version": v["VersionId"], "latest": v["IsLatest"]}
        h = s3.head_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"])
        if "ObjectLockMode" in h:
            e["mode"], e["until"] = h["ObjectLockMode"], h["ObjectLockRetainUntilDate"].timestamp()
        a = s3.get_object_attributes(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"],
                                     ObjectAttributes=["Checksum"])
        e["sha256"] = a.get("Checksum", {}).get("ChecksumSHA256")
        versions.append(e)
    markers += [{"key": m["Key"], "version": m["VersionId"], "latest": m["IsLatest"]}
                for m in page.get("DeleteMarkers", [])]
print(json.dumps({"versions": versions, "markers": markers}))
"#;

struct Versions {
    versions: Vec<serde_json::Value>,
    markers: Vec<serde_json::Value>,
}

fn versions(moto: &MotoServer, bucket: &str, create_from: Option<&Path>) -> Versions {
    let root = create_from.map(|p| p.display().to_string());
    let mut args = vec![
        if root.is_some() { "create" } else { "list" },
        &moto.endpoint(),
        bucket,
        "etcd",
    ]
    .into_iter()
    .map(str::to_string)
    .collect::<Vec<_>>();
    args.extend(root);
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let v: serde_json::Value =
        serde_json::from_str(&objstore::python(BUCKET, &a).unwrap()).unwrap();
    Versions {
        versions: v["versions"].as_array().unwrap().clone(),
        markers: v["markers"].as_array().unwrap().clone(),
    }
}

fn key(v: &serde_json::Value) -> &str {
    v["key"].as_str().unwrap()
}

/// The store flags and environment of `s3://BUCKET/etcd` behind `endpoint`.
fn s3_command(sub: &str, bucket: &str, endpoint: &str, creds: &Path) -> Command {
    let mut c = CLI.command();
    c.arg(sub)
        .arg("--store")
        .arg(format!("s3://{bucket}/etcd"))
        .arg("--store-endpoint-override")
        .arg(endpoint)
        .env("AWS_APPLICATION_CREDENTIALS_JSON", creds);
    c
}

fn b64_sha256(r: &RecordedRequest) -> String {
    use testkit::base64::Engine as _;
    testkit::base64::engine::general_purpose::STANDARD.encode(r.body_sha256)
}

/// What each request carried: PutObject and UploadPart the body's SHA-256 and the SDK's
/// algorithm header, signed; CreateMultipartUpload the algorithm; nothing else the SDK header
/// (it names the algorithm of a body checksum, which only those two requests carry).
/// Returns the number of UploadPart requests.
fn assert_checksummed_writes(requests: &[RecordedRequest]) -> usize {
    let mut parts = 0;
    let mut puts = 0;
    for r in requests {
        let what = format!("{} {}", r.method, r.target);
        let upload_part = r.method == "PUT" && r.target.contains("partNumber=");
        let put_object = r.method == "PUT" && !r.target.contains('?');
        if upload_part || put_object {
            if r.header("x-amz-copy-source").is_some() {
                continue;
            }
            assert_eq!(
                r.header("x-amz-sdk-checksum-algorithm"),
                Some("SHA256"),
                "{what}"
            );
            assert_eq!(
                r.header("x-amz-checksum-sha256"),
                Some(b64_sha256(r).as_str()),
                "{what}: the checksum is the body's"
            );
            let signed = r.signed_headers();
            for h in ["x-amz-sdk-checksum-algorithm", "x-amz-checksum-sha256"] {
                assert!(
                    signed.iter().any(|s| s == h),
                    "{what}: {h} not signed: {signed:?}"
                );
            }
            if upload_part {
                parts += 1;
            } else {
                puts += 1;
            }
        } else {
            assert_eq!(r.header("x-amz-sdk-checksum-algorithm"), None, "{what}");
        }
        if r.method == "POST" && r.target.ends_with("?uploads") {
            assert_eq!(
                r.header("x-amz-checksum-algorithm"),
                Some("SHA256"),
                "{what}"
            );
        }
    }
    assert!(puts >= 1, "the store lock was written with PutObject");
    parts
}

struct Run {
    report: serde_json::Value,
    before: Versions,
    after: Versions,
    parts: usize,
    creds: PathBuf,
    endpoint: String,
}

/// `compact` (plus `extra`) of ROOT's store in a new locked bucket, through a recorder.
fn compact_locked(moto: &MotoServer, bucket: &str, root: &Path, tmp: &Path, extra: &[&str]) -> Run {
    let before = versions(moto, bucket, Some(root));
    let creds = tmp.join("aws.json");
    std::fs::write(
        &creds,
        format!(
            r#"{{"accessKeyID":"{MOTO_ACCESS_KEY}","secretAccessKey":"x","region":"us-east-1"}}"#
        ),
    )
    .unwrap();
    let proxy = FaultProxy::start(
        moto.port(),
        FaultPlan {
            rate: 0.0,
            ..FaultPlan::default()
        },
    )
    .unwrap();
    let temp = tmp.join("work");
    std::fs::create_dir_all(&temp).unwrap();
    let out = CLI.ok(
        s3_command("compact", bucket, &proxy.endpoint(), &creds)
            .arg("--json")
            .arg("--snapstore-temp-directory")
            .arg(&temp)
            .args(extra),
        "compact into a bucket with a default retention",
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["verified"], true);
    let parts = assert_checksummed_writes(&proxy.requests());
    let after = versions(moto, bucket, None);
    Run {
        report,
        before,
        after,
        parts,
        creds,
        endpoint: moto.endpoint(),
    }
}

impl Run {
    fn object(&self) -> String {
        format!("etcd/{}", self.report["object"].as_str().unwrap())
    }

    /// Only the snapshot's one version was added besides the lock's, with the SHA-256
    /// checksum its upload announced, in `parts` parts. (moto gives an object completed from
    /// parts no default retention — AWS does — so its retention is not checked here; `ls`
    /// reports it from the bucket's rule.)
    fn assert_published(&self, parts: usize) {
        let object = self.object();
        let old: Vec<&str> = self.before.versions.iter().map(key).collect();
        let new: Vec<&serde_json::Value> = self
            .after
            .versions
            .iter()
            .filter(|v| key(v) != LOCK && !old.contains(&key(v)))
            .collect();
        assert_eq!(new.len(), 1, "one version added: {new:?}");
        assert_eq!(key(new[0]), object);
        assert!(
            new[0]["sha256"].is_string(),
            "a SHA-256 checksum: {}",
            new[0]
        );
        assert_eq!(self.parts, parts, "UploadPart requests");
        assert_eq!(
            self.after
                .versions
                .iter()
                .filter(|v| key(v) != LOCK)
                .count(),
            self.before.versions.len() + 1
        );
        assert!(
            self.after.markers.iter().all(|m| key(m) == LOCK),
            "nothing but the lock was deleted: {:?}",
            self.after.markers
        );
    }

    /// What the store lock left: its versions (the create and each renewal), each retained
    /// (GOVERNANCE) only until `slack` after the lock's expiry instead of the bucket's default
    /// day, and the delete marker of its release. Returns the number of versions.
    fn assert_lock_left(&self, slack: f64) -> usize {
        let lock: Vec<&serde_json::Value> = self
            .after
            .versions
            .iter()
            .filter(|v| key(v) == LOCK)
            .collect();
        assert!(!lock.is_empty());
        let now = chrono::Utc::now().timestamp() as f64;
        for v in &lock {
            assert_eq!(v["mode"], "GOVERNANCE", "{v}");
            let until = v["until"].as_f64().unwrap();
            assert!(
                until > now - 120.0 && until < now + 60.0 + slack + 120.0,
                "{v}"
            );
        }
        let markers: Vec<&serde_json::Value> = self
            .after
            .markers
            .iter()
            .filter(|m| key(m) == LOCK)
            .collect();
        assert_eq!(markers.len(), 1, "{markers:?}");
        assert_eq!(markers[0]["latest"], true);
        lock.len()
    }

    /// `ls --json` lists the new snapshot as immutable; our restore of the bucket.
    fn restore(&self, bucket: &str, dir: &Path) {
        let out = CLI.ok(
            s3_command("ls", bucket, &self.endpoint, &self.creds).arg("--json"),
            "ls",
        );
        let ls: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let listed = ls["snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| format!("etcd/{}", s["path"].as_str().unwrap()) == self.object())
            .unwrap_or_else(|| panic!("ls does not list {}: {ls}", self.object()));
        assert!(listed["immutable_until"].as_i64().is_some(), "{listed}");
        CLI.ok(
            s3_command("restore", bucket, &self.endpoint, &self.creds)
                .arg("--data-dir")
                .arg(dir),
            "restore",
        );
    }
}

#[test]
fn compact_into_a_bucket_with_default_retention_publishes_a_restorable_snapshot() {
    let Some(moto) = MotoServer::start().unwrap() else {
        return;
    };
    let Some(bins) = EtcdBins::get("3.5.1") else {
        return;
    };
    let f = Fixture::load("3.5.1", "basic").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let run = compact_locked(&moto, "small", &f.store(), tmp.path(), &[]);
    run.assert_published(1);
    run.assert_lock_left(900.0);
    let dir = tmp.path().join("restored.etcd");
    run.restore("small", &dir);
    let etcd = EtcdProcess::start(&bins, EtcdConfig::new(&dir)).unwrap();
    f.oracle
        .assert_matches_compacted(&etcd, f.oracle.final_revision);
    moto.stop().unwrap();
}

/// A snapshot of three 5 MiB parts (no compression): every UploadPart is checksummed.
#[test]
fn compact_into_a_bucket_with_default_retention_uploads_checksummed_parts() {
    let Some(moto) = MotoServer::start().unwrap() else {
        return;
    };
    let Some(bins) = EtcdBins::get("3.5.1") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    // A real etcd's snapshot of 180 values of 64 KiB: ~11.5 MiB.
    let src = tmp.path().join("src.etcd");
    let mut etcd = EtcdProcess::start(&bins, EtcdConfig::new(&src)).unwrap();
    let mut rng = testkit::Rng::new(23);
    let mut want = BTreeMap::new();
    let mut rev = 0;
    for i in 0..180 {
        let value: String = (0..32 * 1024)
            .map(|_| format!("{:02x}", rng.below(256)))
            .collect();
        let k = format!("/registry/big/{i:04}");
        rev = etcd.put(&k, &value).unwrap();
        want.insert(k, value);
    }
    let store = tmp.path().join("store");
    std::fs::create_dir_all(store.join("v2")).unwrap();
    let full = store.join(format!("v2/Full-00000000-{rev:08}-1767225600"));
    etcd.etcdctl(&[
        std::ffi::OsStr::new("snapshot"),
        "save".as_ref(),
        full.as_os_str(),
    ])
    .unwrap();
    etcd.stop().unwrap();
    let run = compact_locked(
        &moto,
        "large",
        &store,
        tmp.path(),
        &["--compression", "none"],
    );
    let bytes = run.report["object_bytes"].as_u64().unwrap();
    assert!(bytes > 10 << 20 && bytes <= 15 << 20, "{bytes}");
    run.assert_published(3);
    run.assert_lock_left(900.0);
    let dir = tmp.path().join("restored.etcd");
    run.restore("large", &dir);
    let etcd = EtcdProcess::start(&bins, EtcdConfig::new(&dir)).unwrap();
    let got: BTreeMap<String, String> = etcd
        .get_all(None)
        .unwrap()
        .kvs
        .into_iter()
        .map(|kv| {
            (
                String::from_utf8(kv.key).unwrap(),
                String::from_utf8(kv.value).unwrap(),
            )
        })
        .collect();
    assert!(got == want, "etcd serves the 180 values put before");
    moto.stop().unwrap();
}

/// A run's lock versions are retained only briefly; the next run deletes them and the
/// delete marker once their retention has ended (here: `--lock-retention-slack 0s`, a
/// one-second TTL), so the lock leaves nothing behind for long.
#[test]
fn the_next_compaction_removes_the_lock_versions_an_earlier_one_left() {
    let Some(moto) = MotoServer::start().unwrap() else {
        return;
    };
    let f = Fixture::load("3.5.1", "basic").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let first = compact_locked(
        &moto,
        "purge",
        &f.store(),
        tmp.path(),
        &["--lock-ttl", "1s", "--lock-retention-slack", "0s"],
    );
    let left = first.assert_lock_left(0.0);
    assert_eq!(
        first.report["lock"]["old_versions_removed"], 0,
        "{}",
        first.report
    );
    let first_ids: Vec<&str> = first
        .after
        .versions
        .iter()
        .chain(&first.after.markers)
        .filter(|v| key(v) == LOCK)
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    // Past the first run's retention, and a new creation second for the next name.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let out = CLI.ok(
        s3_command("compact", "purge", &first.endpoint, &first.creds)
            .arg("--json")
            .arg("--snapstore-temp-directory")
            .arg(tmp.path().join("work")),
        "the second compaction",
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["lock"]["old_versions_removed"].as_u64(),
        Some(left as u64 + 1),
        "the first run's versions and delete marker: {report}"
    );
    assert_eq!(report["lock"]["old_versions_retained"], 0);
    let after = versions(&moto, "purge", None);
    let now: Vec<&str> = after
        .versions
        .iter()
        .chain(&after.markers)
        .filter(|v| key(v) == LOCK)
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    assert!(
        now.iter().all(|v| !first_ids.contains(v)),
        "{now:?} {first_ids:?}"
    );
    assert!(
        !now.is_empty(),
        "the second run's own lock versions remain until the next"
    );
    moto.stop().unwrap();
}
