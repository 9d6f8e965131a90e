//! `etcd-restore serve` driven the way etcd-wrapper drives etcdbrctl's server
//! (`internal/brclient/brclient.go`, `internal/bootstrap/bootstrap.go`): poll
//! `/initialization/status`, on `New` pick the mode from the `exit_code` file and call
//! `/initialization/start?mode=...`, until `Successful`; then `GET /config` (≤ 5 tries).

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::ports::free_port;
use crate::process::ManagedProcess;

/// One answer: status code, lower-cased headers, body.
pub struct Answer {
    pub code: u16,
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

/// A minimal HTTP/1.1 GET over loopback (one connection per request, as Go's client does
/// with keep-alive off); bodies are always sized by Content-Length here.
pub fn get(addr: SocketAddr, path: &str) -> std::io::Result<Answer> {
    request(addr, "GET", path)
}

/// [`get`] with any method (no request body, as druid's snapshot triggers send none).
pub fn request(addr: SocketAddr, method: &str, path: &str) -> std::io::Result<Answer> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    // One write, as Go's client sends a request: `write!` on the socket would send each
    // piece of the format as its own segment.
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("no header end in {text:?}")))?;
    let mut lines = head.lines();
    let status = lines.next().unwrap_or_default();
    let code = status
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {status:?}")))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(Answer {
        code,
        headers,
        body: body.to_string(),
    })
}

/// How to tell the server is up.
#[derive(Clone, Copy)]
pub enum Ready {
    Healthz,
    /// TLS: the port accepts connections.
    Connect,
}

/// A running `etcd-restore serve` on a free port, stopped by PID (SIGTERM) when dropped.
pub struct Serve {
    pub proc: ManagedProcess,
    pub addr: SocketAddr,
}

impl Serve {
    /// `bin -v serve --listen <free port> ARGS` with only `env` of the pod variables set.
    pub fn spawn(
        bin: &str,
        args: &[String],
        env: &[(&str, &str)],
        log: &Path,
        ready: Ready,
    ) -> Serve {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut cmd = Command::new(bin);
        cmd.arg("-v")
            .arg("serve")
            .arg("--listen")
            .arg(addr.to_string())
            .args(args);
        for k in ["POD_NAME", "POD_NAMESPACE", "ETCD_CONF"] {
            cmd.env_remove(k);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let proc =
            ManagedProcess::spawn(cmd, &format!("etcd-restore serve on {addr}"), log).unwrap();
        let mut s = Serve { proc, addr };
        let t0 = Instant::now();
        let up = |addr| match ready {
            Ready::Healthz => get(addr, "/healthz").is_ok(),
            Ready::Connect => TcpStream::connect(addr).is_ok(),
        };
        while !up(addr) {
            if let Some(st) = s.proc.try_exited() {
                panic!("serve exited: {st}: {}", s.proc.log_tail(4096));
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "serve not answering: {}",
                s.proc.log_tail(4096)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        s
    }

    pub fn get(&self, path: &str) -> Answer {
        get(self.addr, path).unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    pub fn log(&self) -> String {
        self.proc.log_tail(8192)
    }

    /// etcd-wrapper's initialization loop, polling every 5 ms instead of 1 s. Returns the
    /// statuses seen; stops at `Successful`, or at the first `Failed` (the wrapper would
    /// restart initialization forever).
    pub fn initialize(&self, exit_code_file: &Path, timeout: Duration) -> Vec<String> {
        let mut seen: Vec<String> = Vec::new();
        let t0 = Instant::now();
        loop {
            assert!(
                t0.elapsed() < timeout,
                "initialization did not end; seen {seen:?}; log:\n{}",
                self.log()
            );
            let a = self.get("/initialization/status");
            assert_eq!(a.code, 200, "{}", a.body);
            if seen.last() != Some(&a.body) {
                seen.push(a.body.clone());
            }
            match a.body.as_str() {
                "New" => {
                    let mode = wrapper_mode(exit_code_file);
                    let a = self.get(&format!("/initialization/start?mode={mode}"));
                    assert_eq!(a.code, 200);
                    assert_eq!(a.body, "");
                }
                "Successful" | "Failed" => return seen,
                "Progress" => {}
                other => panic!("unexpected status {other:?}"),
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// etcd-wrapper after `Successful`: `GET /config`, at most 5 tries.
    pub fn config(&self) -> String {
        for _ in 0..5 {
            let a = self.get("/config");
            if a.code == 200 {
                return a.body;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("/config never answered 200: {}", self.log())
    }
}

/// etcd-wrapper's `determineValidationMode`.
pub fn wrapper_mode(exit_code_file: &Path) -> &'static str {
    match std::fs::read_to_string(exit_code_file) {
        Ok(s) if matches!(s.trim(), "terminated" | "interrupt") => "sanity",
        _ => "full",
    }
}

/// The sum of the `/metrics` series starting with `line_prefix` (0 when there is none).
pub fn metric(text: &str, line_prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(line_prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
