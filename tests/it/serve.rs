//! `etcd-restore serve` driven exactly like etcd-wrapper drives etcdbrctl's server: poll
//! `/initialization/status`, on `New` pick the mode from `<data-dir>/../exit_code` and call
//! `/initialization/start?mode=...`, until `Successful`; then fetch `/config`, write it to a
//! file and start a real etcd 3.5.1 with `--config-file` on the data directory. What etcd then
//! serves is compared with the fixture's oracle (what the source etcd said).

mod endpoints;
mod initialize;
mod member_bootstrap;
mod metrics;
mod wrapper_flow;

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
