//! The server's other answers: configuration errors, `/snapshot/*`, druid's sidecar
//! arguments, HTTPS.

use super::*;

#[test]
fn config_errors_snapshot_latest_and_graceful_shutdown() {
    let sc = Scene::new();
    // /snapshot/latest against the oracle's object list.
    let s = sc.server(&[], &[]);
    let a = s.get("/snapshot/latest");
    assert_eq!(a.code, 200, "{}", a.body);
    let v: serde_json::Value = serde_json::from_str(&a.body).unwrap();
    let objects = &sc.fixture.oracle.objects;
    let last_full = objects
        .iter()
        .filter(|o| o.is_full())
        .max_by_key(|o| (o.last_revision, o.created_on))
        .unwrap();
    let full = &v["fullSnapshot"];
    let full_path = format!(
        "{}{}{}",
        full["prefix"].as_str().unwrap(),
        full["snapDir"].as_str().unwrap(),
        full["snapName"].as_str().unwrap()
    );
    assert!(
        full_path.ends_with(&last_full.path),
        "{full_path} vs {}",
        last_full.path
    );
    assert!(std::path::Path::new(&full_path).is_file(), "{full_path}");
    assert_eq!(full["kind"], "Full");
    assert_eq!(full["lastRevision"].as_i64(), Some(last_full.last_revision));
    assert_eq!(full["isFinal"].as_bool(), Some(last_full.is_final));
    let mut want: Vec<i64> = objects
        .iter()
        .filter(|o| {
            !o.is_full()
                && (o.last_revision, o.created_on) > (last_full.last_revision, last_full.created_on)
        })
        .map(|o| o.last_revision)
        .collect();
    want.sort();
    let got: Vec<i64> = v["deltaSnapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            assert_eq!(d["kind"], "Incr");
            d["lastRevision"].as_i64().unwrap()
        })
        .collect();
    assert_eq!(got, want);
    assert!(
        v["fullSnapshot"]["createdOn"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );

    // /config without POD_NAME for this member: 500 with the reason.
    std::fs::write(
        sc.tmp.path().join("etcd.conf.yaml"),
        "name: x\ninitial-advertise-peer-urls:\n  someone-else:\n  - http://a:2380\n",
    )
    .unwrap();
    let a = s.get("/config");
    assert_eq!(a.code, 500);
    assert!(
        a.body.contains("no URLs for member \"etcd-test-0\""),
        "{}",
        a.body
    );
    std::fs::remove_file(sc.tmp.path().join("etcd.conf.yaml")).unwrap();
    let a = s.get("/config");
    assert_eq!(a.code, 500);
    assert!(a.body.contains("reading etcd config"), "{}", a.body);

    // SIGTERM: a clean exit, quickly.
    let mut s = s;
    let t0 = Instant::now();
    let st = s.proc.stop().unwrap();
    assert!(st.success(), "{st}: {}", s.log());
    assert!(t0.elapsed() < Duration::from_secs(5));
}

/// etcdbrctl's server without a snapshotter (`pkg/server/httpAPI.go`
/// `serveFullSnapshotTrigger`/`serveDeltaSnapshotTrigger`, `h.Snapshotter == nil`, no storage
/// provider): 405 and an empty body, whatever the method and query. The calls are etcd-druid's:
/// the compaction controller's `GET /snapshot/full` (`internal/controller/compaction/snapshot.go`)
/// and the on-demand snapshot task's `POST /snapshot/{full,delta}[?final=true]`
/// (`internal/controller/etcdopstask/handler/ondemandsnapshot/ondemandsnapshot.go`).
#[test]
fn snapshot_triggers_answer_405_with_an_empty_body_like_etcdbrctl_without_a_snapshotter() {
    let sc = Scene::new();
    let calls = [
        ("GET", "/snapshot/full"),
        ("POST", "/snapshot/full"),
        ("POST", "/snapshot/full?final=true"),
        // etcdbrctl returns before parsing `final` on this path: no 400.
        ("POST", "/snapshot/full?final=maybe"),
        ("POST", "/snapshot/delta"),
        ("GET", "/snapshot/delta"),
        ("PUT", "/snapshot/delta"),
        ("DELETE", "/snapshot/full"),
    ];
    // With a store (etcdbrctl would forward to its backup leader; there is none that
    // snapshots) and without one.
    let with_store = sc.server(&[], &[]);
    let bare = start(
        &["--data-dir".to_string(), sc.data().display().to_string()],
        &[],
        &sc.tmp.path().join("bare.log"),
    );
    for s in [&with_store, &bare] {
        for (method, path) in calls {
            let a = request(s.addr, method, path).unwrap();
            assert_eq!(a.code, 405, "{method} {path}: {}", a.body);
            assert_eq!(a.body, "", "{method} {path}");
            assert_eq!(
                a.headers.get("content-length").map(String::as_str),
                Some("0")
            );
            assert!(
                a.headers
                    .get("x-etcd-restore-reason")
                    .is_some_and(|r| r.contains("takes no snapshots")),
                "{method} {path}: {:?}",
                a.headers
            );
            // Plain HTTP: no HSTS (etcdbrctl adds it only with TLS).
            assert!(!a.headers.contains_key("strict-transport-security"));
        }
    }
    // Nothing else changed: the initialization API still starts from New.
    assert_eq!(with_store.get("/initialization/status").body, "New");
}

/// The backup sidecar's arguments as etcd-druid writes them
/// (`internal/component/statefulset/builder.go` `getBackupRestoreContainerCommandArgs`, a
/// Local store, no TLS; the etcd connection flags name hosts that do not resolve here, which
/// a single-member config never contacts — tests/it/serve/member_bootstrap.rs runs them against real
/// etcd, over TLS too): all accepted, the ones for what this server does not run named in one
/// notice, and the server answers on `--server-port` from the Local store under `$HOME`.
#[test]
fn druid_sidecar_arguments_are_accepted() {
    let sc = Scene::new();
    let home = sc.tmp.path().join("home");
    testkit::tree::copy_dir(&sc.fixture.store(), &home.join("bkp/etcd-main")).unwrap();
    let port = free_port();
    let d = sc.tmp.path().display().to_string();
    let args: Vec<String> = vec![
        "server".into(),
        format!("--server-port={port}"),
        "--enable-snapshot-lease-renewal=true".into(),
        "--full-snapshot-lease-name=etcd-main-full-snap".into(),
        "--delta-snapshot-lease-name=etcd-main-delta-snap".into(),
        "--storage-provider=Local".into(),
        "--store-prefix=etcd-main".into(),
        "--schedule=0 */24 * * *".into(),
        "--compress-snapshots=true".into(),
        "--compression-policy=gzip".into(),
        "--max-backups=7".into(),
        "--garbage-collection-policy=LimitBased".into(),
        "--garbage-collection-period=12h0m0s".into(),
        "--delta-snapshot-period=5m0s".into(),
        "--delta-snapshot-retention-period=0s".into(),
        "--delta-snapshot-memory-limit=104857600".into(),
        "--etcd-snapshot-timeout=15m0s".into(),
        "--defragmentation-schedule=0 */24 * * *".into(),
        "--etcd-defrag-timeout=15m0s".into(),
        "--auto-compaction-mode=periodic".into(),
        "--auto-compaction-retention=30m".into(),
        format!("--data-dir={d}/new.etcd"),
        format!("--restoration-temp-snapshots-dir={d}/restoration.temp"),
        format!("--snapstore-temp-directory={d}/temp"),
        "--use-etcd-wrapper=true".into(),
        "--enable-member-lease-renewal=true".into(),
        "--k8s-heartbeat-duration=10s".into(),
        "--embedded-etcd-quota-bytes=8589934592".into(),
        "--enable-profiling=true".into(),
        "--etcd-connection-timeout-leader-election=5s".into(),
        "--insecure-transport=true".into(),
        "--insecure-skip-tls-verify=true".into(),
        "--endpoints=http://etcd-main-local:2379".into(),
        "--service-endpoints=http://etcd-main-client:2379".into(),
        "--etcd-connection-timeout=5m0s".into(),
        "--reelection-period=5s".into(),
    ];
    std::fs::create_dir_all(sc.tmp.path().join("temp")).unwrap();
    let mut cmd = Command::new(bin());
    // etcdbrctl's subcommand name `server` is `serve` here.
    cmd.arg("serve")
        .args(&args[1..])
        .env("HOME", &home)
        .env("POD_NAME", POD)
        .env("POD_NAMESPACE", "shoot--dev--a")
        .env("STORAGE_CONTAINER", "bkp");
    let log = sc.tmp.path().join("druid.log");
    let mut proc = ManagedProcess::spawn(cmd, "serve with druid's arguments", &log).unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let t0 = Instant::now();
    while get(addr, "/healthz").is_err() {
        if let Some(st) = proc.try_exited() {
            panic!("serve exited: {st}: {}", proc.log_tail(4096));
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "{}",
            proc.log_tail(4096)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let log_text = proc.log_tail(16384);
    for flag in [
        "--schedule",
        "--max-backups",
        "--enable-member-lease-renewal",
        "--use-etcd-wrapper",
    ] {
        assert!(
            log_text.contains(flag),
            "{flag} not in the notice: {log_text}"
        );
    }
    // The Local store under $HOME/<container>/<prefix>, as etcdbrctl reads it.
    let a = get(addr, "/snapshot/latest").unwrap();
    assert_eq!(a.code, 200, "{}", a.body);
    assert!(a.body.contains("\"kind\":\"Full\""), "{}", a.body);
    let st = proc.stop().unwrap();
    assert!(st.success(), "{st}");
}

#[test]
fn https_with_a_self_signed_certificate() {
    let sc = Scene::new();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let cert_file = sc.tmp.path().join("tls.crt");
    let key_file = sc.tmp.path().join("tls.key");
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    let args: Vec<String> = vec![
        "--data-dir".into(),
        sc.data().display().to_string(),
        "--tls-cert".into(),
        cert_file.display().to_string(),
        "--tls-key".into(),
        key_file.display().to_string(),
    ];
    let s = Server::spawn(
        bin(),
        &args,
        &[],
        &sc.tmp.path().join("tls.log"),
        Ready::Connect,
    );
    let url = |path: &str| format!("https://localhost:{}{path}", s.addr.port());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(cert.pem().as_bytes()).unwrap()])
        .resolve("localhost", s.addr)
        .build()
        .unwrap();
    rt.block_on(async {
        let r = client.get(url("/healthz")).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
        assert_eq!(
            r.headers()
                .get("strict-transport-security")
                .and_then(|v| v.to_str().ok()),
            Some("max-age=31536000")
        );
        assert_eq!(r.text().await.unwrap(), r#"{"health":true}"#);
        // No store configured, empty data dir: nothing to restore, etcd starts empty.
        let r = client
            .get(url("/initialization/start?mode=sanity"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let t0 = Instant::now();
        loop {
            let body = client
                .get(url("/initialization/status"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            if body == "Successful" {
                break;
            }
            assert_eq!(body, "Progress");
            assert!(t0.elapsed() < Duration::from_secs(20));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let r = client.get(url("/snapshot/latest")).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 405);
        // The snapshot triggers over TLS, as druid sends them with the backup CA.
        for (m, path) in [
            (reqwest::Method::GET, "/snapshot/full"),
            (reqwest::Method::POST, "/snapshot/full?final=true"),
            (reqwest::Method::POST, "/snapshot/delta"),
        ] {
            let r = client.request(m, url(path)).send().await.unwrap();
            assert_eq!(r.status().as_u16(), 405, "{path}");
            assert_eq!(
                r.headers()
                    .get("content-security-policy")
                    .and_then(|v| v.to_str().ok()),
                Some("default-src 'self'")
            );
            assert_eq!(r.text().await.unwrap(), "", "{path}");
        }
    });
    // Plain HTTP on the TLS port gets no HTTP answer.
    assert!(
        get(s.addr, "/healthz")
            .map(|a| a.code != 200)
            .unwrap_or(true)
    );
    assert!(!sc.data().exists());
}
