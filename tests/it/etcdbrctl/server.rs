//! `etcd-restore etcdbrctl -- server ...` (src/entrypoint) against the stand-in upstream
//! (tests/standin/etcdbrctl, via `testkit::standin`): our initialization API answered natively,
//! every other path proxied (methods, query, headers, bodies both ways, status codes,
//! streaming) over HTTP and over TLS with a CA-signed certificate, `/healthz` healthy only when
//! both sides are, SIGTERM forwarded with the upstream's exit code kept, a dying upstream failing
//! the container, a taken port failing before the upstream starts.
//! `tests/it/etcdbrctl/real.rs` runs `server` with the real etcdbrctl.

use std::net::SocketAddr;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::free_port;
use testkit::standin::{Scene, exit_code, wait_exit};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_etcd-restore")
}

/// etcdbrctl server's arguments as etcd-druid renders them for a single-member etcd without
/// TLS (internal/component/statefulset/builder.go `getBackupRestoreContainerCommandArgs`), on
/// local ports.
fn druid_server_args(sc: &Scene, port: u16, etcd_port: u16) -> Vec<String> {
    let d = sc.path("data");
    vec![
        "server".into(),
        format!("--server-port={port}"),
        "--enable-snapshot-lease-renewal=true".into(),
        "--full-snapshot-lease-name=etcd-main-full-snap".into(),
        "--delta-snapshot-lease-name=etcd-main-delta-snap".into(),
        "--storage-provider=Local".into(),
        "--store-prefix=".into(),
        "--store-container=store".into(),
        "--schedule=0 */1 * * *".into(),
        "--delta-snapshot-period=20s".into(),
        "--garbage-collection-policy=LimitBased".into(),
        "--max-backups=7".into(),
        "--compress-snapshots=true".into(),
        "--compression-policy=gzip".into(),
        "--etcd-snapshot-timeout=15m".into(),
        "--defragmentation-schedule=0 0 */3 * *".into(),
        "--etcd-defrag-timeout=15m".into(),
        "--auto-compaction-mode=periodic".into(),
        "--auto-compaction-retention=30m".into(),
        "--insecure-transport=true".into(),
        "--insecure-skip-tls-verify=true".into(),
        format!("--endpoints=http://127.0.0.1:{etcd_port}"),
        format!("--data-dir={}/new.etcd", d.display()),
        format!(
            "--restoration-temp-snapshots-dir={}/restoration.temp",
            d.display()
        ),
        format!("--snapstore-temp-directory={}/temp", d.display()),
        "--etcd-connection-timeout=5m".into(),
        "--use-etcd-wrapper=true".into(),
        "--enable-member-lease-renewal=true".into(),
        "--k8s-heartbeat-duration=10s".into(),
        "--embedded-etcd-quota-bytes=8589934592".into(),
    ]
}

/// The etcd config druid mounts (`$ETCD_CONF`), for one member.
fn write_etcd_conf(sc: &mut Scene, etcd_port: u16, peer_port: u16) {
    let path = sc.path("etcd.conf.yaml");
    let text = format!(
        "name: etcd-main\ndata-dir: {data}/new.etcd\n\
         listen-client-urls: http://127.0.0.1:{etcd_port}\n\
         listen-peer-urls: http://127.0.0.1:{peer_port}\n\
         advertise-client-urls:\n  etcd-main-0:\n  - http://127.0.0.1:{etcd_port}\n\
         initial-advertise-peer-urls:\n  etcd-main-0:\n  - http://127.0.0.1:{peer_port}\n\
         initial-cluster: etcd-main-0=http://127.0.0.1:{peer_port}\n\
         initial-cluster-token: etcd-cluster\ninitial-cluster-state: new\n",
        data = sc.path("data").display(),
    );
    std::fs::write(&path, text).unwrap();
    sc.env
        .insert("ETCD_CONF".into(), path.display().to_string());
}

/// The dispatcher running `server`, and the stand-in it started (registered as a test
/// process so it is never left behind).
struct Running {
    proc: testkit::ManagedProcess,
    addr: SocketAddr,
    upstream_pid: u32,
}

impl Running {
    fn start(sc: &Scene, pre: &[String], args: &[String], tls_ready: bool) -> Running {
        let port: u16 = args
            .iter()
            .find_map(|a| a.strip_prefix("--server-port="))
            .unwrap()
            .parse()
            .unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let cmd = sc.command(pre, args);
        let mut proc = testkit::ManagedProcess::spawn(
            cmd,
            "etcd-restore etcdbrctl server",
            &sc.path("dispatcher.log"),
        )
        .unwrap();
        let t0 = Instant::now();
        let upstream_pid = loop {
            if let Some(st) = proc.try_exited() {
                panic!("dispatcher exited: {st}: {}", proc.log_tail(4096));
            }
            let listening = !sc.events("listening").is_empty();
            let ours = std::net::TcpStream::connect(addr).is_ok();
            if listening && ours {
                let pid = sc.events("start")[0]["pid"].as_u64().unwrap() as u32;
                testkit::pids::register(pid, "stand-in etcdbrctl server").unwrap();
                break pid;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "not up (tls {tls_ready}): {}",
                proc.log_tail(4096)
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        Running {
            proc,
            addr,
            upstream_pid,
        }
    }

    /// Waits for the dispatcher's own exit.
    fn exit_status(&mut self, limit: Duration) -> ExitStatus {
        let t0 = Instant::now();
        loop {
            if let Some(st) = self.proc.try_exited() {
                return st;
            }
            assert!(
                t0.elapsed() < limit,
                "still running: {}",
                self.proc.log_tail(4096)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.proc.stop();
        if testkit::pids::is_alive(self.upstream_pid) {
            let _ = Command::new("kill")
                .args(["-KILL", &self.upstream_pid.to_string()])
                .status();
        }
        testkit::pids::unregister(self.upstream_pid);
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Everything a client of the public port sees, over `base` (http or https).
async fn assert_proxy_and_native_paths(sc: &Scene, client: &reqwest::Client, base: &str) {
    let get = |path: &str| client.get(format!("{base}{path}")).send();
    // Ours: the initialization API and /config.
    let r = get("/initialization/status").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "New");
    let r = get("/config").await.unwrap();
    assert_eq!(r.status(), 200);
    let conf = r.text().await.unwrap();
    assert!(conf.contains("name: etcd-main-0"), "{conf}");
    // Spellings Go's ServeMux would route to the upstream's initializer are refused here.
    for p in [
        "/initialization/st%61rt",
        "/initialization/start/",
        "/%63onfig",
    ] {
        let r = get(p).await.unwrap();
        assert_eq!(r.status(), 404, "{p}");
    }

    // Proxied: every method, the query, headers and a 3 MiB body both ways intact.
    let body: Vec<u8> = (0..3 << 20).map(|i: u32| (i % 251) as u8).collect();
    let sha = {
        use sha2::Digest as _;
        sha2::Sha256::digest(&body)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    for method in ["POST", "PUT", "PATCH", "DELETE"] {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let r = client
            .request(m, format!("{base}/snapshot/full?final=true&x=%20y"))
            .header("X-Druid", "compaction")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{method}");
        assert_eq!(r.headers()["x-standin"], "yes");
        let v: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        assert_eq!(v["method"], method);
        assert_eq!(v["path"], "/snapshot/full?final=true&x=%20y");
        assert_eq!(v["headers"]["x-druid"], "compaction");
        assert_eq!(v["body_len"], body.len());
        assert_eq!(v["body_sha256"], sha.as_str());
    }
    let r = client
        .head(format!("{base}/snapshot/latest"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for code in [400u16, 405, 418, 500, 503] {
        let r = get(&format!("/status/{code}")).await.unwrap();
        assert_eq!(r.status().as_u16(), code);
        assert_eq!(r.text().await.unwrap(), format!("status {code}"));
    }
    // /metrics: the upstream's, then ours after an initialization ran here (a family both
    // have stays the upstream's alone); asked with gzip, as Prometheus asks.
    assert_eq!(
        get("/initialization/start?mode=full")
            .await
            .unwrap()
            .status(),
        200
    );
    let t0 = Instant::now();
    loop {
        let s = get("/initialization/status")
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if s == "Successful" {
            break;
        }
        assert!(
            s != "Failed" && t0.elapsed() < Duration::from_secs(30),
            "{s}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = client
        .get(format!("{base}/metrics"))
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["x-standin"],
        "yes",
        "/metrics comes from upstream"
    );
    let m = r.text().await.unwrap();
    assert!(
        m.starts_with("# HELP etcdbr_snapshot_required Standin."),
        "{m}"
    );
    assert!(m.contains("etcd_restore_initializations_total{"), "{m}");
    assert_eq!(
        m.matches("# TYPE etcdbr_validation_duration_seconds ")
            .count(),
        1,
        "{m}"
    );

    // Streaming: the first chunk arrives while the upstream is still writing.
    let t0 = Instant::now();
    let mut r = get("/stream").await.unwrap();
    let first = r.chunk().await.unwrap().unwrap();
    let first_at = t0.elapsed();
    let mut rest = Vec::new();
    while let Some(c) = r.chunk().await.unwrap() {
        rest.extend_from_slice(&c);
    }
    let all_at = t0.elapsed();
    assert_eq!(&first[..], b"first\n");
    assert_eq!(rest, b"second\n");
    assert!(
        first_at < Duration::from_millis(1200) && all_at >= Duration::from_millis(1400),
        "not streamed: first chunk after {first_at:?}, all after {all_at:?}"
    );

    // /healthz: healthy only when both sides are.
    let health = sc.path("standin-health");
    std::fs::write(&health, "200").unwrap();
    let r = get("/healthz").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), r#"{"health":true}"#);
    std::fs::write(&health, "503").unwrap();
    let r = get("/healthz").await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.text().await.unwrap(), r#"{"health":false}"#);
    std::fs::write(&health, "200").unwrap();

    let reached = sc.requests();
    assert!(
        !reached
            .iter()
            .any(|r| r.contains(" /initialization") || r.contains(" /config")),
        "the upstream saw the initialization API: {reached:?}"
    );
    assert!(reached.contains(&"PATCH /snapshot/full?final=true&x=%20y".to_string()));
}

fn server_scene() -> (Scene, u16, u16) {
    let mut sc = Scene::new(bin());
    std::fs::create_dir_all(sc.path("store")).unwrap();
    let (etcd_port, peer_port) = (free_port(), free_port());
    write_etcd_conf(&mut sc, etcd_port, peer_port);
    let health = sc.path("standin-health").display().to_string();
    sc.env.insert("STANDIN_HEALTH".into(), health);
    sc.env.insert("STANDIN_TERM_EXIT".into(), "3".into());
    (sc, free_port(), etcd_port)
}

#[test]
fn server_answers_the_initialization_api_and_proxies_the_rest() {
    let (sc, port, etcd_port) = server_scene();
    let upstream_port = free_port();
    let args = druid_server_args(&sc, port, etcd_port);
    let pre = vec![format!("--upstream-port={upstream_port}")];
    let mut run = Running::start(&sc, &pre, &args, false);

    // The upstream got etcdbrctl's arguments in order, only the port changed, and our env.
    let mut want: Vec<String> = args
        .iter()
        .filter(|a| !a.starts_with("--server-port="))
        .cloned()
        .collect();
    want.push(format!("--server-port={upstream_port}"));
    sc.assert_started_with(&want);

    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let base = format!("http://{}", run.addr);
    runtime().block_on(assert_proxy_and_native_paths(&sc, &client, &base));

    // SIGTERM reaches both; the container's exit code is the upstream's.
    let st = run.proc.stop().unwrap();
    assert_eq!(exit_code(st), 3, "{}", run.proc.log_tail(4096));
    let sigs = sc.events("signal");
    assert_eq!(sigs.len(), 1, "{sigs:?}");
    assert_eq!(sigs[0]["signal"], 15, "SIGTERM");
}

#[test]
fn server_over_tls_with_a_ca_signed_certificate() {
    let (sc, port, etcd_port) = server_scene();
    // druid's backup-restore server certificate: signed by its CA, named for the Service.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["etcd-main-local".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let (cert_file, key_file) = (sc.path("tls.crt"), sc.path("tls.key"));
    std::fs::write(&cert_file, leaf.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    let mut args = druid_server_args(&sc, port, etcd_port);
    args.push(format!("--server-cert={}", cert_file.display()));
    args.push(format!("--server-key={}", key_file.display()));
    let upstream_port = free_port();
    let run = Running::start(
        &sc,
        &[format!("--upstream-port={upstream_port}")],
        &args,
        true,
    );
    let listening = sc.events("listening");
    assert_eq!(listening[0]["tls"], true, "the upstream serves TLS too");
    assert_eq!(listening[0]["port"], upstream_port);

    let client = reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only([reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap()])
        .resolve("etcd-main-local", run.addr)
        .build()
        .unwrap();
    let base = format!("https://etcd-main-local:{port}");
    runtime().block_on(async {
        assert_proxy_and_native_paths(&sc, &client, &base).await;
        let r = client.get(format!("{base}/healthz")).send().await.unwrap();
        assert_eq!(r.headers()["strict-transport-security"], "max-age=31536000");
    });
}

#[test]
fn the_container_fails_when_the_upstream_server_dies() {
    // Killed: 128 + SIGKILL, as the kubelet would report for etcdbrctl itself.
    let (sc, port, etcd_port) = server_scene();
    let pre = [format!("--upstream-port={}", free_port())];
    let mut run = Running::start(&sc, &pre, &druid_server_args(&sc, port, etcd_port), false);
    Command::new("kill")
        .args(["-KILL", &run.upstream_pid.to_string()])
        .status()
        .unwrap();
    assert_eq!(exit_code(run.exit_status(Duration::from_secs(20))), 137);

    // Exiting by itself: its exit code.
    let (sc, port, etcd_port) = server_scene();
    let pre = [format!("--upstream-port={}", free_port())];
    let mut run = Running::start(&sc, &pre, &druid_server_args(&sc, port, etcd_port), false);
    let _ = runtime().block_on(
        reqwest::Client::new()
            .get(format!("http://{}/exit/9", run.addr))
            .send(),
    );
    assert_eq!(exit_code(run.exit_status(Duration::from_secs(20))), 9);
}

#[test]
fn a_taken_port_fails_before_the_upstream_starts() {
    let (sc, port, etcd_port) = server_scene();
    let _taken = std::net::TcpListener::bind(("0.0.0.0", port)).unwrap();
    let argv = druid_server_args(&sc, port, etcd_port);
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let mut child = sc
        .command(&[], &argv)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let st = wait_exit(&mut child, Duration::from_secs(30));
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(exit_code(st), 1, "{err}");
    assert!(err.contains(&port.to_string()), "{err}");
    assert!(
        sc.records().is_empty(),
        "the upstream started although our port was taken: {:?}",
        sc.records()
    );
}

#[test]
fn a_config_file_is_refused_before_anything_starts() {
    // etcdbrctl would read its port and certificates from the file, which the dispatcher
    // cannot see into (pkg/server/init.go `loadConfigFromFile`).
    let (sc, port, _) = server_scene();
    let args = [
        "server".to_string(),
        format!("--server-port={port}"),
        format!("--config-file={}", sc.path("etcdbrctl.yaml").display()),
    ];
    let out = sc.command(&[], &args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("--config-file"), "{err}");
    assert!(
        sc.records().is_empty(),
        "the upstream started: {:?}",
        sc.records()
    );
}
