//! `etcd-restore serve` driven exactly like etcd-wrapper drives etcdbrctl's server: poll
//! `/initialization/status`, on `New` pick the mode from `<data-dir>/../exit_code` and call
//! `/initialization/start?mode=...`, until `Successful`; then fetch `/config`, write it to a
//! file and start a real etcd 3.5.1 with `--config-file` on the data directory. What etcd then
//! serves is compared with the fixture's oracle (what the source etcd said).

mod initialize;
mod member_bootstrap;
mod metrics;

use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use testkit::wrapper::{Ready, Serve as Server, get, request};
use testkit::{EtcdBins, EtcdConfig, EtcdProcess, Fixture, ManagedProcess, free_port, tempfile};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_etcd-restore")
}

const POD: &str = "etcd-test-0";
const TOKEN: &str = "serve-test-token";

fn start(args: &[String], env: &[(&str, &str)], log: &Path) -> Server {
    Server::spawn(bin(), args, env, log, Ready::Healthz)
}

/// etcd-wrapper's initialization loop (`testkit::wrapper`), at most a minute.
fn wrapper_initialize(s: &Server, exit_code_file: &Path) -> Vec<String> {
    s.initialize(exit_code_file, Duration::from_secs(60))
}

/// The etcd config the cluster would mount: URL maps keyed by member name, a stale
/// initial-cluster-state and keys etcd ignores.
fn write_etcd_conf(path: &Path, cfg: &EtcdConfig) {
    let text = format!(
        "\
# cluster-wide config, as druid renders it
name: etcd-main
member-name-prefix: ''
data-dir: {data}
listen-client-urls: {client}
listen-peer-urls: {peer}
advertise-client-urls:
  {POD}:
  - {client}
  etcd-test-1:
  - http://127.0.0.1:1
initial-advertise-peer-urls:
  {POD}:
  - {peer}
  etcd-test-1:
  - http://127.0.0.1:2
initial-cluster: {POD}={peer}
initial-cluster-token: {TOKEN}
initial-cluster-state: existing
log-level: warn
quota-backend-bytes: 8589934592
",
        data = cfg.data_dir.display(),
        client = cfg.client_url(),
        peer = cfg.peer_url(),
    );
    std::fs::write(path, text).unwrap();
}

/// The member flags matching [`write_etcd_conf`], and keeping every lease ID so etcd's
/// HashKV equals the source's (the oracle's).
fn member_args(cfg: &EtcdConfig) -> Vec<String> {
    vec![
        "--keep-unknown-leases".to_string(),
        format!("--name={POD}"),
        format!("--initial-cluster={POD}={}", cfg.peer_url()),
        format!("--initial-cluster-token={TOKEN}"),
        format!("--initial-advertise-peer-urls={}", cfg.peer_url()),
    ]
}

/// A scenario's directories: `<tmp>/new.etcd` (data), `<tmp>/exit_code`, `<tmp>/etcd.conf.yaml`.
struct Scene {
    tmp: tempfile::TempDir,
    cfg: EtcdConfig,
    fixture: Fixture,
}

impl Scene {
    fn new() -> Scene {
        let tmp = tempfile::tempdir().unwrap();
        let mut cfg = EtcdConfig::new(tmp.path().join("new.etcd")).with_name(POD);
        cfg.initial_cluster_token = TOKEN.to_string();
        write_etcd_conf(&tmp.path().join("etcd.conf.yaml"), &cfg);
        Scene {
            tmp,
            cfg,
            fixture: Fixture::load("3.5.1", "basic").unwrap(),
        }
    }
    fn data(&self) -> &Path {
        &self.cfg.data_dir
    }
    fn exit_code(&self) -> PathBuf {
        self.tmp.path().join("exit_code")
    }
    fn server(&self, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let conf = self.tmp.path().join("etcd.conf.yaml");
        let mut args = vec![
            "--data-dir".to_string(),
            self.data().display().to_string(),
            "--store".to_string(),
            self.fixture.store().display().to_string(),
            "--snapstore-temp-directory".to_string(),
            self.tmp.path().display().to_string(),
        ];
        args.extend(member_args(&self.cfg));
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut env: Vec<(&str, &str)> = env.to_vec();
        let conf_s = conf.display().to_string();
        env.push(("ETCD_CONF", &conf_s));
        env.push(("POD_NAME", POD));
        start(&args, &env, &self.tmp.path().join("serve.log"))
    }
    /// A data directory restored by the CLI with the same member flags.
    fn restore_with_cli(&self) {
        self.restore_from(&self.fixture.store());
    }
    fn restore_from(&self, store: &Path) {
        let out = Command::new(bin())
            .arg("restore")
            .arg("--store")
            .arg(store)
            .arg("--data-dir")
            .arg(self.data())
            .args(member_args(&self.cfg))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    /// The initialization ended `Successful` after a restore counted as `verdict_series` in
    /// /metrics, and etcd started on the served config serves exactly the oracle's key space.
    fn assert_restored_and_served(
        &self,
        s: &Server,
        seen: &[String],
        verdict_series: &str,
        bins: &EtcdBins,
    ) {
        assert_ended(s, seen, "Successful");
        assert_metric(&s.get("/metrics").body, verdict_series, 1.0);
        let etcd = self.start_etcd_from_config(s, bins);
        self.fixture
            .oracle
            .assert_matches(&etcd, self.fixture.oracle.final_revision);
    }

    /// etcd-wrapper after `Successful`: fetch /config (≤ 5 tries), write it, start etcd on it.
    fn start_etcd_from_config(&self, s: &Server, bins: &EtcdBins) -> EtcdProcess {
        let mut conf = None;
        for _ in 0..5 {
            let a = s.get("/config");
            if a.code == 200 {
                conf = Some(a.body);
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let conf = conf.expect("/config never answered 200");
        let v: serde_yaml_lite::Map = serde_yaml_lite::parse(&conf);
        assert_eq!(v.get("name").map(String::as_str), Some(POD), "{conf}");
        assert_eq!(
            v.get("initial-cluster-state").map(String::as_str),
            Some("new"),
            "{conf}"
        );
        assert_eq!(
            v.get("advertise-client-urls"),
            Some(&self.cfg.client_url()),
            "{conf}"
        );
        let path = self.tmp.path().join("served.etcd.conf.yaml");
        std::fs::write(&path, &conf).unwrap();
        let mut cfg = self.cfg.clone();
        cfg.config_file = Some(path);
        EtcdProcess::start(bins, cfg).unwrap_or_else(|e| panic!("etcd on served config: {e}"))
    }
}

/// Just enough YAML to read the top-level scalars of the served config (which etcd itself
/// parses for real when it starts).
mod serde_yaml_lite {
    pub type Map = std::collections::BTreeMap<String, String>;
    pub fn parse(text: &str) -> Map {
        text.lines()
            .filter(|l| !l.starts_with(' ') && !l.starts_with('-'))
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| {
                (
                    k.trim().to_string(),
                    v.trim().trim_matches('\'').trim_matches('"').to_string(),
                )
            })
            .collect()
    }
}

/// Every file under `dir`: (relative path, inode, size, mtime ns, content hash).
fn fingerprint(dir: &Path) -> Vec<(String, u64, u64, i64, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let m = std::fs::metadata(&d).unwrap();
        out.push((
            d.strip_prefix(dir).unwrap().display().to_string(),
            m.ino(),
            0,
            m.mtime_nsec() + m.mtime() * 1_000_000_000,
            0,
        ));
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::metadata(&p).unwrap();
            if m.is_dir() {
                stack.push(p);
            } else {
                let bytes = std::fs::read(&p).unwrap();
                let h = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                    (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
                });
                out.push((
                    p.strip_prefix(dir).unwrap().display().to_string(),
                    m.ino(),
                    m.len(),
                    m.mtime_nsec() + m.mtime() * 1_000_000_000,
                    h,
                ));
            }
        }
    }
    out.sort();
    out
}

fn metric(text: &str, line_prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(line_prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// etcd-wrapper's polling ended on `status` (`Successful` or `Failed`).
#[track_caller]
fn assert_ended(s: &Server, seen: &[String], status: &str) {
    assert_eq!(seen.last().map(String::as_str), Some(status), "{}", s.log());
}

/// The series starting with `line_prefix` in the `/metrics` text add up to `want`.
#[track_caller]
fn assert_metric(text: &str, line_prefix: &str, want: f64) {
    assert_eq!(metric(text, line_prefix), want, "{line_prefix} in:\n{text}");
}

#[test]
fn empty_dir_with_backups_is_restored_and_etcd_starts_on_the_served_config() {
    let Some(bins) = EtcdBins::get("3.5.1") else {
        return;
    };
    let sc = Scene::new();
    let s = sc.server(&[], &[("POD_NAMESPACE", "ns-a")]);
    assert_eq!(s.get("/healthz").code, 200);
    let seen = wrapper_initialize(&s, &sc.exit_code());
    assert_eq!(
        seen.last().map(String::as_str),
        Some("Successful"),
        "{seen:?}: {}",
        s.log()
    );
    // Read-once: the next reader sees New, as plain text without a newline.
    let a = s.get("/initialization/status");
    assert_eq!(a.body, "New");
    assert!(
        a.headers["content-type"].starts_with("text/plain"),
        "{:?}",
        a.headers
    );
    assert_eq!(
        std::fs::read_to_string(sc.tmp.path().join("safe_guard")).unwrap(),
        "ns-a"
    );
    let m = s.get("/metrics").body;
    assert_metric(
        &m,
        "etcdbr_restoration_duration_seconds_count{restore=\"single_node\",succeeded=\"true\"}",
        1.0,
    );
    assert_metric(
        &m,
        "etcd_restore_initializations_total{outcome=\"restored\"}",
        1.0,
    );
    // No staging directory left beside the data directory.
    let leftovers: Vec<_> = std::fs::read_dir(sc.tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let etcd = sc.start_etcd_from_config(&s, &bins);
    sc.fixture
        .oracle
        .assert_matches(&etcd, sc.fixture.oracle.final_revision);
    let members = etcd.member_list().unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].name, POD);
}

#[test]
fn valid_dir_is_untouched_in_both_modes_and_a_running_etcd_fails_it() {
    let Some(bins) = EtcdBins::get("3.5.1") else {
        return;
    };
    let sc = Scene::new();
    sc.restore_with_cli();
    let before = fingerprint(sc.data());
    let s = sc.server(&["--lock-timeout", "1"], &[]);
    let seen = wrapper_initialize(&s, &sc.exit_code());
    assert_ended(&s, &seen, "Successful");
    assert_eq!(
        fingerprint(sc.data()),
        before,
        "full mode changed the data dir"
    );
    std::fs::write(sc.exit_code(), "terminated\n").unwrap();
    let seen = wrapper_initialize(&s, &sc.exit_code());
    assert_ended(&s, &seen, "Successful");
    assert_eq!(
        fingerprint(sc.data()),
        before,
        "sanity mode changed the data dir"
    );
    let m = s.get("/metrics").body;
    for mode in ["full", "sanity"] {
        assert_metric(
            &m,
            &format!("etcd_restore_validation_verdicts_total{{mode=\"{mode}\",verdict=\"valid\"}}"),
            1.0,
        );
    }
    assert_metric(&m, "etcdbr_restoration_duration_seconds_count", 0.0);

    let etcd = sc.start_etcd_from_config(&s, &bins);
    sc.fixture
        .oracle
        .assert_matches(&etcd, sc.fixture.oracle.final_revision);
    // etcd holds bbolt's lock: initialization fails and leaves everything alone (only the
    // database's identity is compared: etcd itself writes meanwhile).
    let ino = || {
        std::fs::metadata(sc.data().join("member/snap/db"))
            .unwrap()
            .ino()
    };
    let during = ino();
    let seen = wrapper_initialize(&s, &sc.exit_code());
    assert_ended(&s, &seen, "Failed");
    assert!(
        s.log().contains("another process holds the lock"),
        "{}",
        s.log()
    );
    assert_eq!(ino(), during);
    assert!(etcd.put("after-failed-init", "x").is_ok());
}

#[test]
fn corrupted_dir_is_restored() {
    let Some(bins) = EtcdBins::get("3.5.1") else {
        return;
    };
    let sc = Scene::new();
    sc.restore_with_cli();
    // A torn database file: etcd cannot open it.
    let db = sc.data().join("member/snap/db");
    let f = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
    f.set_len(16384).unwrap();
    drop(f);
    std::fs::write(sc.data().join("marker"), "old").unwrap();
    let s = sc.server(&[], &[]);
    let seen = wrapper_initialize(&s, &sc.exit_code());
    assert!(
        !sc.data().join("marker").exists(),
        "the corrupt directory was not replaced"
    );
    sc.assert_restored_and_served(
        &s,
        &seen,
        "etcd_restore_validation_verdicts_total{mode=\"full\",verdict=\"corrupt\"}",
        &bins,
    );
}

#[test]
fn stale_dir_is_restored() {
    let Some(bins) = EtcdBins::get("3.5.1") else {
        return;
    };
    let sc = Scene::new();
    // A data directory from the oldest full snapshot alone: intact, but behind the store.
    let oldest = sc
        .fixture
        .oracle
        .objects
        .iter()
        .filter(|o| o.is_full())
        .min_by_key(|o| o.last_revision)
        .unwrap();
    assert!(oldest.last_revision < sc.fixture.oracle.final_revision);
    let small = sc.tmp.path().join("oldest-store");
    let target = small.join(&oldest.path);
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    std::fs::copy(sc.fixture.store().join(&oldest.path), &target).unwrap();
    sc.restore_from(&small);
    let s = sc.server(&[], &[]);
    std::fs::write(sc.exit_code(), "interrupt").unwrap();
    let seen = wrapper_initialize(&s, &sc.exit_code());
    sc.assert_restored_and_served(
        &s,
        &seen,
        "etcd_restore_validation_verdicts_total{mode=\"sanity\",verdict=\"stale\"}",
        &bins,
    );
}

#[test]
fn wrong_volume_fails_and_touches_nothing() {
    let sc = Scene::new();
    sc.restore_with_cli();
    // Then corrupt it: even a directory that would be restored must stay as it is.
    std::fs::remove_dir_all(sc.data().join("member/wal")).unwrap();
    std::fs::write(sc.tmp.path().join("safe_guard"), "other-namespace").unwrap();
    let before = fingerprint(sc.data());
    let s = sc.server(&[], &[("POD_NAMESPACE", "my-namespace")]);
    let seen = wrapper_initialize(&s, &sc.exit_code());
    assert_ended(&s, &seen, "Failed");
    assert_eq!(s.get("/initialization/status").body, "New");
    assert_eq!(fingerprint(sc.data()), before);
    assert_eq!(
        std::fs::read_to_string(sc.tmp.path().join("safe_guard")).unwrap(),
        "other-namespace"
    );
    assert!(s.log().contains("wrong volume"), "{}", s.log());
    let m = s.get("/metrics").body;
    assert_metric(
        &m,
        "etcdbr_validation_duration_seconds_count{succeeded=\"false\"}",
        1.0,
    );
    assert_metric(
        &m,
        "etcd_restore_initializations_total{outcome=\"failed\"}",
        1.0,
    );
}

#[test]
fn thousand_concurrent_requests_are_answered_while_an_initialization_runs() {
    let sc = Scene::new();
    sc.restore_with_cli();
    // Hold the database lock the way a running etcd does: the initialization stays in
    // Progress until it is released.
    let db = std::fs::File::open(sc.data().join("member/snap/db")).unwrap();
    db.lock().unwrap();
    let s = sc.server(&["--lock-timeout", "60"], &[]);
    assert_eq!(s.get("/initialization/start?mode=bogus").code, 200);
    assert_eq!(s.get("/healthz").code, 503);
    let addr = s.addr;
    // 1,000 status/healthz requests and 50 start requests, all in flight at once: one thread
    // each, released together.
    let n_threads = 1050;
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(n_threads));
    let t0 = Instant::now();
    let threads: Vec<_> = (0..n_threads)
        .map(|i| {
            let barrier = std::sync::Arc::clone(&barrier);
            let path = match i % 21 {
                0 => "/initialization/start?mode=full",
                n if n % 2 == 0 => "/healthz",
                _ => "/initialization/status",
            };
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    barrier.wait();
                    (path, get(addr, path).map(|a| (a.code, a.body)))
                })
                .unwrap()
        })
        .collect();
    let mut n = 0;
    let mut starts = 0;
    for t in threads {
        let (path, a) = t.join().unwrap();
        let (code, body) = a.unwrap_or_else(|e| panic!("{path} was not answered: {e}"));
        match path {
            "/healthz" => assert_eq!((code, body.as_str()), (503, r#"{"health":false}"#)),
            "/initialization/status" => assert_eq!((code, body.as_str()), (200, "Progress")),
            _ => {
                assert_eq!(code, 200);
                starts += 1;
            }
        }
        n += 1;
    }
    let took = t0.elapsed();
    assert_eq!((n, starts), (1050, 50));
    eprintln!("{n} concurrent requests answered in {took:?}");
    db.unlock().unwrap();
    drop(db);
    let seen = wrapper_initialize(&s, &sc.exit_code());
    assert_ended(&s, &seen, "Successful");
    let m = s.get("/metrics").body;
    // 51 start requests, one initialization.
    assert_metric(&m, "etcd_restore_initializations_total", 1.0);
    assert_metric(
        &m,
        "etcd_restore_initialization_duration_seconds_count{mode=\"full\",result=\"successful\"}",
        1.0,
    );
}

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
