//! Resolution end to end: flags and an injected environment in, a [`StoreConfig`] out.

use super::*;
use clap::Parser;
use std::collections::HashMap;
use std::path::PathBuf;

#[derive(Parser, Debug)]
struct Cli {
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    fetch: FetchArgs,
}

fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("t").chain(args.iter().copied()))
}

fn resolve(args: &[&str], env: &HashMap<&str, String>) -> Result<StoreConfig, ConfigError> {
    let cli = parse(args).unwrap();
    cli.store.resolve_with(&|k: &str| env.get(k).cloned())
}

fn s3(c: &StoreConfig) -> &S3Config {
    match &c.backend {
        Backend::S3(s) => s,
        _ => panic!("{c:?}"),
    }
}

#[test]
fn defaults_match_etcdbrctl() {
    let cli = parse(&["--store", "/x"]).unwrap();
    assert_eq!(cli.fetch.max_fetchers, 6);
    assert!(!cli.fetch.skip_hash_check);
    assert_eq!(cli.store.max_parallel_chunk_uploads, 5);
    assert_eq!(cli.store.min_chunk_size, MIN_CHUNK_SIZE);
    assert_eq!(cli.store.snapstore_temp_directory, PathBuf::from("/tmp"));
    assert!(parse(&["--store", "/x", "--min-chunk-size", "1024"]).is_err());
    assert!(parse(&["--store", "/x", "--max-fetchers", "0"]).is_err());
    assert!(parse(&["--store", "/x", "--storage-provider", "S3"]).is_err());
    // Provider names are case-insensitive, as etcdbrctl users type them both ways.
    let cli = parse(&["--storage-provider", "abs"]).unwrap();
    assert_eq!(cli.store.storage_provider, Some(Provider::Abs));
}

#[test]
fn plain_path_and_file_url() {
    let env = HashMap::new();
    let c = resolve(&["--store", "/backups/etcd"], &env).unwrap();
    assert_eq!(
        c.backend,
        Backend::Local {
            root: "/backups/etcd".into()
        }
    );
    let c = resolve(
        &["--store", "file:///backups/etcd", "--store-prefix", "a/b"],
        &env,
    )
    .unwrap();
    assert_eq!(
        c.backend,
        Backend::Local {
            root: "/backups/etcd/a/b".into()
        }
    );
    assert_eq!(c.prefix, "");
}

#[test]
fn local_provider_is_under_home() {
    let env = HashMap::from([("HOME", "/home/u".to_string())]);
    let c = resolve(
        &["--storage-provider", "Local", "--store-prefix", "p"],
        &env,
    )
    .unwrap();
    assert_eq!(
        c.backend,
        Backend::Local {
            root: "/home/u/default.bkp/p".into()
        }
    );
    let c = resolve(
        &["--storage-provider", "Local", "--store-container", "/abs/c"],
        &env,
    )
    .unwrap();
    assert_eq!(
        c.backend,
        Backend::Local {
            root: "/home/u/abs/c".into()
        }
    );
}

#[test]
fn s3_url_with_minio_style_flags() {
    let env = HashMap::new();
    let c = resolve(
        &[
            "--store",
            "s3://bucket/some/prefix/",
            "--store-endpoint-override",
            "http://127.0.0.1:9000",
            "--store-region",
            "eu-1",
        ],
        &env,
    )
    .unwrap();
    let s = s3(&c);
    assert_eq!(s.bucket, "bucket");
    assert_eq!(c.prefix, "some/prefix");
    assert_eq!(s.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
    assert_eq!(s.region.as_deref(), Some("eu-1"));
    assert!(s.allow_http);
    assert!(!s.virtual_hosted_style);
    assert!(s.from_env);
    assert!(resolve(&["--store", "s3:///p"], &env).is_err());
    assert!(matches!(
        resolve(&["--store", "ftp://h/p"], &env),
        Err(ConfigError::Scheme { .. })
    ));
}

#[test]
fn s3_provider_reads_credential_directory_and_json() {
    let dir = tempfile::tempdir().unwrap();
    for (k, v) in [
        ("accessKeyID", "AK\n"),
        ("secretAccessKey", "SK"),
        ("region", "eu-west-1"),
        ("s3ForcePathStyle", "false"),
        ("insecureSkipVerify", "true"),
    ] {
        std::fs::write(dir.path().join(k), v).unwrap();
    }
    let env = HashMap::from([(
        "AWS_APPLICATION_CREDENTIALS",
        dir.path().display().to_string(),
    )]);
    let c = resolve(
        &[
            "--storage-provider",
            "S3",
            "--store-container",
            "b",
            "--store-prefix",
            "etcd/main",
        ],
        &env,
    )
    .unwrap();
    let s = s3(&c);
    assert_eq!(s.access_key_id.as_deref(), Some("AK"));
    assert_eq!(s.secret_access_key.as_deref(), Some("SK"));
    assert_eq!(s.region.as_deref(), Some("eu-west-1"));
    assert!(s.virtual_hosted_style);
    assert!(s.allow_invalid_certificates);
    assert_eq!(c.prefix, "etcd/main");

    let json = dir.path().join("creds.json");
    std::fs::write(
        &json,
        r#"{"accessKeyID":"J","secretAccessKey":"JS","region":"r","endpoint":"http://minio:9000","s3ForcePathStyle":true}"#,
    )
    .unwrap();
    // A JSON file inside the directory wins over the per-field files.
    let c = resolve(
        &["--storage-provider", "S3", "--store-container", "b"],
        &env,
    )
    .unwrap();
    assert_eq!(s3(&c).access_key_id.as_deref(), Some("J"));
    assert_eq!(s3(&c).endpoint.as_deref(), Some("http://minio:9000"));
    assert!(s3(&c).allow_http);
    let env = HashMap::from([(
        "AWS_APPLICATION_CREDENTIALS_JSON",
        json.display().to_string(),
    )]);
    let c = resolve(
        &[
            "--storage-provider",
            "S3",
            "--store-container",
            "b",
            "--store-endpoint-override",
            "https://e",
        ],
        &env,
    )
    .unwrap();
    // The flag overrides the file's endpoint.
    assert_eq!(s3(&c).endpoint.as_deref(), Some("https://e"));
    assert!(!s3(&c).virtual_hosted_style);
}

#[test]
fn container_is_required_for_cloud_providers() {
    let env = HashMap::new();
    assert!(matches!(
        resolve(&["--storage-provider", "S3"], &env),
        Err(ConfigError::NoContainer { provider: "S3" })
    ));
    // $STORAGE_CONTAINER is read by clap's env support, not by our lookup.
    assert!(matches!(resolve(&[], &env), Err(ConfigError::NoStore)));
}

#[test]
fn swift_fails_with_one_clear_line() {
    let err = resolve(
        &["--storage-provider", "Swift", "--store-container", "c"],
        &HashMap::new(),
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(!msg.contains('\n'));
    assert!(
        msg.contains("--storage-provider S3") && msg.contains("s3api"),
        "{msg}"
    );
}

#[test]
fn oss_route() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("oss.json"),
        r#"{"storageEndpoint":"oss-eu-central-1.aliyuncs.com","accessKeyID":"a","accessKeySecret":"s"}"#,
    )
    .unwrap();
    let env = HashMap::from([(
        "ALICLOUD_APPLICATION_CREDENTIALS",
        dir.path().display().to_string(),
    )]);
    let c = resolve(
        &["--storage-provider", "OSS", "--store-container", "b"],
        &env,
    )
    .unwrap();
    let s = s3(&c);
    assert_eq!(
        s.endpoint.as_deref(),
        Some("https://oss-eu-central-1.aliyuncs.com")
    );
    assert_eq!(s.region.as_deref(), Some("oss-eu-central-1"));
    assert!(s.virtual_hosted_style && s.disable_bulk_delete);
    assert_eq!(s.secret_access_key.as_deref(), Some("s"));
    let missing = tempfile::tempdir().unwrap();
    std::fs::write(missing.path().join("accessKeyID"), "a").unwrap();
    let env = HashMap::from([(
        "ALICLOUD_APPLICATION_CREDENTIALS",
        missing.path().display().to_string(),
    )]);
    let err = resolve(
        &["--storage-provider", "OSS", "--store-container", "b"],
        &env,
    )
    .unwrap_err();
    assert!(err.to_string().contains("storageEndpoint"), "{err}");
}

#[test]
fn ecs_route_from_environment() {
    let env = HashMap::from([
        ("ECS_ENDPOINT", "ecs.local:9020".to_string()),
        ("ECS_ACCESS_KEY_ID", "a".to_string()),
        ("ECS_SECRET_ACCESS_KEY", "s".to_string()),
        ("ECS_DISABLE_SSL", "true".to_string()),
    ]);
    let c = resolve(
        &["--storage-provider", "ECS", "--store-container", "b"],
        &env,
    )
    .unwrap();
    let s = s3(&c);
    assert_eq!(s.endpoint.as_deref(), Some("http://ecs.local:9020"));
    assert_eq!(s.region.as_deref(), Some("US-Standard"));
    assert!(s.allow_http && !s.virtual_hosted_style);
    let err = resolve(
        &["--storage-provider", "ECS", "--store-container", "b"],
        &HashMap::new(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("ECS_ENDPOINT"));
}

#[test]
fn ocs_route() {
    let dir = tempfile::tempdir().unwrap();
    for (k, v) in [
        ("endpoint", "ocs.local"),
        ("region", "r"),
        ("accessKeyID", "a"),
        ("secretAccessKey", "s"),
        ("disableSSL", "false"),
    ] {
        std::fs::write(dir.path().join(k), v).unwrap();
    }
    let env = HashMap::from([(
        "OPENSHIFT_APPLICATION_CREDENTIALS",
        dir.path().display().to_string(),
    )]);
    let c = resolve(
        &["--storage-provider", "OCS", "--store-container", "b"],
        &env,
    )
    .unwrap();
    assert_eq!(s3(&c).endpoint.as_deref(), Some("https://ocs.local"));
    assert!(!s3(&c).allow_http);
}

#[test]
fn gcs_configuration_path() {
    let dir = tempfile::tempdir().unwrap();
    let sa = dir.path().join("serviceaccount.json");
    std::fs::write(
        &sa,
        r#"{"type":"service_account","project_id":"my-project-1"}"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("storageAPIEndpoint"),
        "http://127.0.0.1:4443/storage/v1/\n",
    )
    .unwrap();
    let env = HashMap::from([("GOOGLE_APPLICATION_CREDENTIALS", sa.display().to_string())]);
    let c = resolve(
        &[
            "--storage-provider",
            "GCS",
            "--store-container",
            "b",
            "--store-prefix",
            "x",
        ],
        &env,
    )
    .unwrap();
    match &c.backend {
        Backend::Gcs(g) => {
            assert_eq!(g.bucket, "b");
            assert_eq!(g.service_account_path.as_deref(), Some(sa.as_path()));
            assert_eq!(g.base_url.as_deref(), Some("http://127.0.0.1:4443"));
            assert!(g.allow_http);
            // An http endpoint is an emulator: no credentials, like etcdbrctl.
            assert!(g.anonymous);
        }
        _ => panic!("{}", c.describe()),
    }
    let c = resolve(&["--store", "gs://bkt/pre"], &HashMap::new()).unwrap();
    assert_eq!(c.describe(), "gs://bkt/pre");
    // etcdbrctl's checks of the key: the project ID's format and the allowed fields.
    for (bad, why) in [
        (
            r#"{"type":"service_account","project_id":"p"}"#,
            "project ID",
        ),
        (r#"{"type":"service_account"}"#, "project ID"),
        (
            r#"{"type":"service_account","project_id":"Upper-case1"}"#,
            "project ID",
        ),
        (
            r#"{"type":"service_account","project_id":"my-project-1","gcs_base_url":"http://x"}"#,
            "gcs_base_url",
        ),
    ] {
        std::fs::write(&sa, bad).unwrap();
        let err = resolve(
            &["--storage-provider", "GCS", "--store-container", "b"],
            &env,
        )
        .unwrap_err();
        assert!(err.to_string().contains(why), "{bad}: {err}");
    }
    // external_account: upstream's checks start with the projectID file beside it
    // (tests/it/snapstore/gcs_credentials.rs has the accepted and refused files).
    std::fs::write(&sa, r#"{"type":"external_account"}"#).unwrap();
    let err = resolve(
        &["--storage-provider", "GCS", "--store-container", "b"],
        &env,
    )
    .unwrap_err();
    assert!(err.to_string().contains("projectID"), "{err}");
}

fn gcs(c: &StoreConfig) -> &GcsConfig {
    match &c.backend {
        Backend::Gcs(g) => g,
        _ => panic!("{c:?}"),
    }
}

#[test]
fn gcs_endpoints_and_the_emulator() {
    let gcs_args = ["--storage-provider", "GCS", "--store-container", "b"];
    // Nothing set: Google itself, with credentials.
    let c = resolve(&gcs_args, &HashMap::new()).unwrap();
    let g = gcs(&c);
    assert_eq!(g.base_url, None);
    assert!(!g.anonymous && !g.allow_http);
    // $STORAGE_EMULATOR_HOST as host:port (the Go client's form) or as a URL.
    for host in [
        "127.0.0.1:4443",
        "http://127.0.0.1:4443",
        "http://127.0.0.1:4443/",
    ] {
        let env = HashMap::from([("STORAGE_EMULATOR_HOST", host.to_string())]);
        let c = resolve(&gcs_args, &env).unwrap();
        let g = gcs(&c);
        assert_eq!(
            g.base_url.as_deref(),
            Some("http://127.0.0.1:4443"),
            "{host}"
        );
        assert!(g.anonymous && g.allow_http, "{host}");
        let c = resolve(&["--store", "gs://b/p"], &env).unwrap();
        assert!(gcs(&c).anonymous);
        assert_eq!(c.describe(), "gs://b/p (endpoint http://127.0.0.1:4443)");
    }
    // The flag wins over the emulator variable, which still means no credentials.
    let env = HashMap::from([("STORAGE_EMULATOR_HOST", "127.0.0.1:1".to_string())]);
    let mut args = gcs_args.to_vec();
    args.extend([
        "--store-endpoint-override",
        "http://127.0.0.1:2/storage/v1/",
    ]);
    let c = resolve(&args, &env).unwrap();
    assert_eq!(gcs(&c).base_url.as_deref(), Some("http://127.0.0.1:2"));
    assert!(gcs(&c).anonymous);
    // An https endpoint without the variable is a real service: credentials are used.
    let mut args = gcs_args.to_vec();
    args.extend([
        "--store-endpoint-override",
        "https://gcs.example/storage/v1/",
    ]);
    let c = resolve(&args, &HashMap::new()).unwrap();
    assert_eq!(gcs(&c).base_url.as_deref(), Some("https://gcs.example"));
    assert!(!gcs(&c).anonymous && !gcs(&c).allow_http);
}

#[test]
fn abs_route() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("storageAccount"), "acct").unwrap();
    std::fs::write(dir.path().join("storageKey"), "a2V5").unwrap();
    std::fs::write(dir.path().join("domain"), "blob.core.chinacloudapi.cn").unwrap();
    let env = HashMap::from([(
        "AZURE_APPLICATION_CREDENTIALS",
        dir.path().display().to_string(),
    )]);
    let c = resolve(
        &["--storage-provider", "ABS", "--store-container", "c"],
        &env,
    )
    .unwrap();
    match &c.backend {
        Backend::Azure(a) => {
            assert_eq!(a.container, "c");
            assert_eq!(a.account.as_deref(), Some("acct"));
            assert_eq!(
                a.endpoint.as_deref(),
                Some("https://acct.blob.core.chinacloudapi.cn")
            );
        }
        _ => panic!("{}", c.describe()),
    }
    let err = resolve(
        &["--storage-provider", "ABS", "--store-container", "c"],
        &HashMap::new(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("AZURE_APPLICATION_CREDENTIALS"));
}
