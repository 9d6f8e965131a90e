//! Azurite's Blob server.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::start_on_free_port;
use crate::deps::require;
use crate::error::{Error, Result};
use crate::process::ManagedProcess;

/// Azurite's well-known development account (public, documented by Microsoft).
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Azurite's Blob server (`.deps/node/node_modules/.bin/azurite-blob`).
pub struct AzuriteServer {
    proc: ManagedProcess,
    port: u16,
    python: PathBuf,
    _dir: tempfile::TempDir,
}

const AZURE_UPLOAD_PY: &str = r#"
import os, sys
from azure.storage.blob import BlobServiceClient
port, container, prefix, root = sys.argv[1:5]
conn = ("DefaultEndpointsProtocol=http;AccountName=%s;AccountKey=%s;BlobEndpoint=http://127.0.0.1:%s/%s;"
        % (sys.argv[5], sys.argv[6], port, sys.argv[5]))
svc = BlobServiceClient.from_connection_string(conn)
c = svc.get_container_client(container)
if not c.exists():
    c.create_container()
n = 0
if root:
    for dirpath, _, files in os.walk(root):
        for f in sorted(files):
            p = os.path.join(dirpath, f)
            rel = os.path.relpath(p, root).replace(os.sep, "/")
            key = (prefix.strip("/") + "/" + rel) if prefix.strip("/") else rel
            with open(p, "rb") as fh:
                c.upload_blob(key, fh, overwrite=True)
            n += 1
print(n)
"#;

impl AzuriteServer {
    /// Starts Azurite; `Ok(None)` means the dependency is missing (see [`MotoServer::start`]).
    pub fn start() -> Result<Option<AzuriteServer>> {
        let Some(bin) = require("azurite", "node/node_modules/.bin/azurite-blob") else {
            return Ok(None);
        };
        let Some(python) = require("azurite", "venv/bin/python") else {
            return Ok(None);
        };
        let dir = tempfile::tempdir().map_err(|e| Error::io("create temp dir", "/tmp", e))?;
        let (proc, port) = start_on_free_port(
            "azurite-blob",
            dir.path(),
            &format!("/{AZURITE_ACCOUNT}?comp=list"),
            |port| {
                let data = dir.path().join(format!("data-{port}"));
                std::fs::create_dir_all(&data).map_err(|e| Error::io("create dir", &data, e))?;
                let mut cmd = Command::new(&bin);
                cmd.arg("--blobHost")
                    .arg("127.0.0.1")
                    .arg("--blobPort")
                    .arg(port.to_string())
                    .arg("-l")
                    .arg(&data)
                    .arg("--skipApiVersionCheck");
                Ok(cmd)
            },
        )?;
        Ok(Some(AzuriteServer {
            proc,
            port,
            python,
            _dir: dir,
        }))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// The blob service URL of the dev account: `http://127.0.0.1:<port>/devstoreaccount1`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{AZURITE_ACCOUNT}", self.port)
    }

    fn run_python(&self, container: &str, prefix: &str, root: Option<&Path>) -> Result<usize> {
        let root_arg = root.map(|p| p.display().to_string()).unwrap_or_default();
        let out = Command::new(&self.python)
            .arg("-c")
            .arg(AZURE_UPLOAD_PY)
            .arg(self.port.to_string())
            .arg(container)
            .arg(prefix)
            .arg(&root_arg)
            .arg(AZURITE_ACCOUNT)
            .arg(AZURITE_KEY)
            .output()
            .map_err(|e| Error::io("run", &self.python, e))?;
        if !out.status.success() {
            return Err(Error::Command {
                cmd: format!("python azure upload to {container}"),
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .map_err(|e| Error::parse("azure upload count", e))
    }

    /// Creates a container (no error if it exists).
    pub fn create_container(&self, container: &str) -> Result<()> {
        self.run_python(container, "", None).map(|_| ())
    }

    /// Creates the container if needed and uploads every file below `dir` as
    /// `<prefix>/<relative path>`; returns the count.
    pub fn upload_dir(&self, container: &str, prefix: &str, dir: &Path) -> Result<usize> {
        self.run_python(container, prefix, Some(dir))
    }

    pub fn stop(mut self) -> Result<()> {
        self.proc.stop().map(|_| ())
    }
}
