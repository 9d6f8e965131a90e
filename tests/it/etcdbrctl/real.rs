//! The entrypoint's `server` with the real upstream etcdbrctl beside it: a real etcd 3.5.1
//! bootstraps through our initialization API the way etcd-wrapper drives it (restored from a
//! committed backup), then the upstream server takes full and delta snapshots into the local
//! store while keys are written, and `/snapshot/*` and `/healthz` are answered through our
//! port. Runs only when ETCD_RESTORE_REAL_ETCDBRCTL names an etcdbrctl binary (docs/testing.md
//! says how to build v0.43.0); prints the figures it measured.
//!
//! Not passed to the upstream here: `--use-etcd-wrapper` (it would POST /stop to an
//! etcd-wrapper on 127.0.0.1:9095 after correcting the restored member's peer URL, and exit
//! when none answers) and the Lease flags (no Kubernetes API here).

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::standin::Scene;
use testkit::{EtcdBins, EtcdConfig, EtcdProcess, Fixture, ManagedProcess, free_port};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_etcd-restore")
}

/// Revision ranges (start, last) of snapshots, sorted.
type Ranges = Vec<(i64, i64)>;

/// Snapshots in `store/v2` that the fixture did not have: (fulls, deltas).
fn new_snapshots(store: &Path, before: &[String]) -> (Ranges, Ranges) {
    let (mut full, mut delta) = (Vec::new(), Vec::new());
    for e in std::fs::read_dir(store.join("v2")).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        if before.contains(&name) {
            continue;
        }
        let parts: Vec<&str> = name.split('-').collect();
        if parts.len() < 3 {
            continue;
        }
        let (Ok(a), Ok(b)) = (parts[1].parse::<i64>(), parts[2].parse::<i64>()) else {
            continue;
        };
        match parts[0] {
            "Full" => full.push((a, b)),
            "Incr" => delta.push((a, b)),
            _ => {}
        }
    }
    full.sort();
    delta.sort();
    (full, delta)
}

#[test]
fn real_etcdbrctl_snapshots_while_etcd_bootstraps_through_our_api() {
    let Some(real) = std::env::var_os("ETCD_RESTORE_REAL_ETCDBRCTL") else {
        eprintln!("SKIP: ETCD_RESTORE_REAL_ETCDBRCTL is not set (docs/testing.md)");
        return;
    };
    let Some(bins) = EtcdBins::get("3.5.1") else {
        return;
    };
    let mut sc = Scene::new(bin());
    sc.upstream = real.into();
    let fixture = Fixture::load("3.5.1", "basic").unwrap();
    let store = sc.path("store");
    testkit::tree::copy_dir(&fixture.store(), &store).unwrap();
    let before: Vec<String> = std::fs::read_dir(store.join("v2"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();

    let cfg = EtcdConfig::new(sc.path("data/new.etcd")).with_name("etcd-main-0");
    let conf = sc.path("etcd.conf.yaml");
    std::fs::write(
        &conf,
        format!(
            "name: etcd-main\ndata-dir: {data}\nlisten-client-urls: {c}\nlisten-peer-urls: {p}\n\
             advertise-client-urls:\n  etcd-main-0:\n  - {c}\n\
             initial-advertise-peer-urls:\n  etcd-main-0:\n  - {p}\n\
             initial-cluster: etcd-main-0={p}\ninitial-cluster-token: etcd-cluster\n\
             initial-cluster-state: new\n",
            data = cfg.data_dir.display(),
            c = cfg.client_url(),
            p = cfg.peer_url(),
        ),
    )
    .unwrap();
    sc.env
        .insert("ETCD_CONF".into(), conf.display().to_string());
    let port = free_port();
    let upstream_port = free_port();
    let args = vec![
        "server".to_string(),
        format!("--server-port={port}"),
        "--storage-provider=Local".into(),
        "--store-prefix=".into(),
        "--store-container=store".into(),
        "--schedule=*/1 * * * *".into(),
        "--delta-snapshot-period=2s".into(),
        "--garbage-collection-policy=LimitBased".into(),
        "--max-backups=7".into(),
        "--compress-snapshots=true".into(),
        "--compression-policy=gzip".into(),
        "--insecure-transport=true".into(),
        "--insecure-skip-tls-verify=true".into(),
        format!("--endpoints={}", cfg.client_url()),
        format!("--data-dir={}", cfg.data_dir.display()),
        format!(
            "--snapstore-temp-directory={}",
            sc.path("data/temp").display()
        ),
        "--etcd-connection-timeout=5s".into(),
    ];
    let pre = vec![format!("--upstream-port={upstream_port}")];
    let t0 = Instant::now();
    let mut proc = ManagedProcess::spawn(
        sc.command(&pre, &args),
        "etcd-restore etcdbrctl server (real upstream)",
        &sc.path("dispatcher.log"),
    )
    .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let get = |path: &str| {
        rt.block_on(async {
            let r = client.get(format!("{base}{path}")).send().await?;
            let code = r.status().as_u16();
            Ok::<_, reqwest::Error>((code, r.text().await?))
        })
    };
    let deadline = |what: &str, limit: Duration, proc: &mut ManagedProcess| {
        if let Some(st) = proc.try_exited() {
            panic!(
                "dispatcher exited ({st}) waiting for {what}: {}",
                proc.log_tail(6000)
            );
        }
        assert!(
            t0.elapsed() < limit,
            "{what} not reached in {limit:?}: {}",
            proc.log_tail(6000)
        );
        std::thread::sleep(Duration::from_millis(50));
    };

    // etcd-wrapper's loop: status, start on New, until Successful.
    loop {
        match get("/initialization/status") {
            Ok((200, s)) if s == "New" => {
                assert_eq!(get("/initialization/start?mode=full").unwrap().0, 200);
            }
            Ok((200, s)) if s == "Successful" => break,
            Ok((200, s)) => assert_ne!(s, "Failed", "{}", proc.log_tail(6000)),
            _ => {}
        }
        deadline("initialization", Duration::from_secs(60), &mut proc);
    }
    let initialized = t0.elapsed();
    let (code, served) = get("/config").unwrap();
    assert_eq!(code, 200, "{served}");
    let served_path = sc.path("served.etcd.conf.yaml");
    std::fs::write(&served_path, served).unwrap();
    let mut ecfg = cfg.clone();
    ecfg.config_file = Some(served_path);
    let etcd = EtcdProcess::start(&bins, ecfg).unwrap();
    let etcd_up = t0.elapsed();
    let restored = etcd.status().unwrap().revision;
    assert_eq!(
        restored, fixture.oracle.final_revision,
        "etcd did not start on the restored data"
    );

    // Writes while the upstream snapshots; healthy through our port once both sides are.
    let mut healthy_at = None;
    let mut puts = 0;
    let (full, delta) = loop {
        etcd.put(&format!("/real/{puts}"), "v").unwrap();
        puts += 1;
        if healthy_at.is_none() && matches!(get("/healthz"), Ok((200, _))) {
            healthy_at = Some(t0.elapsed());
        }
        let (full, delta) = new_snapshots(&store, &before);
        if !full.is_empty() && delta.len() >= 3 && healthy_at.is_some() {
            break (full, delta);
        }
        deadline(
            "a full and three delta snapshots",
            Duration::from_secs(120),
            &mut proc,
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let snapshots_at = t0.elapsed();
    // The new full starts at 0 and covers the restored data; the deltas chain after it.
    assert!(full[0].1 >= restored, "{full:?}");
    let mut next = full[0].1 + 1;
    for (a, b) in delta.iter().filter(|(a, _)| *a > full[0].1) {
        assert_eq!(*a, next, "gap in the delta chain {delta:?} after {full:?}");
        next = b + 1;
    }

    // Proxied to the real upstream: its answers, through our port.
    let (code, latest) = get("/snapshot/latest").unwrap();
    assert_eq!(code, 200, "{latest}");
    let latest: Value = serde_json::from_str(&latest).unwrap();
    assert_eq!(latest["fullSnapshot"]["kind"], "Full", "{latest}");
    let t_full = Instant::now();
    let (code, snap) = get("/snapshot/full").unwrap();
    let full_took = t_full.elapsed();
    assert_eq!(code, 200, "{snap}");
    let snap: Value = serde_json::from_str(&snap).unwrap();
    assert!(
        snap["lastRevision"].as_i64().unwrap() >= restored + puts,
        "{snap}"
    );
    // /metrics: the real upstream's exposition with ours appended, each family once.
    let (code, m) = get("/metrics").unwrap();
    assert_eq!(code, 200);
    assert!(m.contains("etcdbr_snapshot_latest_revision{"), "{m}");
    assert!(m.contains("etcd_restore_initializations_total{"), "{m}");
    let mut seen = std::collections::BTreeSet::new();
    for name in m.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        assert!(seen.insert(name.to_string()), "family twice: {name}");
    }
    let (full, delta) = new_snapshots(&store, &before);
    eprintln!(
        "real etcdbrctl beside etcd-restore: initialization Successful after {initialized:?}, \
         etcd up after {etcd_up:?}, /healthz 200 after {:?}, {} full + {} delta snapshots \
         after {snapshots_at:?} ({puts} puts), on-demand /snapshot/full through the proxy \
         {full_took:?}",
        healthy_at.unwrap(),
        full.len(),
        delta.len()
    );
    let st = proc.stop().unwrap();
    eprintln!("dispatcher after SIGTERM: {st}");
    assert!(st.code().is_some(), "{st}: {}", proc.log_tail(4000));
    drop(etcd);
}
