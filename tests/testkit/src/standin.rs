//! The upstream etcdbrctl's stand-in (`tests/standin/etcdbrctl`, Debian's python3) and a scene
//! around it for the entrypoint tests (`tests/it/etcdbrctl.rs`, `tests/it/etcdbrctl/`): a temp dir that is also `$HOME`
//! (etcdbrctl's Local store is `$HOME/<container>/<prefix>`), the exact environment the
//! dispatcher gets, and what the stand-in recorded (starts with argv and environment, requests,
//! signals).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// `tests/standin/etcdbrctl`.
pub fn path() -> PathBuf {
    crate::deps::workspace_root().join("tests/standin/etcdbrctl")
}

pub struct Scene {
    pub tmp: tempfile::TempDir,
    /// Everything the dispatcher is started with (its environment is cleared first).
    pub env: BTreeMap<String, String>,
    /// What `--upstream` names: the stand-in unless a test sets a real etcdbrctl.
    pub upstream: PathBuf,
    bin: &'static str,
}

impl Scene {
    /// `bin`: `env!("CARGO_BIN_EXE_etcd-restore")`.
    pub fn new(bin: &'static str) -> Scene {
        let tmp = tempfile::tempdir().expect("temp dir");
        let mut env = BTreeMap::new();
        env.insert("PATH".into(), std::env::var("PATH").unwrap_or_default());
        env.insert("HOME".into(), tmp.path().display().to_string());
        env.insert(
            "STANDIN_RECORD".into(),
            tmp.path().join("record.jsonl").display().to_string(),
        );
        // What druid's pod spec sets, and a value with a space and '=' to prove it is untouched.
        env.insert("POD_NAME".into(), "etcd-main-0".into());
        env.insert("POD_NAMESPACE".into(), "shoot--dev--demo".into());
        env.insert("DRUID_MARK".into(), "a b=c".into());
        Scene {
            tmp,
            env,
            upstream: path(),
            bin,
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    /// `etcd-restore etcdbrctl --upstream UPSTREAM PRE... -- ARGS...` with exactly [`Scene::env`].
    pub fn command<S: AsRef<str>>(&self, pre: &[S], args: &[S]) -> Command {
        let mut cmd = Command::new(self.bin);
        cmd.env_clear()
            .envs(&self.env)
            .arg("etcdbrctl")
            .arg("--upstream")
            .arg(&self.upstream)
            .args(pre.iter().map(AsRef::as_ref))
            .arg("--")
            .args(args.iter().map(AsRef::as_ref))
            .stdin(Stdio::null());
        cmd
    }

    /// Every event the stand-in recorded, in order.
    pub fn records(&self) -> Vec<Value> {
        match std::fs::read_to_string(self.path("record.jsonl")) {
            Ok(text) => text
                .lines()
                .map(|l| serde_json::from_str(l).expect("stand-in record"))
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// The events of one kind (`start`, `listening`, `request`, `signal`).
    pub fn events(&self, kind: &str) -> Vec<Value> {
        self.records()
            .into_iter()
            .filter(|r| r["event"] == kind)
            .collect()
    }

    /// The stand-in started exactly once, with `argv` after its own path and our environment
    /// unchanged; returns that start record.
    #[track_caller]
    pub fn assert_started_with<S: AsRef<str>>(&self, argv: &[S]) -> Value {
        let starts = self.events("start");
        assert_eq!(starts.len(), 1, "{starts:?}");
        let s = starts[0].clone();
        let got: Vec<String> = s["argv"]
            .as_array()
            .expect("argv")
            .iter()
            .map(|a| a.as_str().unwrap_or_default().to_string())
            .collect();
        let mut want = vec![path().display().to_string()];
        want.extend(argv.iter().map(|a| a.as_ref().to_string()));
        assert_eq!(got, want);
        let env: BTreeMap<String, String> = serde_json::from_value(s["env"].clone()).expect("env");
        assert_eq!(
            env, self.env,
            "the environment that reached the upstream changed"
        );
        s
    }

    /// The requests that reached the stand-in, as "METHOD path".
    pub fn requests(&self) -> Vec<String> {
        self.events("request")
            .iter()
            .map(|r| {
                format!(
                    "{} {}",
                    r["method"].as_str().unwrap_or_default(),
                    r["path"].as_str().unwrap_or_default()
                )
            })
            .collect()
    }
}

/// Waits for `child` to exit, at most `limit` (then kills it and panics).
#[track_caller]
pub fn wait_exit(child: &mut Child, limit: Duration) -> ExitStatus {
    let t0 = Instant::now();
    loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            return st;
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the dispatcher did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The exit code; a panic if a signal ended the process.
#[track_caller]
pub fn exit_code(st: ExitStatus) -> i32 {
    st.code()
        .unwrap_or_else(|| panic!("ended by a signal, not an exit: {st}"))
}
