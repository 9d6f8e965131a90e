//! The little HTTP/1.1 the servers' helpers speak to them (and `pushgateway`), and the wait for
//! a server's first answer.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::process::ManagedProcess;

/// How long a server gets to answer its first request.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies() {
        assert_eq!(
            dechunk(b"3\r\nabc\r\n2;x\r\nde\r\n0\r\n\r\n").unwrap(),
            b"abcde"
        );
        assert!(dechunk(b"3\r\nab").is_err());
    }
}
