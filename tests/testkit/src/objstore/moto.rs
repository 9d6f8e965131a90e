//! moto's S3 server.

use std::path::Path;
use std::process::Command;

use super::{http, join_key, start_on_free_port, walk};
use crate::deps::require;
use crate::error::{Error, Result};
use crate::process::ManagedProcess;

/// The credentials moto accepts (it accepts any).
pub const MOTO_ACCESS_KEY: &str = "testing";
pub const MOTO_SECRET_KEY: &str = "testing";

/// Percent-encodes a key for a URL path (keeps `/`).
fn encode_path(key: &str) -> String {
    let mut s = String::new();
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

/// moto's S3 server (`.deps/venv/bin/moto_server`).
pub struct MotoServer {
    proc: ManagedProcess,
    port: u16,
    _dir: tempfile::TempDir,
}

impl MotoServer {
    /// Starts moto; `Ok(None)` means the dependency is missing and the test should return
    /// (the SKIP line is already printed, or the test panicked if it is required).
    pub fn start() -> Result<Option<MotoServer>> {
        let Some(bin) = require("moto", "venv/bin/moto_server") else {
            return Ok(None);
        };
        let dir = tempfile::tempdir().map_err(|e| Error::io("create temp dir", "/tmp", e))?;
        let (proc, port) = start_on_free_port("moto_server", dir.path(), "/", |port| {
            let mut cmd = Command::new(&bin);
            cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
            Ok(cmd)
        })?;
        Ok(Some(MotoServer {
            proc,
            port,
            _dir: dir,
        }))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn request(&self, method: &str, path: &str, body: &[u8]) -> Result<Vec<u8>> {
        let (status, resp) =
            http(self.port, method, path, body).map_err(|e| Error::io("moto request", path, e))?;
        if !(200..300).contains(&status) {
            return Err(Error::Command {
                cmd: format!("{method} {path} (moto)"),
                status: status.to_string(),
                stderr: String::from_utf8_lossy(&resp).into_owned(),
            });
        }
        Ok(resp)
    }

    pub fn create_bucket(&self, bucket: &str) -> Result<()> {
        self.request("PUT", &format!("/{bucket}"), b"").map(|_| ())
    }

    pub fn put_object(&self, bucket: &str, key: &str, data: &[u8]) -> Result<()> {
        self.request("PUT", &format!("/{bucket}/{}", encode_path(key)), data)
            .map(|_| ())
    }

    /// An object's bytes (moto serves unsigned requests).
    pub fn get_object(&self, bucket: &str, key: &str) -> Result<Vec<u8>> {
        self.request("GET", &format!("/{bucket}/{}", encode_path(key)), b"")
    }

    /// Every key below `prefix` (one ListObjectsV2 page of up to 1000 keys is plenty here).
    pub fn list_keys(&self, bucket: &str, prefix: &str) -> Result<Vec<String>> {
        let body = self.request(
            "GET",
            &format!("/{bucket}?list-type=2&prefix={}", encode_path(prefix)),
            b"",
        )?;
        let text = String::from_utf8_lossy(&body);
        let mut keys = Vec::new();
        for part in text.split("<Key>").skip(1) {
            if let Some((k, _)) = part.split_once("</Key>") {
                keys.push(
                    k.replace("&amp;", "&")
                        .replace("&lt;", "<")
                        .replace("&gt;", ">")
                        .replace("&quot;", "\"")
                        .replace("&apos;", "'"),
                );
            }
        }
        keys.sort();
        Ok(keys)
    }

    /// Uploads every file below `dir` as `<prefix>/<relative path>`; returns the count.
    pub fn upload_dir(&self, bucket: &str, prefix: &str, dir: &Path) -> Result<usize> {
        let files = walk(dir)?;
        for (rel, path) in &files {
            let data = std::fs::read(path).map_err(|e| Error::io("read", path, e))?;
            self.put_object(bucket, &join_key(prefix, rel), &data)?;
        }
        Ok(files.len())
    }

    /// Stops the server now (also done on drop).
    pub fn stop(mut self) -> Result<()> {
        self.proc.stop().map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(encode_path("p/a b+c"), "p/a%20b%2Bc");
    }
}
