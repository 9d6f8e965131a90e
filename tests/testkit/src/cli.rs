//! Running the etcd-restore binary from integration tests: the calls several test files make
//! the same way. Cargo only tells integration tests where the binary is
//! (`env!("CARGO_BIN_EXE_etcd-restore")`), so they pass its path in.
//!
//! ```no_run
//! // In an integration test: testkit::Cli(env!("CARGO_BIN_EXE_etcd-restore"))
//! let cli = testkit::Cli("target/debug/etcd-restore");
//! # let (store, dir) = (std::path::Path::new("s"), std::path::Path::new("d"));
//! cli.restore(store, dir, &["--keep-unknown-leases"]);
//! let (hash, compact_revision) = cli.hashkv(dir);
//! ```

use std::path::Path;
use std::process::{Command, Output};

#[derive(Clone, Copy, Debug)]
pub struct Cli(pub &'static str);

impl Cli {
    pub fn command(&self) -> Command {
        Command::new(self.0)
    }

    /// Runs `cmd` and panics with its stderr unless it exits 0.
    #[track_caller]
    pub fn ok(&self, cmd: &mut Command, what: &str) -> Output {
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
        assert!(
            out.status.success(),
            "{what}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// `restore --store STORE --data-dir DIR EXTRA…`, which must succeed.
    #[track_caller]
    pub fn restore(&self, store: &Path, dir: &Path, extra: &[&str]) -> Output {
        let mut c = self.command();
        c.arg("restore")
            .arg("--store")
            .arg(store)
            .arg("--data-dir")
            .arg(dir)
            .args(extra);
        self.ok(&mut c, "restore")
    }

    /// `hashkv --json`: etcd's HashKV of a data dir and its compact revision, offline.
    #[track_caller]
    pub fn hashkv(&self, dir: &Path) -> (u32, i64) {
        let mut c = self.command();
        c.args(["hashkv", "--json", "--data-dir"]).arg(dir);
        let out = self.ok(&mut c, "hashkv");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("hashkv JSON");
        (
            v["hash"].as_u64().expect("hash") as u32,
            v["compact_revision"].as_i64().expect("compact_revision"),
        )
    }

    /// `compact --store STORE --snapstore-temp-directory TEMP --json EXTRA…` (TEMP is
    /// created): exit code, the JSON report (`Null` when there is none) and stderr.
    pub fn compact(
        &self,
        store: &Path,
        temp: &Path,
        extra: &[&str],
    ) -> (i32, serde_json::Value, String) {
        std::fs::create_dir_all(temp).expect("create the temp directory");
        let out = self
            .command()
            .arg("compact")
            .arg("--store")
            .arg(store)
            .arg("--snapstore-temp-directory")
            .arg(temp)
            .arg("--json")
            .args(extra)
            .output()
            .expect("run compact");
        let v = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
        (
            out.status.code().unwrap_or(-1),
            v,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}
