//! A server process owned by a test: spawned with its output in a log file, registered in the
//! PID registry, and always stopped by PID — SIGTERM, a bounded wait, then SIGKILL — by
//! [`ManagedProcess::stop`] or, if the test panics first, by `Drop`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::pids;

/// How long a server gets to exit after SIGTERM before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

pub struct ManagedProcess {
    child: Child,
    what: String,
    log: PathBuf,
    exit: Option<ExitStatus>,
}

impl ManagedProcess {
    /// Spawns `cmd` with stdin closed and stdout+stderr appended to `log`, and registers its PID.
    pub fn spawn(mut cmd: Command, what: &str, log: &Path) -> Result<ManagedProcess> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| Error::io("open server log", log, e))?;
        let err = out
            .try_clone()
            .map_err(|e| Error::io("open server log", log, e))?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = cmd
            .spawn()
            .map_err(|e| Error::io("spawn server", PathBuf::from(what), e))?;
        let pid = child.id();
        let mut p = ManagedProcess {
            child,
            what: what.to_string(),
            log: log.to_path_buf(),
            exit: None,
        };
        if let Err(e) = pids::register(pid, what) {
            p.stop_quietly();
            return Err(e);
        }
        Ok(p)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn what(&self) -> &str {
        &self.what
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last `max` bytes of the log (for error messages).
    pub fn log_tail(&self, max: usize) -> String {
        log_tail(&self.log, max)
    }

    /// `Some(status)` once the process has exited (reaps it).
    pub fn try_exited(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().ok().flatten();
            if self.exit.is_some() {
                pids::unregister(self.pid());
            }
        }
        self.exit
    }

    /// SIGTERM, wait up to [`STOP_GRACE`], then SIGKILL; reaps the process and removes its PID
    /// entry. Idempotent.
    pub fn stop(&mut self) -> Result<ExitStatus> {
        if let Some(s) = self.try_exited() {
            return Ok(s);
        }
        let pid = self.pid();
        // std only offers SIGKILL; SIGTERM lets the server shut down cleanly.
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let start = Instant::now();
        for _ in 0..(STOP_GRACE.as_millis() / 50) {
            if let Some(s) = self.try_exited() {
                return Ok(s);
            }
            if start.elapsed() > STOP_GRACE {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let status = self
            .child
            .wait()
            .map_err(|e| Error::io("wait for killed server", PathBuf::from(&self.what), e))?;
        self.exit = Some(status);
        pids::unregister(pid);
        Ok(status)
    }

    fn stop_quietly(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("testkit: stopping {} (pid {}): {e}", self.what, self.pid());
        }
    }
}

impl Drop for ManagedProcess {
    fn drop(&mut self) {
        self.stop_quietly();
    }
}

pub(crate) fn log_tail(path: &Path, max: usize) -> String {
    let Ok(bytes) = std::fs::read(path) else {
        return String::new();
    };
    let start = bytes.len().saturating_sub(max);
    String::from_utf8_lossy(bytes.get(start..).unwrap_or_default()).into_owned()
}
