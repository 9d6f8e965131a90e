//! Real object-store servers for tests: moto (S3), Azurite (Azure Blob) and fake-gcs-server
//! (GCS), each on a free 127.0.0.1 port, registered in the PID registry and stopped by PID when
//! the guard drops.
//!
//! ```ignore
//! let Some(moto) = MotoServer::start().unwrap() else { return }; // SKIP per docs/testing.md
//! moto.create_bucket("b").unwrap();
//! moto.upload_dir("b", "prefix", &local_dir).unwrap();
//! // s3://b/prefix with endpoint moto.endpoint(), any access key
//! ```

mod azurite;
mod fake_gcs;
mod http;
mod moto;

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::deps::require;
use crate::error::{Error, Result};
use crate::ports::free_port;
use crate::process::ManagedProcess;

pub use azurite::{AZURITE_ACCOUNT, AZURITE_KEY, AzuriteServer};
pub use fake_gcs::FakeGcsServer;
pub(crate) use http::{http, wait_http};
pub use moto::{MOTO_ACCESS_KEY, MOTO_SECRET_KEY, MotoServer};

/// Starts a server on a free port, retrying on another port (up to three) when it exits or does
/// not answer `ready_path`: a port can be taken between choosing it and binding it.
fn start_on_free_port(
    name: &str,
    dir: &Path,
    ready_path: &str,
    mut command: impl FnMut(u16) -> Result<Command>,
) -> Result<(ManagedProcess, u16)> {
    let mut last = None;
    for _ in 0..3 {
        let port = free_port();
        let cmd = command(port)?;
        let log = dir.join(format!("{name}-{port}.log"));
        let mut proc = ManagedProcess::spawn(cmd, &format!("{name} 127.0.0.1:{port}"), &log)?;
        match wait_http(&mut proc, port, ready_path) {
            Ok(()) => return Ok((proc, port)),
            Err(e) => {
                proc.stop()?;
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or_else(|| Error::parse(name, "did not start")))
}

/// Every file below `root`, as (path relative to root with '/' separators, absolute path).
fn walk(root: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let rd = std::fs::read_dir(&dir).map_err(|e| Error::io("read dir", &dir, e))?;
        for entry in rd {
            let entry = entry.map_err(|e| Error::io("read dir", &dir, e))?;
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(rel) = p.strip_prefix(root) {
                let rel = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/");
                out.push((rel, p));
            }
        }
    }
    out.sort();
    Ok(out)
}

fn join_key(prefix: &str, rel: &str) -> String {
    let prefix = prefix.trim_matches('/');
    if prefix.is_empty() {
        rel.to_string()
    } else {
        format!("{prefix}/{rel}")
    }
}

/// Runs a Python script with the test venv (boto3 and azure-storage-blob, installed with
/// moto and Azurite) to build a scenario the servers' own SDKs describe best (versions,
/// tags, delete markers); returns its stdout.
pub fn python(script: &str, args: &[&str]) -> Result<String> {
    let Some(py) = require("moto", "venv/bin/python") else {
        return Err(Error::Command {
            cmd: "python".into(),
            status: "missing".into(),
            stderr: "the test venv is not installed".into(),
        });
    };
    let out = Command::new(&py)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .map_err(|e| Error::io("run", &py, e))?;
    if !out.status.success() {
        return Err(Error::Command {
            cmd: "python scenario script".into(),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert_eq!(join_key("", "v2/a"), "v2/a");
        assert_eq!(join_key("/p/q/", "v2/a"), "p/q/v2/a");
    }
}
