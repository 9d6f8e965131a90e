//! GCS credentials as etcd-backup-restore v0.43 reads them (`pkg/snapstore/gcs_snapstore.go`):
//! `external_account` files accepted or refused by upstream's checks
//! (`validateExternalAccountCredentials`), the token exchange against a loopback stand-in of
//! Google's STS and IAM credentials APIs, no metadata server for a store with an endpoint
//! override, and errors whose causes are printed once. Nothing leaves 127.0.0.1.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use etcd_restore::snapstore::gcs_external::{ExternalAccount, TEST_AUTH_URL_ENV};
use etcd_restore::snapstore::{Backend, StoreArgs};
use object_store::CredentialProvider;
use testkit::objstore::FakeGcsServer;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_etcd-restore"))
}

const IMPERSONATE: &str = "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/backup@my-project-1.iam.gserviceaccount.com:generateAccessToken";

/// The mounted secret of a Gardener workload identity: `credentialsConfig`, `projectID`,
/// `token` (the projected service-account token).
fn secret(dir: &Path, project: &str, config: serde_json::Value) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("projectID"), project).unwrap();
    std::fs::write(dir.join("token"), "subject-jwt\n").unwrap();
    let path = dir.join("credentialsConfig");
    std::fs::write(&path, config.to_string()).unwrap();
    path
}

fn good(dir: &Path, impersonate: bool) -> serde_json::Value {
    let mut v = serde_json::json!({
        "type": "external_account",
        "audience": "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/q",
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": "https://sts.googleapis.com/v1/token",
        "credential_source": { "file": dir.join("token").display().to_string(), "format": { "type": "text" } },
        "universe_domain": "googleapis.com",
    });
    if impersonate {
        v["service_account_impersonation_url"] = IMPERSONATE.into();
    }
    v
}

fn resolve(creds: &Path) -> Result<etcd_restore::snapstore::StoreConfig, String> {
    let args = StoreArgs {
        storage_provider: Some(etcd_restore::snapstore::Provider::Gcs),
        store_container: Some("b".into()),
        ..StoreArgs::default()
    };
    let c = creds.display().to_string();
    args.resolve_with(&move |k: &str| (k == "GOOGLE_APPLICATION_CREDENTIALS").then(|| c.clone()))
        .map_err(|e| e.to_string())
}

#[test]
fn external_account_files_are_checked_like_upstream() {
    let tmp = tempfile::tempdir().unwrap();
    for impersonate in [false, true] {
        let dir = tmp.path().join(format!("ok-{impersonate}"));
        let path = secret(&dir, "my-project-1", good(&dir, impersonate));
        let c = resolve(&path).unwrap_or_else(|e| panic!("accepted file refused: {e}"));
        match c.backend {
            Backend::Gcs(g) => assert!(g.external_account && !g.anonymous),
            other => panic!("{other:?}"),
        }
    }
    // Each refusal of `validateExternalAccountCredentials`, in its order.
    type Edit = fn(&mut serde_json::Value, &Path);
    let cases: Vec<(&str, &str, Edit, &str)> = vec![
        (
            "project",
            "Bad_Project",
            |_, _| {},
            "project ID does not match",
        ),
        (
            "newline",
            "my-project-1\n",
            |_, _| {},
            "project ID does not match",
        ),
        (
            "extra",
            "my-project-1",
            |v, _| v["quota_project_id"] = "x".into(),
            "not allowed fields",
        ),
        (
            "missing",
            "my-project-1",
            |v, _| {
                v.as_object_mut().unwrap().remove("universe_domain");
            },
            "missing the required field \"universe_domain\"",
        ),
        (
            "stt",
            "my-project-1",
            |v, _| v["subject_token_type"] = "urn:ietf:params:oauth:token-type:id_token".into(),
            "subject_token_type",
        ),
        (
            "tokenurl",
            "my-project-1",
            |v, _| v["token_url"] = "https://127.0.0.1/v1/token".into(),
            "not among the allowed values",
        ),
        (
            "source",
            "my-project-1",
            |v, _| v["credential_source"]["file"] = "/var/run/other/token".into(),
            "credential_source",
        ),
        (
            "format",
            "my-project-1",
            |v, _| v["credential_source"]["format"]["type"] = "json".into(),
            "credential_source",
        ),
        (
            "impersonation",
            "my-project-1",
            |v, _| {
                v["service_account_impersonation_url"] =
                "https://iamcredentials.googleapis.com/v1/projects/my-project-1/serviceAccounts/x:generateAccessToken".into()
            },
            "service_account_impersonation_url",
        ),
        (
            "impersonation-http",
            "my-project-1",
            |v, _| {
                v["service_account_impersonation_url"] = IMPERSONATE.replace("https", "http").into()
            },
            "service_account_impersonation_url",
        ),
    ];
    for (name, project, edit, why) in cases {
        let dir = tmp.path().join(name);
        let mut v = good(&dir, false);
        edit(&mut v, &dir);
        let path = secret(&dir, project, v);
        let err = resolve(&path).expect_err(name);
        assert!(err.contains(why), "{name}: {err}");
        assert!(
            err.contains("credentialsConfig"),
            "{name}: names the file: {err}"
        );
    }
}

/// A loopback stand-in for Google's STS (`/v1/token`) and IAM credentials
/// (`...:generateAccessToken`) endpoints; keeps each request (first line, headers, body).
struct AuthStandIn {
    url: String,
    seen: Arc<Mutex<Vec<String>>>,
}

impl AuthStandIn {
    fn start() -> AuthStandIn {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { return };
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut head = String::new();
                let mut len = 0usize;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                    head.push_str(&line);
                }
                let mut body = vec![0; len];
                r.read_exact(&mut body).unwrap();
                let req = format!("{head}\n{}", String::from_utf8_lossy(&body));
                let answer = if head.starts_with("POST /v1/token ") {
                    r#"{"access_token":"sts-token","issued_token_type":"urn:ietf:params:oauth:token-type:access_token","token_type":"Bearer","expires_in":3600}"#.to_string()
                } else if head.contains(":generateAccessToken ") {
                    let exp = chrono::Utc::now() + chrono::Duration::hours(1);
                    format!(
                        r#"{{"accessToken":"sa-token","expireTime":"{}"}}"#,
                        exp.format("%Y-%m-%dT%H:%M:%SZ")
                    )
                } else {
                    String::new()
                };
                log.lock().unwrap().push(req);
                let status = if answer.is_empty() {
                    "404 Not Found"
                } else {
                    "200 OK"
                };
                let _ = write!(
                    s,
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                    answer.len()
                );
            }
        });
        AuthStandIn { url, seen }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_account_token_exchange_against_a_loopback_stand_in() {
    // The library reads the override from the environment, and the other tests of this binary
    // run in the same process: set it only in a process of our own.
    if !testkit::alone::in_own_process() {
        return;
    }
    let stand_in = AuthStandIn::start();
    // SAFETY: this process runs only this test, and no other thread of it reads the environment.
    unsafe { std::env::set_var(TEST_AUTH_URL_ENV, &stand_in.url) };
    let tmp = tempfile::tempdir().unwrap();
    let retry = etcd_restore::snapstore::store::retry_config();
    for (impersonate, want) in [(false, "sts-token"), (true, "sa-token")] {
        let dir = tmp.path().join(format!("s-{impersonate}"));
        let path = secret(&dir, "my-project-1", good(&dir, impersonate));
        resolve(&path).unwrap();
        let before = stand_in.seen.lock().unwrap().len();
        let ext = ExternalAccount::from_file(&path, retry.clone()).unwrap();
        assert_eq!(ext.get_credential().await.unwrap().bearer, want);
        // Cached: a second call sends nothing.
        assert_eq!(ext.get_credential().await.unwrap().bearer, want);
        let seen = stand_in.seen.lock().unwrap()[before..].to_vec();
        assert_eq!(seen.len(), if impersonate { 2 } else { 1 }, "{seen:#?}");
        // The STS exchange as Google's externalaccount client sends it: the projected token
        // (trimmed) for an access token, for the pool's audience.
        let sts = &seen[0];
        assert!(sts.starts_with("POST /v1/token "), "{sts}");
        for field in [
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange",
            "subject_token=subject-jwt&",
            "subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Ajwt",
            "requested_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token",
            "audience=%2F%2Fiam.googleapis.com%2Fprojects%2F1%2F",
        ] {
            assert!(sts.contains(field), "{field} in {sts}");
        }
        if impersonate {
            let imp = &seen[1];
            assert!(
                imp.starts_with("POST /v1/projects/-/serviceAccounts/backup@my-project-1.iam.gserviceaccount.com:generateAccessToken "),
                "{imp}"
            );
            assert!(
                imp.to_ascii_lowercase()
                    .contains("authorization: bearer sts-token"),
                "{imp}"
            );
        }
    }
}

/// An https endpoint override and no credentials: a clear error at once, no request at all
/// (object_store would otherwise try the cloud metadata server, 169.254.169.254).
#[test]
fn endpoint_override_without_credentials_never_asks_a_metadata_server() {
    let started = std::time::Instant::now();
    let out = Command::new(bin())
        .args([
            "ls",
            "--store",
            "gs://b/p",
            "--store-endpoint-override",
            "https://127.0.0.1:9",
        ])
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .env_remove("STORAGE_EMULATOR_HOST")
        .env("HOME", "/nonexistent")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("GOOGLE_APPLICATION_CREDENTIALS")
            && err.contains("metadata server is never asked"),
        "{err}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

/// An emulator (http:// endpoint) is used without authentication, and an error names each
/// cause once (it used to repeat the same text once per level of the error chain).
#[test]
fn emulator_errors_print_each_cause_once() {
    let Some(gcs) = FakeGcsServer::start().unwrap() else {
        return;
    };
    let out = Command::new(bin())
        .args([
            "ls",
            "--store",
            "gs://no-such-bucket/p",
            "--store-endpoint-override",
        ])
        .arg(gcs.endpoint())
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(line.contains("404"), "{line}");
    assert_eq!(
        line.matches("HTTP 404").count(),
        1,
        "each cause once: {line}"
    );
    gcs.stop().unwrap();
}
