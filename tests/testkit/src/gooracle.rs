//! The Go oracle (`.deps/bin/bboltoracle`, tests/oracle/bboltoracle.go): Go's bbolt 1.3.6,
//! compress/* and encoding/json as an independent reference. Interface in docs/testing.md.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::deps::bboltoracle;
use crate::error::{Error, Result};

pub struct GoOracle {
    bin: PathBuf,
}

/// Result of `bboltoracle check`.
#[derive(Debug, Clone)]
pub struct CheckReport {
    /// Exit 0.
    pub ok: bool,
    /// Everything it printed (error lines, then `OK` / `N errors found`).
    pub output: String,
}

/// `bboltoracle stats`: what `etcdutl snapshot status` reports, and Go's free-page count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub struct GoStats {
    /// Keys of every top-level bucket (etcdutl's `totalKey`).
    pub keys: u64,
    /// `tx.Size()` (etcdutl's `totalSize`): high-water mark × page size.
    pub size: u64,
    /// Free pages of the freelist bbolt loads, or rebuilds when none is synced.
    pub free_pages: u64,
    pub check_errors: u64,
}

/// Go's verdict on a possibly corrupt file (`bboltoracle check` with limits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GoVerdict {
    /// `tx.Check()` found nothing.
    Ok,
    /// `tx.Check()` reported errors (its output).
    Errors(String),
    /// bbolt refused to open the file (stderr).
    CannotOpen(String),
    /// bbolt panicked or the runtime died while checking (stderr, or the signal).
    Crashed(String),
    /// The check ran past the memory or time limit (a cycle it walks forever).
    GaveUp(String),
}

impl GoVerdict {
    /// Whether Go's bbolt accepts the file as sound.
    pub fn accepts(&self) -> bool {
        *self == GoVerdict::Ok
    }
}

impl GoOracle {
    /// The installed oracle, or `None` after a SKIP line (see [`crate::deps::require`]).
    pub fn get() -> Option<GoOracle> {
        bboltoracle().map(|bin| GoOracle { bin })
    }

    pub fn path(&self) -> &Path {
        &self.bin
    }

    /// `check FILE`. Exit 2 (cannot open) is an error.
    pub fn check(&self, file: &Path) -> Result<CheckReport> {
        let out = Command::new(&self.bin)
            .arg("check")
            .arg(file)
            .output()
            .map_err(|e| Error::io("run bboltoracle check", &self.bin, e))?;
        match out.status.code() {
            Some(0) | Some(1) => Ok(CheckReport {
                ok: out.status.success(),
                output: String::from_utf8_lossy(&out.stdout).into_owned(),
            }),
            _ => Err(Error::Command {
                cmd: format!("bboltoracle check {}", file.display()),
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            }),
        }
    }

    /// `check FILE` on a file that may be corrupt in any way: bbolt 1.3.6 may panic, recurse
    /// or allocate without end on such input, so the check runs under a memory and time
    /// limit and every way it can end is a verdict.
    pub fn check_verdict(&self, file: &Path) -> Result<GoVerdict> {
        let out = Command::new(&self.bin)
            .arg("check")
            .arg(file)
            .env("BBOLTORACLE_LIMIT_MB", "512")
            .env("BBOLTORACLE_LIMIT_SECONDS", "30")
            .output()
            .map_err(|e| Error::io("run bboltoracle check", &self.bin, e))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        Ok(match out.status.code() {
            Some(0) => GoVerdict::Ok,
            Some(1) => GoVerdict::Errors(stdout),
            Some(2) if stderr.starts_with("open ") => GoVerdict::CannotOpen(stderr),
            Some(3) => GoVerdict::GaveUp(stderr),
            _ => GoVerdict::Crashed(format!("{}: {stderr}", out.status)),
        })
    }

    /// `stats FILE`.
    pub fn stats(&self, file: &Path) -> Result<GoStats> {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("stats").arg(file);
        let out = crate::etcd::run(cmd)?;
        serde_json::from_slice(&out).map_err(|e| Error::parse("bboltoracle stats output", e))
    }

    /// `dump FILE` (the JSON-lines dump format).
    pub fn dump(&self, file: &Path) -> Result<Vec<u8>> {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("dump").arg(file);
        crate::etcd::run(cmd)
    }

    /// `compress KIND` of `data` (KIND: gzip, zlib, lzw).
    pub fn compress(&self, kind: &str, data: &[u8]) -> Result<Vec<u8>> {
        self.filter(&["compress", kind], data)
    }

    /// `decompress KIND` of `data`.
    pub fn decompress(&self, kind: &str, data: &[u8]) -> Result<Vec<u8>> {
        self.filter(&["decompress", kind], data)
    }

    /// `reencode-delta` of a delta's JSON text (no hash trailer).
    pub fn reencode_delta(&self, json: &[u8]) -> Result<Vec<u8>> {
        self.filter(&["reencode-delta"], json)
    }

    fn filter(&self, args: &[&str], input: &[u8]) -> Result<Vec<u8>> {
        let mut child = Command::new(&self.bin)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::io("run bboltoracle", &self.bin, e))?;
        // Feed stdin from a thread so a large output cannot deadlock against a full pipe.
        let mut stdin = child.stdin.take();
        let data = input.to_vec();
        let feeder = std::thread::spawn(move || {
            if let Some(s) = stdin.as_mut() {
                let _ = s.write_all(&data);
            }
            drop(stdin);
        });
        let out = child
            .wait_with_output()
            .map_err(|e| Error::io("wait for bboltoracle", &self.bin, e))?;
        let _ = feeder.join();
        if !out.status.success() {
            return Err(Error::Command {
                cmd: format!("bboltoracle {}", args.join(" ")),
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        Ok(out.stdout)
    }
}
