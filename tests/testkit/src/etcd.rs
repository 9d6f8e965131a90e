//! A real etcd for tests: [`EtcdBins`] locates a version's binaries (skip/require rule),
//! [`EtcdConfig`] says how to run a member, [`EtcdProcess`] is a running member (stopped by PID
//! in `stop()` and in `Drop`) with typed etcdctl queries.
//!
//! ```no_run
//! use testkit::{EtcdBins, EtcdConfig, EtcdProcess};
//! let Some(bins) = EtcdBins::get("3.5.1") else { return }; // prints SKIP when not installed
//! let dir = tempfile::tempdir().unwrap();
//! let etcd = EtcdProcess::start(&bins, EtcdConfig::new(dir.path().join("data"))).unwrap();
//! let all = etcd.get_all(None).unwrap();
//! println!("revision {} with {} keys", all.revision, all.kvs.len());
//! // dropped here: SIGTERM, bounded wait, SIGKILL
//! ```

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;

use crate::deps::require;
use crate::error::{Error, Result};
use crate::kv::KeyValue;
use crate::ports::free_port;
use crate::process::ManagedProcess;

/// The etcd versions the suite tests against.
pub const ETCD_VERSIONS: [&str; 2] = ["3.5.1", "3.4.23"];

/// How long [`EtcdProcess::start`] waits for `/health`.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(60);

/// The binaries of one etcd version (`<deps>/etcd-<version>/`).
#[derive(Debug, Clone)]
pub struct EtcdBins {
    pub version: String,
    pub etcd: PathBuf,
    pub etcdctl: PathBuf,
    /// `etcdutl` (3.5+); 3.4 does snapshot restore/status with etcdctl.
    pub etcdutl: Option<PathBuf>,
}

impl EtcdBins {
    /// The binaries of `version` ("3.5.1", "3.4.23"), or `None` (after printing a SKIP line)
    /// when they are not installed and that is allowed.
    pub fn get(version: &str) -> Option<EtcdBins> {
        let dep = format!("etcd-{version}");
        let etcd = require(&dep, &format!("{dep}/etcd"))?;
        let etcdctl = require(&dep, &format!("{dep}/etcdctl"))?;
        let utl = etcd.with_file_name("etcdutl");
        Some(EtcdBins {
            version: version.to_string(),
            etcd,
            etcdctl,
            etcdutl: utl.exists().then_some(utl),
        })
    }

    /// `etcdutl snapshot restore` (3.5) / `etcdctl snapshot restore` (3.4) of `snapshot` into
    /// `cfg.data_dir` (must not exist yet), as member `cfg.name` of `cfg.initial_cluster()`.
    pub fn snapshot_restore(
        &self,
        snapshot: &Path,
        cfg: &EtcdConfig,
        skip_hash_check: bool,
    ) -> Result<()> {
        let mut cmd = self.snapshot_tool();
        cmd.arg("snapshot")
            .arg("restore")
            .arg(snapshot)
            .arg(format!("--data-dir={}", cfg.data_dir.display()))
            .arg(format!("--name={}", cfg.name))
            .arg(format!("--initial-cluster={}", cfg.initial_cluster()))
            .arg(format!(
                "--initial-cluster-token={}",
                cfg.initial_cluster_token
            ))
            .arg(format!("--initial-advertise-peer-urls={}", cfg.peer_url()));
        if skip_hash_check {
            cmd.arg("--skip-hash-check=true");
        }
        run(cmd).map(|_| ())
    }

    /// `snapshot status -w json` of a snapshot or db file.
    pub fn snapshot_status(&self, snapshot: &Path) -> Result<SnapshotStatus> {
        let mut cmd = self.snapshot_tool();
        cmd.arg("snapshot")
            .arg("status")
            .arg(snapshot)
            .arg("--write-out=json");
        let out = run(cmd)?;
        serde_json::from_slice(&out).map_err(|e| Error::parse("snapshot status output", e))
    }

    fn snapshot_tool(&self) -> Command {
        match &self.etcdutl {
            Some(u) => Command::new(u),
            None => {
                let mut c = Command::new(&self.etcdctl);
                c.env("ETCDCTL_API", "3");
                c
            }
        }
    }
}

/// A test matrix over etcd versions: the binaries of each named version (per the skip/require
/// rule) and how often each ran, so the matrix can prove that every version it names ran
/// instead of passing with whichever happened to be installed.
#[derive(Debug)]
pub struct EtcdMatrix {
    named: Vec<String>,
    bins: Vec<EtcdBins>,
    runs: std::cell::RefCell<std::collections::BTreeMap<String, usize>>,
}

impl EtcdMatrix {
    /// Looks up every version; a missing one panics under `ETCD_RESTORE_REQUIRE_DEPS=1` and is
    /// a recorded skip otherwise.
    pub fn new(versions: &[&str]) -> EtcdMatrix {
        EtcdMatrix {
            named: versions.iter().map(|v| v.to_string()).collect(),
            bins: versions.iter().filter_map(|v| EtcdBins::get(v)).collect(),
            runs: Default::default(),
        }
    }

    /// The installed versions, in the order named.
    pub fn bins(&self) -> &[EtcdBins] {
        &self.bins
    }

    /// Counts one run of the matrix body with `bins`.
    pub fn ran(&self, bins: &EtcdBins) {
        *self
            .runs
            .borrow_mut()
            .entry(bins.version.clone())
            .or_default() += 1;
    }

    /// Every named version ran exactly `times` times, except one whose skip was recorded
    /// (possible only without `ETCD_RESTORE_REQUIRE_DEPS=1`).
    pub fn assert_each_ran(&self, times: usize) {
        let runs = self.runs.borrow();
        for v in &self.named {
            let installed = self.bins.iter().any(|b| &b.version == v);
            if !installed {
                assert!(
                    !crate::deps::deps_required(),
                    "etcd {v} is missing but was not reported"
                );
                continue;
            }
            let n = runs.get(v).copied().unwrap_or(0);
            assert_eq!(
                n, times,
                "etcd {v} ran {n} times, the matrix expects {times}"
            );
        }
    }
}

/// `snapshot status -w json`.
#[derive(Debug, Clone, Deserialize)]
pub struct SnapshotStatus {
    pub hash: u32,
    pub revision: i64,
    #[serde(rename = "totalKey")]
    pub total_key: i64,
    #[serde(rename = "totalSize")]
    pub total_size: i64,
}

/// How to run one member. [`EtcdConfig::new`] gives a single-member cluster named `default` on
/// free 127.0.0.1 ports; set `initial_cluster` (and `initial_cluster_state`) for more members.
#[derive(Debug, Clone)]
pub struct EtcdConfig {
    pub name: String,
    pub data_dir: PathBuf,
    pub client_port: u16,
    pub peer_port: u16,
    /// `name=peerURL,...`; `None` = just this member.
    pub initial_cluster: Option<String>,
    pub initial_cluster_state: String,
    pub initial_cluster_token: String,
    /// Appended to etcd's command line.
    pub extra_args: Vec<String>,
    /// Start with `--config-file` only (etcd then ignores its other flags); the file must use
    /// this config's name, data dir and ports, which the health check and queries rely on.
    pub config_file: Option<PathBuf>,
}

impl EtcdConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> EtcdConfig {
        EtcdConfig {
            name: "default".to_string(),
            data_dir: data_dir.into(),
            client_port: free_port(),
            peer_port: free_port(),
            initial_cluster: None,
            initial_cluster_state: "new".to_string(),
            initial_cluster_token: "etcd-cluster".to_string(),
            extra_args: Vec::new(),
            config_file: None,
        }
    }

    pub fn with_name(mut self, name: &str) -> EtcdConfig {
        self.name = name.to_string();
        self
    }

    pub fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    pub fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    pub fn initial_cluster(&self) -> String {
        self.initial_cluster
            .clone()
            .unwrap_or_else(|| format!("{}={}", self.name, self.peer_url()))
    }

    fn args(&self) -> Vec<String> {
        if let Some(f) = &self.config_file {
            return vec![format!("--config-file={}", f.display())];
        }
        let mut a = vec![
            format!("--name={}", self.name),
            format!("--data-dir={}", self.data_dir.display()),
            format!("--listen-client-urls={}", self.client_url()),
            format!("--advertise-client-urls={}", self.client_url()),
            format!("--listen-peer-urls={}", self.peer_url()),
            format!("--initial-advertise-peer-urls={}", self.peer_url()),
            format!("--initial-cluster={}", self.initial_cluster()),
            format!("--initial-cluster-state={}", self.initial_cluster_state),
            format!("--initial-cluster-token={}", self.initial_cluster_token),
            // No metrics/pprof listeners beyond the client port.
            "--log-level=warn".to_string(),
        ];
        a.extend(self.extra_args.iter().cloned());
        a
    }
}

/// A running etcd member.
pub struct EtcdProcess {
    bins: EtcdBins,
    cfg: EtcdConfig,
    proc: ManagedProcess,
}

impl EtcdProcess {
    /// Starts etcd and waits (at most [`HEALTH_TIMEOUT`]) until `/health` says true. When the
    /// ports were taken meanwhile and the member is alone in its cluster, retries on fresh ports.
    pub fn start(bins: &EtcdBins, cfg: EtcdConfig) -> Result<EtcdProcess> {
        let mut cfg = cfg;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut p = EtcdProcess::spawn(bins, cfg.clone())?;
            match p.wait_healthy(HEALTH_TIMEOUT) {
                Ok(()) => return Ok(p),
                Err(e) => {
                    let in_use = p.proc.log_tail(4096).contains("address already in use");
                    p.proc.stop()?;
                    if !(in_use && cfg.initial_cluster.is_none() && attempt < 3) {
                        return Err(e);
                    }
                    cfg.client_port = free_port();
                    cfg.peer_port = free_port();
                }
            }
        }
    }

    /// Starts etcd without waiting (members of a multi-member cluster are only healthy once a
    /// quorum runs); call [`EtcdProcess::wait_healthy`] later.
    pub fn spawn(bins: &EtcdBins, cfg: EtcdConfig) -> Result<EtcdProcess> {
        if let Some(parent) = cfg.data_dir.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| Error::io("create data dir parent", parent, e))?;
        }
        let log = cfg.data_dir.with_file_name(format!(
            "{}.etcd-{}.log",
            cfg.data_dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            cfg.client_port
        ));
        let mut cmd = Command::new(&bins.etcd);
        cmd.args(cfg.args());
        // etcd reads every ETCD_* variable as a flag; ours (ETCD_RESTORE_*) must not reach it.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("ETCD_") {
                cmd.env_remove(k);
            }
        }
        let what = format!(
            "etcd {} member {} client {} data {}",
            bins.version,
            cfg.name,
            cfg.client_url(),
            cfg.data_dir.display()
        );
        let proc = ManagedProcess::spawn(cmd, &what, &log)?;
        Ok(EtcdProcess {
            bins: bins.clone(),
            cfg,
            proc,
        })
    }

    /// Polls `GET /health` until it reports true; fails early (with the log tail) if etcd exits.
    pub fn wait_healthy(&mut self, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        let max_polls = timeout.as_millis() / 100 + 1;
        for _ in 0..max_polls {
            if let Some(status) = self.proc.try_exited() {
                return Err(Error::Exited {
                    what: self.proc.what().to_string(),
                    status: status.to_string(),
                    log: format!("; log tail:\n{}", self.proc.log_tail(4096)),
                });
            }
            if health_ok(self.cfg.client_port) {
                return Ok(());
            }
            if start.elapsed() > timeout {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(Error::Timeout {
            what: format!("{} to become healthy", self.proc.what()),
            secs: timeout.as_secs(),
            log: format!("; log tail:\n{}", self.proc.log_tail(4096)),
        })
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    pub fn config(&self) -> &EtcdConfig {
        &self.cfg
    }

    pub fn bins(&self) -> &EtcdBins {
        &self.bins
    }

    /// `http://127.0.0.1:<client port>`.
    pub fn endpoint(&self) -> String {
        self.cfg.client_url()
    }

    pub fn log_tail(&self, max: usize) -> String {
        self.proc.log_tail(max)
    }

    /// SIGTERM, bounded wait, SIGKILL. Also done by `Drop`.
    pub fn stop(&mut self) -> Result<()> {
        self.proc.stop().map(|_| ())
    }

    /// Runs `etcdctl --endpoints=<this member> ARGS...` and returns its stdout.
    pub fn etcdctl<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Result<Vec<u8>> {
        let mut cmd = Command::new(&self.bins.etcdctl);
        cmd.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoint()))
            .arg("--dial-timeout=5s")
            .arg("--command-timeout=60s")
            .args(args);
        run(cmd)
    }

    /// [`EtcdProcess::etcdctl`] with `--write-out=json` appended, parsed.
    pub fn etcdctl_json<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Result<Value> {
        let mut a: Vec<std::ffi::OsString> = args.iter().map(|s| s.as_ref().to_owned()).collect();
        a.push("--write-out=json".into());
        let out = self.etcdctl(&a)?;
        serde_json::from_slice(&out).map_err(|e| Error::parse("etcdctl JSON output", e))
    }

    /// `get "" --prefix [--rev REV]`: every key at `rev` (default: current).
    pub fn get_all(&self, rev: Option<i64>) -> Result<Range> {
        let mut args = vec!["get".to_string(), String::new(), "--prefix".to_string()];
        if let Some(r) = rev {
            args.push(format!("--rev={r}"));
        }
        let v = self.etcdctl_json(&args)?;
        parse_range(&v)
    }

    /// `get KEY [--rev REV]` of one key (raw bytes allowed only if valid UTF-8 on the command
    /// line; use [`EtcdProcess::get_all`] for binary keys).
    pub fn get(&self, key: &str, rev: Option<i64>) -> Result<Option<KeyValue>> {
        let mut args = vec!["get".to_string(), key.to_string()];
        if let Some(r) = rev {
            args.push(format!("--rev={r}"));
        }
        let v = self.etcdctl_json(&args)?;
        Ok(parse_range(&v)?.kvs.into_iter().next())
    }

    /// `put KEY VALUE`; returns the new revision.
    pub fn put(&self, key: &str, value: &str) -> Result<i64> {
        let v = self.etcdctl_json(&["put", key, value])?;
        header_revision(&v)
    }

    /// `endpoint hashkv [--rev REV]`.
    pub fn hashkv(&self, rev: Option<i64>) -> Result<HashKv> {
        let mut args = vec!["endpoint".to_string(), "hashkv".to_string()];
        if let Some(r) = rev {
            args.push(format!("--rev={r}"));
        }
        let v = self.etcdctl_json(&args)?;
        let h = v
            .get(0)
            .and_then(|e| e.get("HashKV"))
            .ok_or_else(|| Error::parse("endpoint hashkv output", v.to_string()))?;
        Ok(HashKv {
            header_revision: h
                .pointer("/header/revision")
                .and_then(Value::as_i64)
                .unwrap_or(0),
            hash: h
                .get("hash")
                .and_then(Value::as_u64)
                .and_then(|x| u32::try_from(x).ok())
                .unwrap_or(0),
            compact_revision: h
                .get("compact_revision")
                .and_then(Value::as_i64)
                .unwrap_or(0),
        })
    }

    /// `endpoint status`.
    pub fn status(&self) -> Result<Status> {
        let v = self.etcdctl_json(&["endpoint", "status"])?;
        let s = v
            .get(0)
            .and_then(|e| e.get("Status"))
            .ok_or_else(|| Error::parse("endpoint status output", v.to_string()))?;
        let i = |p: &str| s.pointer(p).and_then(Value::as_i64).unwrap_or(0);
        let u = |p: &str| s.pointer(p).and_then(Value::as_u64).unwrap_or(0);
        Ok(Status {
            revision: i("/header/revision"),
            member_id: u("/header/member_id"),
            cluster_id: u("/header/cluster_id"),
            leader: u("/leader"),
            raft_index: u("/raftIndex"),
            raft_term: u("/raftTerm"),
            db_size: i("/dbSize"),
            version: s
                .get("version")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        })
    }

    /// `member list`.
    pub fn member_list(&self) -> Result<Vec<Member>> {
        let v = self.etcdctl_json(&["member", "list"])?;
        let members = v.get("members").cloned().unwrap_or(Value::Array(vec![]));
        serde_json::from_value(members).map_err(|e| Error::parse("member list output", e))
    }
}

impl Drop for EtcdProcess {
    fn drop(&mut self) {
        // ManagedProcess's own Drop stops it; stopping here first keeps the order explicit.
        if let Err(e) = self.proc.stop() {
            eprintln!("testkit: stopping {}: {e}", self.proc.what());
        }
    }
}

/// The answer to a range read.
#[derive(Debug, Clone)]
pub struct Range {
    /// The store's current revision (response header), not the read revision.
    pub revision: i64,
    pub kvs: Vec<KeyValue>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashKv {
    pub header_revision: i64,
    pub hash: u32,
    pub compact_revision: i64,
}

#[derive(Debug, Clone)]
pub struct Status {
    pub revision: i64,
    pub member_id: u64,
    pub cluster_id: u64,
    pub leader: u64,
    pub raft_index: u64,
    pub raft_term: u64,
    pub db_size: i64,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct Member {
    #[serde(rename = "ID", default)]
    pub id: u64,
    #[serde(default)]
    pub name: String,
    #[serde(rename = "peerURLs", default)]
    pub peer_urls: Vec<String>,
    #[serde(rename = "clientURLs", default)]
    pub client_urls: Vec<String>,
    #[serde(rename = "isLearner", default)]
    pub is_learner: bool,
}

fn header_revision(v: &Value) -> Result<i64> {
    v.pointer("/header/revision")
        .and_then(Value::as_i64)
        .ok_or_else(|| Error::parse("etcdctl header", v.to_string()))
}

fn parse_range(v: &Value) -> Result<Range> {
    let revision = header_revision(v)?;
    let kvs = match v.get("kvs") {
        Some(k) => serde_json::from_value(k.clone()).map_err(|e| Error::parse("range kvs", e))?,
        None => Vec::new(),
    };
    Ok(Range { revision, kvs })
}

fn health_ok(port: u16) -> bool {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = Vec::new();
    let _ = s.take(64 * 1024).read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    (text.starts_with("HTTP/1.0 200") || text.starts_with("HTTP/1.1 200"))
        && text.contains("\"health\":\"true\"")
}

/// Runs a command to completion; non-zero exit is an error carrying stderr.
pub(crate) fn run(mut cmd: Command) -> Result<Vec<u8>> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .output()
        .map_err(|e| Error::io("run", PathBuf::from(&shown), e))?;
    if !out.status.success() {
        return Err(Error::Command {
            cmd: shown,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(out.stdout)
}
