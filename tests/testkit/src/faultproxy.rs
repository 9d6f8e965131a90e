//! A loopback HTTP/1.1 proxy that injects object-store faults in front of a real server
//! (moto, Azurite): 500 InternalError, 503 SlowDown (throttling), connection resets before an
//! answer, and truncated response bodies, each request hit with probability `rate`, drawn from
//! a seeded generator.
//!
//! ```ignore
//! let proxy = FaultProxy::start(moto.port(), FaultPlan { rate: 0.2, seed: 7, ..FaultPlan::default() })?;
//! // point the client at proxy.endpoint(); afterwards proxy.stats()
//! ```
//!
//! Every request's head and body hash are kept ([`FaultProxy::requests`]): with `rate: 0.0`
//! the proxy is a recorder of what a client sent.
//!
//! Requests are forwarded on a fresh upstream connection each (`Connection: close`), the
//! answer is read whole and sent back with an exact `Content-Length`, so the client may keep
//! its connection alive. Only headers are touched, never what a signature covers.

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::tree::Rng;

/// Which faults, how often.
#[derive(Clone, Debug)]
pub struct FaultPlan {
    /// Probability that a request gets a fault (0.0..=1.0).
    pub rate: f64,
    pub seed: u64,
    pub server_errors: bool,
    pub throttling: bool,
    pub resets: bool,
    pub truncated_bodies: bool,
    /// Writes (every method but GET and HEAD) forwarded, then the connection closed without
    /// the answer: the server acted, the client cannot know. Off by default.
    pub lost_answers: bool,
}

impl Default for FaultPlan {
    fn default() -> Self {
        FaultPlan {
            rate: 0.2,
            seed: 1,
            server_errors: true,
            throttling: true,
            resets: true,
            truncated_bodies: true,
            lost_answers: false,
        }
    }
}

/// What the proxy did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultStats {
    pub requests: u64,
    pub forwarded: u64,
    pub server_errors: u64,
    pub throttled: u64,
    pub resets: u64,
    pub truncated: u64,
    pub lost: u64,
}

impl FaultStats {
    pub fn faults(&self) -> u64 {
        self.server_errors + self.throttled + self.resets + self.truncated + self.lost
    }
}

/// One request as the client sent it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    /// Path and query, as on the request line.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body_len: usize,
    pub body_sha256: [u8; 32],
}

impl RecordedRequest {
    /// A header's value (names compare case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The lower-case names the SigV4 `Authorization` header says it signed.
    pub fn signed_headers(&self) -> Vec<String> {
        self.header("authorization")
            .and_then(|a| a.split("SignedHeaders=").nth(1))
            .map(|r| r.split(',').next().unwrap_or(""))
            .map(|h| h.split(';').map(str::to_string).collect())
            .unwrap_or_default()
    }
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    forwarded: AtomicU64,
    server_errors: AtomicU64,
    throttled: AtomicU64,
    resets: AtomicU64,
    truncated: AtomicU64,
    lost: AtomicU64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    None,
    ServerError,
    Throttle,
    Reset,
    Truncate,
    Lost,
}

struct Shared {
    upstream: u16,
    plan: FaultPlan,
    rng: Mutex<Rng>,
    counters: Counters,
    log: Mutex<Vec<RecordedRequest>>,
    stop: AtomicBool,
}

impl Shared {
    fn pick(&self, method: &str) -> Fault {
        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        if !rng.chance(self.plan.rate) {
            return Fault::None;
        }
        let mut kinds = Vec::new();
        if self.plan.server_errors {
            kinds.push(Fault::ServerError);
        }
        if self.plan.throttling {
            kinds.push(Fault::Throttle);
        }
        if self.plan.resets {
            kinds.push(Fault::Reset);
        }
        // Only a body that is read can be cut short.
        if self.plan.truncated_bodies && method == "GET" {
            kinds.push(Fault::Truncate);
        }
        if self.plan.lost_answers && method != "GET" && method != "HEAD" {
            kinds.push(Fault::Lost);
        }
        if kinds.is_empty() {
            return Fault::None;
        }
        let i = rng.below(kinds.len() as u64) as usize;
        kinds.get(i).copied().unwrap_or(Fault::None)
    }
}

/// The running proxy; stops (and joins its accept thread) on drop.
pub struct FaultProxy {
    port: u16,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl FaultProxy {
    pub fn start(upstream_port: u16, plan: FaultPlan) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind(("127.0.0.1", 0))?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared {
            upstream: upstream_port,
            rng: Mutex::new(Rng::new(plan.seed)),
            plan,
            counters: Counters::default(),
            log: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        let accept = std::thread::spawn(move || {
            while !s.stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let s = s.clone();
                        std::thread::spawn(move || {
                            let _ = serve(conn, &s);
                        });
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Ok(FaultProxy {
            port,
            shared,
            accept: Some(accept),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared
            .log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn stats(&self) -> FaultStats {
        let c = &self.shared.counters;
        FaultStats {
            requests: c.requests.load(Ordering::Relaxed),
            forwarded: c.forwarded.load(Ordering::Relaxed),
            server_errors: c.server_errors.load(Ordering::Relaxed),
            throttled: c.throttled.load(Ordering::Relaxed),
            resets: c.resets.load(Ordering::Relaxed),
            truncated: c.truncated.load(Ordering::Relaxed),
            lost: c.lost.load(Ordering::Relaxed),
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

/// One parsed message head: the first line and the headers.
struct Head {
    first: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn read_head(r: &mut impl BufRead) -> std::io::Result<Option<Head>> {
    let mut first = String::new();
    if r.read_line(&mut first)? == 0 {
        return Ok(None);
    }
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    Ok(Some(Head {
        first: first.trim_end_matches(['\r', '\n']).to_string(),
        headers,
    }))
}

/// A message body as sent (`Content-Length` or chunked), decoded.
fn read_body(r: &mut impl BufRead, head: &Head, to_eof: bool) -> std::io::Result<Vec<u8>> {
    let chunked = head
        .get("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        let mut out = Vec::new();
        loop {
            let mut line = String::new();
            r.read_line(&mut line)?;
            let size_hex = line.trim().split(';').next().unwrap_or("0");
            let n = usize::from_str_radix(size_hex, 16).map_err(std::io::Error::other)?;
            if n == 0 {
                // Trailers until an empty line.
                loop {
                    let mut t = String::new();
                    if r.read_line(&mut t)? == 0 || t.trim().is_empty() {
                        break;
                    }
                }
                return Ok(out);
            }
            let mut buf = vec![0u8; n];
            r.read_exact(&mut buf)?;
            out.extend_from_slice(&buf);
            let mut crlf = [0u8; 2];
            r.read_exact(&mut crlf)?;
        }
    }
    if let Some(n) = head
        .get("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        let mut buf = vec![0u8; n];
        r.read_exact(&mut buf)?;
        return Ok(buf);
    }
    let mut buf = Vec::new();
    if to_eof {
        r.read_to_end(&mut buf)?;
    }
    Ok(buf)
}

const HOP_BY_HOP: [&str; 4] = [
    "connection",
    "keep-alive",
    "transfer-encoding",
    "proxy-connection",
];

fn serve(client: TcpStream, s: &Shared) -> std::io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut reader = BufReader::new(client.try_clone()?);
    let mut writer = client;
    loop {
        let Some(req) = read_head(&mut reader)? else {
            return Ok(());
        };
        let body = read_body(&mut reader, &req, false)?;
        s.counters.requests.fetch_add(1, Ordering::Relaxed);
        let method = req.first.split(' ').next().unwrap_or("").to_string();
        s.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(RecordedRequest {
                method: method.clone(),
                target: req.first.split(' ').nth(1).unwrap_or("").to_string(),
                headers: req.headers.clone(),
                body_len: body.len(),
                body_sha256: crate::kv::sha256(&body),
            });
        let fault = s.pick(&method);
        match fault {
            Fault::Reset => {
                s.counters.resets.fetch_add(1, Ordering::Relaxed);
                // SO_LINGER 0 is not in std; a shutdown without an answer looks the same to
                // the client: the connection ends before a response.
                let _ = writer.shutdown(Shutdown::Both);
                return Ok(());
            }
            Fault::ServerError | Fault::Throttle => {
                let (status, code) = if fault == Fault::ServerError {
                    s.counters.server_errors.fetch_add(1, Ordering::Relaxed);
                    ("500 Internal Server Error", "InternalError")
                } else {
                    s.counters.throttled.fetch_add(1, Ordering::Relaxed);
                    ("503 Slow Down", "SlowDown")
                };
                let xml = format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>injected by faultproxy</Message></Error>"
                );
                write!(
                    writer,
                    "HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\r\n{xml}",
                    xml.len()
                )?;
                writer.flush()?;
                continue;
            }
            Fault::None | Fault::Truncate | Fault::Lost => {}
        }
        let (resp, resp_body) = forward(s.upstream, &req, &body)?;
        s.counters.forwarded.fetch_add(1, Ordering::Relaxed);
        if fault == Fault::Lost {
            s.counters.lost.fetch_add(1, Ordering::Relaxed);
            let _ = writer.shutdown(Shutdown::Both);
            return Ok(());
        }
        let mut out = format!("{}\r\n", resp.first);
        let is_head = method == "HEAD";
        for (k, v) in &resp.headers {
            let lower = k.to_ascii_lowercase();
            if HOP_BY_HOP.contains(&lower.as_str()) || (!is_head && lower == "content-length") {
                continue;
            }
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        if !is_head {
            out.push_str(&format!("Content-Length: {}\r\n", resp_body.len()));
        }
        out.push_str("\r\n");
        writer.write_all(out.as_bytes())?;
        if fault == Fault::Truncate && resp_body.len() > 1 {
            s.counters.truncated.fetch_add(1, Ordering::Relaxed);
            let cut = resp_body.len() / 2;
            writer.write_all(resp_body.get(..cut).unwrap_or_default())?;
            writer.flush()?;
            let _ = writer.shutdown(Shutdown::Both);
            return Ok(());
        }
        if !is_head {
            writer.write_all(&resp_body)?;
        }
        writer.flush()?;
    }
}

fn forward(port: u16, req: &Head, body: &[u8]) -> std::io::Result<(Head, Vec<u8>)> {
    let mut up = TcpStream::connect(("127.0.0.1", port))?;
    up.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut head = format!("{}\r\n", req.first);
    for (k, v) in &req.headers {
        let lower = k.to_ascii_lowercase();
        if HOP_BY_HOP.contains(&lower.as_str()) || lower == "content-length" {
            continue;
        }
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    up.write_all(head.as_bytes())?;
    up.write_all(body)?;
    up.flush()?;
    let mut r = BufReader::new(up);
    let resp = read_head(&mut r)?.ok_or_else(|| std::io::Error::other("upstream closed"))?;
    let is_head = req.first.starts_with("HEAD ");
    let status_no_body = resp
        .first
        .split(' ')
        .nth(1)
        .is_some_and(|c| c == "204" || c == "304" || c.starts_with('1'));
    let body = if is_head || status_no_body {
        Vec::new()
    } else {
        read_body(&mut r, &resp, true)?
    };
    Ok((resp, body))
}
