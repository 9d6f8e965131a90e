//! Two processes as one container: the upstream `etcdbrctl server` as our child, signals
//! forwarded to it, and the container ending the way it ends today when either side dies.
//!
//! etcdbrctl cancels its context on the first SIGTERM/SIGINT and exits 1 on a second one
//! (etcd-backup-restore v0.43.0 `main.go` `setupSignalHandler`); each signal we receive is
//! passed on as it is, so both behaviours stay the upstream's.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};

use tokio::process::{Child, Command};
use tokio::signal::unix::{Signal, SignalKind, signal};

#[derive(Debug, thiserror::Error)]
pub enum SuperviseError {
    #[error("starting the upstream etcdbrctl {}: {source} (is it in the image at that path? see --upstream)", path.display())]
    Spawn {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("installing the signal handlers: {0}")]
    Signals(#[source] std::io::Error),
    #[error("waiting for the upstream etcdbrctl: {0}")]
    Wait(#[source] std::io::Error),
}

/// The exit code a shell (and Kubernetes' `exitCode`) reports for a status: the code, or
/// 128 + the signal that ended the process.
pub fn exit_code(status: ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(c), _) => u8::try_from(c & 0xff).unwrap_or(1),
        (None, Some(s)) => u8::try_from(128 + (s & 0x7f)).unwrap_or(1),
        (None, None) => 1,
    }
}

/// The upstream server, started with its environment and standard streams unchanged.
pub struct Supervised {
    child: Child,
    term: Signal,
    int: Signal,
}

/// What ended the wait.
pub enum Event {
    /// The upstream process exited by itself.
    Exited(ExitStatus),
    /// We got this signal; it has been passed on to the upstream process.
    Forwarded(i32),
}

impl Supervised {
    pub fn spawn(path: &Path, args: &[OsString]) -> Result<Supervised, SuperviseError> {
        // Signal handlers first: a SIGTERM between spawn and install would otherwise end us
        // and orphan the child.
        let term = signal(SignalKind::terminate()).map_err(SuperviseError::Signals)?;
        let int = signal(SignalKind::interrupt()).map_err(SuperviseError::Signals)?;
        let child = Command::new(path)
            .args(args)
            .stdin(Stdio::null())
            .spawn()
            .map_err(|source| SuperviseError::Spawn {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Supervised { child, term, int })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Waits until the child exits or we get SIGTERM/SIGINT (which is then forwarded).
    pub async fn next(&mut self) -> Result<Event, SuperviseError> {
        let sig = tokio::select! {
            status = self.child.wait() => return status.map(Event::Exited).map_err(SuperviseError::Wait),
            _ = self.term.recv() => libc::SIGTERM,
            _ = self.int.recv() => libc::SIGINT,
        };
        self.send(sig);
        Ok(Event::Forwarded(sig))
    }

    /// Sends `sig` to the child if it still runs.
    pub fn send(&self, sig: i32) {
        if let Some(pid) = self.child.id().and_then(|p| i32::try_from(p).ok()) {
            // SAFETY: kill(2) on our own, not yet reaped child: the pid cannot name another process.
            unsafe {
                libc::kill(pid, sig);
            }
        }
    }

    /// Waits for the child to exit, forwarding every further signal.
    pub async fn wait(&mut self) -> Result<ExitStatus, SuperviseError> {
        loop {
            if let Event::Exited(status) = self.next().await? {
                return Ok(status);
            }
        }
    }
}
