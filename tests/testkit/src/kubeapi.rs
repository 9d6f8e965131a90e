//! A stand-in for the Kubernetes API server's `coordination.k8s.io/v1` Lease endpoints, over
//! HTTPS (its own CA-less self-signed certificate for 127.0.0.1 and localhost, as a cluster's
//! `ca.crt` would be) or plain HTTP, on a free 127.0.0.1 port. No real API server can run here;
//! this one answers as kube-apiserver does for what a Lease client sends and checks every
//! request against the Lease schema (`k8s.io/api/coordination/v1` `Lease`, `LeaseSpec`,
//! `metav1.MicroTime`):
//!
//! * `Authorization: Bearer <token>` or 401;
//! * `GET .../namespaces/{ns}/leases/{name}`: the object (apiVersion, kind, metadata with a
//!   string `resourceVersion`, spec) or a 404 `Status`;
//! * `PATCH` with `application/merge-patch+json` (RFC 7386) or `PUT` of a whole Lease: a
//!   `metadata.resourceVersion` that is not the current one is a 409 Conflict `Status`; spec
//!   fields must have their types (`holderIdentity` string, `leaseDurationSeconds` and
//!   `leaseTransitions` int32, `acquireTime`/`renewTime` MicroTime `YYYY-MM-DDTHH:MM:SS.ffffffZ`);
//!   an unknown field or a wrong type is a 400 and a recorded violation; a successful write
//!   stores the object with a new `resourceVersion`.
//!
//! Every request is recorded ([`KubeApi::requests`]); [`KubeApi::violations`] lists what a
//! real API server would have refused or what the Lease schema does not allow.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use serde_json::{Value, json};

/// One request as it arrived, and the status it got.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub content_type: Option<String>,
    pub authorization: Option<String>,
    pub body: Option<Value>,
    pub status: u16,
}

#[derive(Default)]
struct State {
    leases: BTreeMap<(String, String), Value>,
    next_rv: u64,
    requests: Vec<Request>,
    violations: Vec<String>,
    /// After this many more GETs of a lease, another writer changes it before the caller
    /// writes (each such GET is followed by a foreign update).
    interfere: u32,
}

pub struct KubeApi {
    pub addr: SocketAddr,
    pub token: String,
    cert_pem: Option<String>,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

const PREFIX: &str = "/apis/coordination.k8s.io/v1/namespaces/";

impl KubeApi {
    /// HTTPS with a fresh self-signed certificate (write it as `ca.crt` with
    /// [`KubeApi::write_service_account`]).
    pub fn https() -> KubeApi {
        let key = rcgen::KeyPair::generate().expect("key");
        let params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
                .expect("params");
        let cert = params.self_signed(&key).expect("certificate");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocols")
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .expect("server config");
        Self::start(Some(Arc::new(config)), Some(cert.pem()))
    }

    /// Plain HTTP (for the test-only API URL override).
    pub fn http() -> KubeApi {
        Self::start(None, None)
    }

    fn start(tls: Option<Arc<rustls::ServerConfig>>, cert_pem: Option<String>) -> KubeApi {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local addr");
        let token = format!("token-{}", std::process::id());
        let state = Arc::new(Mutex::new(State {
            next_rv: 1000,
            ..State::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, stp, tok) = (Arc::clone(&state), Arc::clone(&stop), token.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stp.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (st, tok, tls) = (Arc::clone(&st), tok.clone(), tls.clone());
                std::thread::spawn(move || {
                    let _ = match tls {
                        Some(cfg) => {
                            let Ok(server) = rustls::ServerConnection::new(cfg) else {
                                return;
                            };
                            serve_conn(rustls::StreamOwned::new(server, conn), &st, &tok)
                        }
                        None => serve_conn(conn, &st, &tok),
                    };
                });
            }
        });
        KubeApi {
            addr,
            token,
            cert_pem,
            state,
            stop,
            thread: Some(thread),
        }
    }

    /// `https://127.0.0.1:<port>` or `http://...`.
    pub fn url(&self) -> String {
        let scheme = if self.cert_pem.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    /// Writes `token` and (HTTPS) `ca.crt` into `dir`, as the kubelet mounts them.
    pub fn write_service_account(&self, dir: &Path) {
        std::fs::create_dir_all(dir).expect("service-account dir");
        std::fs::write(dir.join("token"), format!("{}\n", self.token)).expect("token");
        if let Some(pem) = &self.cert_pem {
            std::fs::write(dir.join("ca.crt"), pem).expect("ca.crt");
        }
    }

    /// Creates a Lease the way druid does (labels, owner, no spec fields but the holder).
    pub fn create_lease(&self, namespace: &str, name: &str, holder: Option<&str>) {
        let mut st = self.state.lock().unwrap();
        st.next_rv += 1;
        let mut spec = json!({});
        if let Some(h) = holder {
            spec["holderIdentity"] = json!(h);
        }
        let lease = json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "uid": format!("00000000-0000-0000-0000-{:012}", st.next_rv),
                "resourceVersion": st.next_rv.to_string(),
                "creationTimestamp": "2026-01-01T00:00:00Z",
                "labels": {"app.kubernetes.io/component": "etcd-snapshot-lease"},
                "ownerReferences": [{"apiVersion": "druid.gardener.cloud/v1alpha1", "kind": "Etcd", "name": "etcd-main", "uid": "1", "controller": true, "blockOwnerDeletion": true}]
            },
            "spec": spec
        });
        st.leases.insert((namespace.into(), name.into()), lease);
    }

    pub fn lease(&self, namespace: &str, name: &str) -> Option<Value> {
        let st = self.state.lock().unwrap();
        st.leases.get(&(namespace.into(), name.into())).cloned()
    }

    /// The next `n` GETs of a lease are each followed by another writer's update, so the
    /// caller's write that follows conflicts.
    pub fn interfere(&self, n: u32) {
        self.state.lock().unwrap().interfere = n;
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state.lock().unwrap().requests.clone()
    }

    pub fn violations(&self) -> Vec<String> {
        self.state.lock().unwrap().violations.clone()
    }
}

impl Drop for KubeApi {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve_conn<S: Read + Write>(
    stream: S,
    state: &Mutex<State>,
    token: &str,
) -> std::io::Result<()> {
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Ok(());
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    let chunked = headers.contains_key("transfer-encoding");
    let (status, answer) = {
        let mut st = state.lock().unwrap();
        let (status, answer, parsed) = if chunked {
            st.violations.push(format!(
                "{method} {path}: chunked body (send Content-Length)"
            ));
            (411, status_obj(411, "LengthRequired", "chunked body"), None)
        } else {
            handle(&mut st, &method, &path, &headers, &body, token)
        };
        st.requests.push(Request {
            method: method.clone(),
            path: path.clone(),
            content_type: headers.get("content-type").cloned(),
            authorization: headers.get("authorization").cloned(),
            body: parsed,
            status,
        });
        (status, answer)
    };
    let text = answer.to_string();
    let mut out = r.into_inner();
    write!(
        out,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    )?;
    out.flush()
}

fn status_obj(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

/// The answer, and the request body if it was JSON.
fn handle(
    st: &mut State,
    method: &str,
    path: &str,
    headers: &BTreeMap<String, String>,
    body: &[u8],
    token: &str,
) -> (u16, Value, Option<Value>) {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    if headers.get("authorization").map(String::as_str) != Some(&format!("Bearer {token}")) {
        st.violations
            .push(format!("{method} {path}: no or wrong bearer token"));
        return (401, status_obj(401, "Unauthorized", "Unauthorized"), parsed);
    }
    let Some((ns, name)) = path
        .strip_prefix(PREFIX)
        .and_then(|r| r.split_once("/leases/"))
        .filter(|(ns, n)| !ns.is_empty() && !n.is_empty() && !n.contains(['/', '?']))
    else {
        st.violations
            .push(format!("{method} {path}: not a Lease object path"));
        return (
            404,
            status_obj(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ),
            parsed,
        );
    };
    let key = (ns.to_string(), name.to_string());
    let not_found = || {
        status_obj(
            404,
            "NotFound",
            &format!("leases.coordination.k8s.io {name:?} not found"),
        )
    };
    let Some(current) = st.leases.get(&key).cloned() else {
        return (404, not_found(), parsed);
    };
    if method == "GET" {
        if st.interfere > 0 {
            st.interfere -= 1;
            let mut changed = current.clone();
            changed["spec"]["renewTime"] = json!("2026-01-01T00:00:01.000000Z");
            store(st, &key, changed);
        }
        return (200, current, parsed);
    }
    let bad = |st: &mut State, msg: String| {
        st.violations.push(format!("{method} {path}: {msg}"));
        (400, status_obj(400, "BadRequest", &msg), parsed.clone())
    };
    let Some(Value::Object(req)) = &parsed else {
        return bad(st, "the body is not a JSON object".into());
    };
    let ct = headers
        .get("content-type")
        .map(String::as_str)
        .unwrap_or("");
    let next = match method {
        "PATCH" if ct == "application/merge-patch+json" => {
            if let Err(e) = check_fields(req, false) {
                return bad(st, e);
            }
            let mut next = current.clone();
            merge(&mut next, &Value::Object(req.clone()));
            next
        }
        "PATCH" => {
            st.violations.push(format!(
                "{method} {path}: content type {ct:?} (expected application/merge-patch+json)"
            ));
            return (415, status_obj(415, "UnsupportedMediaType", ct), parsed);
        }
        "PUT" if ct.starts_with("application/json") => {
            if let Err(e) = check_fields(req, true) {
                return bad(st, e);
            }
            Value::Object(req.clone())
        }
        _ => {
            st.violations.push(format!(
                "{method} {path}: method not used by a Lease client"
            ));
            return (405, status_obj(405, "MethodNotAllowed", method), parsed);
        }
    };
    let sent_rv = req
        .get("metadata")
        .and_then(|m| m.get("resourceVersion"))
        .cloned();
    match sent_rv {
        Some(Value::String(rv))
            if Some(rv.as_str()) != current["metadata"]["resourceVersion"].as_str() =>
        {
            return (
                409,
                status_obj(
                    409,
                    "Conflict",
                    &format!(
                        "Operation cannot be fulfilled on leases.coordination.k8s.io {name:?}: the object has been modified; please apply your changes to the latest version and try again"
                    ),
                ),
                parsed,
            );
        }
        Some(Value::String(_)) | None => {}
        Some(other) => {
            return bad(
                st,
                format!("metadata.resourceVersion {other} is not a string"),
            );
        }
    }
    if next["metadata"]["name"] != current["metadata"]["name"] {
        return bad(st, "metadata.name differs from the path".into());
    }
    let stored = store(st, &key, next);
    (200, stored, parsed)
}

fn store(st: &mut State, key: &(String, String), mut lease: Value) -> Value {
    st.next_rv += 1;
    lease["metadata"]["resourceVersion"] = json!(st.next_rv.to_string());
    // A merge patch's nulls delete; the API server omits empty optional fields.
    if let Some(spec) = lease["spec"].as_object_mut() {
        spec.retain(|_, v| !v.is_null());
    }
    st.leases.insert(key.clone(), lease.clone());
    lease
}

/// RFC 7386 JSON merge patch.
fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    let t = target.as_object_mut().unwrap();
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            merge(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

/// The Lease schema for what a client sends; `whole`: a PUT must carry apiVersion, kind and
/// metadata.name.
fn check_fields(req: &serde_json::Map<String, Value>, whole: bool) -> Result<(), String> {
    for (k, v) in req {
        match k.as_str() {
            "apiVersion" if v == "coordination.k8s.io/v1" => {}
            "kind" if v == "Lease" => {}
            "apiVersion" | "kind" => {
                return Err(format!("{k} {v} is not coordination.k8s.io/v1 Lease"));
            }
            "metadata" => {
                let Value::Object(m) = v else {
                    return Err("metadata is not an object".into());
                };
                for (mk, mv) in m {
                    match (mk.as_str(), mv) {
                        (
                            "resourceVersion" | "name" | "namespace" | "uid" | "creationTimestamp",
                            Value::String(_),
                        ) => {}
                        ("labels" | "annotations", Value::Object(o))
                            if o.values().all(|x| x.is_string() || x.is_null()) => {}
                        ("ownerReferences" | "managedFields", Value::Array(_)) => {}
                        _ => return Err(format!("metadata.{mk}: {mv} is not allowed here")),
                    }
                }
            }
            "spec" => {
                let Value::Object(s) = v else {
                    return Err("spec is not an object".into());
                };
                for (sk, sv) in s {
                    let ok = match sk.as_str() {
                        _ if sv.is_null() => true,
                        "holderIdentity" | "strategy" | "preferredHolder" => sv.is_string(),
                        "leaseDurationSeconds" | "leaseTransitions" => {
                            sv.as_i64().is_some_and(|n| i32::try_from(n).is_ok())
                        }
                        "acquireTime" | "renewTime" => sv.as_str().is_some_and(is_micro_time),
                        _ => return Err(format!("spec.{sk}: unknown field of LeaseSpec")),
                    };
                    if !ok {
                        return Err(format!("spec.{sk}: {sv} does not have the LeaseSpec type"));
                    }
                }
            }
            "status" => return Err("a Lease has no status".into()),
            _ => return Err(format!("{k}: unknown field of Lease")),
        }
    }
    if whole {
        for f in ["apiVersion", "kind"] {
            if !req.contains_key(f) {
                return Err(format!("a PUT body needs {f}"));
            }
        }
        if req.get("metadata").and_then(|m| m.get("name")).is_none() {
            return Err("a PUT body needs metadata.name".into());
        }
    }
    Ok(())
}

/// `metav1.MicroTime` as the API server writes it: RFC 3339, UTC `Z`, six fractional digits.
pub fn is_micro_time(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    b.len() == 27
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && b[19] == b'.'
        && digits(20..26)
        && b[26] == b'Z'
}
