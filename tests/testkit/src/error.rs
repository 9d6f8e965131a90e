//! The one error type of testkit: every variant names what was being done, so a failing test
//! says which process, file or command went wrong.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{cmd}` exited with {status}: {stderr}")]
    Command {
        cmd: String,
        status: String,
        stderr: String,
    },
    #[error("timed out after {secs} s waiting for {what}{log}")]
    Timeout {
        what: String,
        secs: u64,
        /// Tail of the server's log, when there is one.
        log: String,
    },
    #[error("{what} exited early with {status}{log}")]
    Exited {
        what: String,
        status: String,
        log: String,
    },
    #[error("cannot parse {what}: {msg}")]
    Parse { what: String, msg: String },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            what,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn parse(what: impl Into<String>, msg: impl ToString) -> Self {
        Error::Parse {
            what: what.into(),
            msg: msg.to_string(),
        }
    }
}
