//! Every provider (local, S3 on moto, Azure on Azurite, GCS on fake-gcs-server) reads the
//! fixtures as the local store does and writes create-only.

use super::*;

/// Uploads every fixture store under `<version>/<scenario>/` of one bucket.
fn fixture_prefix(f: &Fixture) -> String {
    format!("backups/etcd-{}/{}", f.version, f.scenario)
}

async fn compare_with_local(f: &Fixture, remote: &Store, tmp: &Path) {
    let local = local_store(&f.store());
    let (lr, ln, ld) = check_store(f, &local, tmp).await;
    let (rr, rn, rd) = check_store(f, remote, tmp).await;
    assert_eq!(lr, rr, "{}/{}: object reports", f.version, f.scenario);
    assert_eq!(
        (ln, ld),
        (rn, rd),
        "{}/{}: event stream",
        f.version,
        f.scenario
    );
    let ll = local.list_snapshots().await.unwrap();
    let rl = remote.list_snapshots().await.unwrap();
    let sizes = |l: &etcd_restore::snapstore::Listing| {
        l.snapshots
            .iter()
            .map(|s| (s.path.clone(), s.size))
            .collect::<Vec<_>>()
    };
    assert_eq!(sizes(&ll), sizes(&rl));
}

async fn read_all(store: &Store, name: &str) -> Vec<u8> {
    let (_, body) = store.get(name).await.unwrap();
    let mut reader = body.into_reader();
    tokio::task::spawn_blocking(move || {
        let mut got = Vec::new();
        std::io::Read::read_to_end(&mut reader, &mut got).unwrap();
        got
    })
    .await
    .unwrap()
}

/// put_create never overwrites; multipart uploads land whole; copy_create copies, and unless
/// the server cannot (`copy_refuses_existing` false: fake-gcs-server) never overwrites.
async fn check_writes(store: &Store, tmp: &Path, copy_refuses_existing: bool) {
    let name = "v2/Full-00000000-00000001-1700000000";
    store
        .put_create(name, bytes::Bytes::from_static(b"one"), None)
        .await
        .unwrap();
    let err = store
        .put_create(name, bytes::Bytes::from_static(b"two"), None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            etcd_restore::snapstore::StoreError::AlreadyExists { .. }
        ),
        "{err}"
    );
    let big: Vec<u8> = (0..(11 << 20) + 12345u32)
        .map(|i| (i % 251) as u8)
        .collect();
    let file = tmp.join("upload.bin");
    std::fs::write(&file, &big).unwrap();
    let name2 = "v2/Full-00000000-00000002-1700000001";
    let n = store
        .put_multipart_file(name2, &file, 5 << 20, 2)
        .await
        .unwrap();
    assert_eq!(n, big.len() as u64);
    assert_eq!(store.head(name2).await.unwrap().size, big.len() as u64);
    assert!(read_all(store, name2).await == big);
    assert!(matches!(
        store.put_multipart_file(name2, &file, 5 << 20, 2).await,
        Err(etcd_restore::snapstore::StoreError::AlreadyExists { .. })
    ));
    let name3 = "v2/Full-00000000-00000003-1700000002";
    store.copy_create(name2, name3).await.unwrap();
    assert!(read_all(store, name3).await == big);
    if copy_refuses_existing {
        let err = store.copy_create(name, name3).await.unwrap_err();
        assert!(
            matches!(
                err,
                etcd_restore::snapstore::StoreError::AlreadyExists { .. }
            ),
            "{err}"
        );
        assert!(read_all(store, name3).await == big, "overwritten");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    std::fs::create_dir_all(&root).unwrap();
    check_writes(&local_store(&root), tmp.path(), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_moto_fixtures_match_local() {
    let Some(moto) = MotoServer::start().unwrap() else {
        return;
    };
    moto.create_bucket("backups").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    // Credentials the etcdbrctl way: a JSON file named by AWS_APPLICATION_CREDENTIALS_JSON.
    let creds = tmp.path().join("aws.json");
    std::fs::write(
        &creds,
        format!(
            r#"{{"accessKeyID":"{MOTO_ACCESS_KEY}","secretAccessKey":"x","region":"us-east-1"}}"#
        ),
    )
    .unwrap();
    let creds_s = creds.display().to_string();
    let env = move |k: &str| (k == "AWS_APPLICATION_CREDENTIALS_JSON").then(|| creds_s.clone());
    for f in fixtures() {
        let prefix = fixture_prefix(&f);
        moto.upload_dir("backups", &prefix, &f.store()).unwrap();
        let args = StoreArgs {
            storage_provider: Some(etcd_restore::snapstore::Provider::S3),
            store_container: Some("backups".into()),
            store_prefix: Some(prefix),
            store_endpoint_override: Some(moto.endpoint()),
            ..StoreArgs::default()
        };
        let store = Store::open(&args.resolve_with(&env).unwrap()).unwrap();
        compare_with_local(&f, &store, tmp.path()).await;
    }
    // Writes under their own prefix, through the URL form.
    let args = StoreArgs {
        store: Some("s3://backups/writes".into()),
        store_endpoint_override: Some(moto.endpoint()),
        ..StoreArgs::default()
    };
    let store = Store::open(&args.resolve_with(&env).unwrap()).unwrap();
    check_writes(&store, tmp.path(), true).await;
    moto.stop().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_azurite_fixtures_match_local() {
    let Some(azurite) = AzuriteServer::start().unwrap() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let creds = tmp.path().join("azure");
    std::fs::create_dir_all(&creds).unwrap();
    std::fs::write(creds.join("storageAccount"), AZURITE_ACCOUNT).unwrap();
    std::fs::write(creds.join("storageKey"), AZURITE_KEY).unwrap();
    let creds_s = creds.display().to_string();
    let env = move |k: &str| (k == "AZURE_APPLICATION_CREDENTIALS").then(|| creds_s.clone());
    let all = fixtures();
    // One upload run for everything: stage the trees under their prefixes locally.
    let stage = tmp.path().join("stage");
    for f in &all {
        let dest = stage.join(fixture_prefix(f));
        std::fs::create_dir_all(&dest).unwrap();
        copy_tree(&f.store(), &dest);
    }
    let n = azurite.upload_dir("backups", "", &stage).unwrap();
    assert_eq!(n, all.iter().map(|f| f.oracle.objects.len()).sum::<usize>());
    for f in &all {
        let args = StoreArgs {
            storage_provider: Some(etcd_restore::snapstore::Provider::Abs),
            store_container: Some("backups".into()),
            store_prefix: Some(fixture_prefix(f)),
            store_endpoint_override: Some(azurite.endpoint()),
            ..StoreArgs::default()
        };
        let store = Store::open(&args.resolve_with(&env).unwrap()).unwrap();
        compare_with_local(f, &store, tmp.path()).await;
    }
    let args = StoreArgs {
        store: Some("az://backups/writes".into()),
        store_endpoint_override: Some(azurite.endpoint()),
        ..StoreArgs::default()
    };
    let store = Store::open(&args.resolve_with(&env).unwrap()).unwrap();
    check_writes(&store, tmp.path(), true).await;
    azurite.stop().unwrap();
}

/// etcdbrctl's GCS secret as etcd-druid mounts it: `serviceaccount.json` (named by
/// `GOOGLE_APPLICATION_CREDENTIALS`) and, optionally, `storageAPIEndpoint` beside it, holding
/// the JSON API URL `<endpoint>/storage/v1/`. The key is never used for a token: an http
/// endpoint is an emulator, reached without credentials as etcdbrctl does.
fn gcs_secret(dir: &Path, endpoint: Option<&str>) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let sa = dir.join("serviceaccount.json");
    std::fs::write(
        &sa,
        r#"{"type":"service_account","project_id":"etcd-restore-test","client_email":"t@etcd-restore-test.iam.gserviceaccount.com","private_key_id":"0","private_key":"unused"}"#,
    )
    .unwrap();
    if let Some(e) = endpoint {
        std::fs::write(dir.join("storageAPIEndpoint"), format!("{e}/storage/v1/\n")).unwrap();
    }
    sa
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcs_fake_gcs_server_fixtures_match_local() {
    let Some(gcs) = FakeGcsServer::start().unwrap() else {
        return;
    };
    gcs.create_bucket("backups").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    // etcdbrctl's flags and secret: --storage-provider GCS --store-container --store-prefix,
    // GOOGLE_APPLICATION_CREDENTIALS, and the endpoint from the secret's storageAPIEndpoint.
    let sa = gcs_secret(&tmp.path().join("gcp"), Some(&gcs.endpoint()));
    let sa_s = sa.display().to_string();
    let env = move |k: &str| (k == "GOOGLE_APPLICATION_CREDENTIALS").then(|| sa_s.clone());
    let all = fixtures();
    for f in &all {
        let prefix = fixture_prefix(f);
        assert_eq!(
            gcs.upload_dir("backups", &prefix, &f.store()).unwrap(),
            f.oracle.objects.len()
        );
        let args = StoreArgs {
            storage_provider: Some(etcd_restore::snapstore::Provider::Gcs),
            store_container: Some("backups".into()),
            store_prefix: Some(prefix),
            ..StoreArgs::default()
        };
        let config = args.resolve_with(&env).unwrap();
        match &config.backend {
            etcd_restore::snapstore::Backend::Gcs(g) => {
                assert_eq!(g.base_url.as_deref(), Some(gcs.endpoint().as_str()));
                assert_eq!(g.service_account_path.as_deref(), Some(sa.as_path()));
                assert!(g.anonymous, "an http endpoint is an emulator");
            }
            other => panic!("{other:?}"),
        }
        let store = Store::open(&config).unwrap();
        compare_with_local(f, &store, tmp.path()).await;
    }

    // Writes, through the URL form with nothing but $STORAGE_EMULATOR_HOST (host:port, the Go
    // client's form): create-only puts, a multipart upload (3 parts composed), copies.
    let host = gcs.endpoint().trim_start_matches("http://").to_string();
    let env = move |k: &str| (k == "STORAGE_EMULATOR_HOST").then(|| host.clone());
    let args = StoreArgs {
        store: Some("gs://backups/writes".into()),
        ..StoreArgs::default()
    };
    let store = Store::open(&args.resolve_with(&env).unwrap()).unwrap();
    // fake-gcs-server 1.54 ignores ifGenerationMatch on rewrites: the create-only side of
    // copy_create cannot be checked on it (it is on the local store, moto and Azurite).
    check_writes(&store, tmp.path(), false).await;
    let big = gcs
        .get_object("backups", "writes/v2/Full-00000000-00000002-1700000001")
        .unwrap();
    assert_eq!(big.len(), (11 << 20) + 12345);
    assert!(big.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8));
    let copy = gcs
        .get_object("backups", "writes/v2/Full-00000000-00000003-1700000002")
        .unwrap();
    assert!(copy == big, "the copy, read by the server itself");

    // Compose in rounds: 70 parts (more than 2 × 32 sources per compose call).
    let path = store
        .object_path("v2/Full-00000000-00000004-1700000003")
        .unwrap();
    let upload = object_store::ObjectStoreExt::put_multipart(store.object_store().as_ref(), &path)
        .await
        .unwrap();
    let mut w = object_store::WriteMultipart::new_with_chunk_size(upload, 1000);
    let data: Vec<u8> = (0..69_500u32).map(|i| (i % 253) as u8).collect();
    w.write(&data);
    w.finish().await.unwrap();
    assert!(
        gcs.get_object("backups", path.as_ref()).unwrap() == data,
        "composed object"
    );
    // Only the objects themselves are left: every part and intermediate is deleted.
    let keys = gcs.list_keys("backups", "writes/").unwrap();
    assert_eq!(
        keys,
        [
            "writes/v2/Full-00000000-00000001-1700000000",
            "writes/v2/Full-00000000-00000002-1700000001",
            "writes/v2/Full-00000000-00000003-1700000002",
            "writes/v2/Full-00000000-00000004-1700000003",
        ]
    );

    // Answers lost after the server acted: a create-only put sent again finds the object its
    // first try created (same size and CRC32C) and succeeds instead of "already exists"; an
    // object that is not ours is still refused.
    let proxy = FaultProxy::start(
        gcs.port(),
        FaultPlan {
            rate: 0.5,
            seed: 19,
            server_errors: false,
            throttling: false,
            resets: false,
            truncated_bodies: false,
            lost_answers: true,
        },
    )
    .unwrap();
    let args = StoreArgs {
        store: Some("gs://backups/lost".into()),
        store_endpoint_override: Some(proxy.endpoint()),
        ..StoreArgs::default()
    };
    let store = Store::open(&args.resolve_with(&|_| None).unwrap()).unwrap();
    for i in 1..=8 {
        let name = format!("v2/Full-00000000-{i:08}-1700000000");
        let body = format!("object {i}");
        store
            .put_create(&name, bytes::Bytes::from(body.clone()), None)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(read_all(&store, &name).await, body.as_bytes());
        let err = store
            .put_create(&name, bytes::Bytes::from_static(b"not ours"), None)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                etcd_restore::snapstore::StoreError::AlreadyExists { .. }
            ),
            "{name}: {err}"
        );
        assert_eq!(read_all(&store, &name).await, body.as_bytes());
    }
    assert!(proxy.stats().lost >= 3, "{:?}", proxy.stats());
    drop(proxy);

    // The binary with nothing but the environment: $STORAGE_EMULATOR_HOST and etcdbrctl's
    // $STORAGE_CONTAINER (the default of --store-container).
    let f = &all[0];
    let out = std::process::Command::new(bin())
        .args([
            "ls",
            "--json",
            "--storage-provider",
            "GCS",
            "--store-prefix",
        ])
        .arg(fixture_prefix(f))
        .env(
            "STORAGE_EMULATOR_HOST",
            gcs.endpoint().trim_start_matches("http://"),
        )
        .env("STORAGE_CONTAINER", "backups")
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["snapshots"].as_array().unwrap().len(),
        f.oracle.objects.len()
    );
    assert_eq!(
        v["plan"]["base"]["path"],
        f.oracle.latest_full().unwrap().path.as_str()
    );

    // The CLI, etcdbrctl's way, restores a backup that real etcd serves exactly as the source.
    if let Some(bins) = EtcdBins::get("3.5.1") {
        let f = all
            .iter()
            .find(|f| f.version == "3.5.1" && f.scenario == "basic")
            .expect("basic 3.5.1 fixture");
        let dir = tmp.path().join("gcs.etcd");
        let out = std::process::Command::new(bin())
            .args(["restore", "--storage-provider", "GCS"])
            .args(["--store-container", "backups", "--store-prefix"])
            .arg(fixture_prefix(f))
            .arg("--data-dir")
            .arg(&dir)
            .env("GOOGLE_APPLICATION_CREDENTIALS", &sa)
            .env_remove("STORAGE_EMULATOR_HOST")
            .env_remove("STORAGE_CONTAINER")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut etcd = EtcdProcess::start(&bins, EtcdConfig::new(&dir)).unwrap();
        f.oracle.assert_matches(&etcd, f.oracle.final_revision);
        etcd.stop().unwrap();
    }
    gcs.stop().unwrap();
}
