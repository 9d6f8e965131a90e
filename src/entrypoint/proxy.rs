//! The reverse proxy to the upstream `etcdbrctl server` on its internal port: every request
//! etcd-restore does not answer itself goes there with its method, path, query, headers and
//! body, and its answer comes back with status, headers and body, streamed both ways (a
//! `/snapshot/full` may take minutes; nothing is buffered whole).
//!
//! TLS: etcdbrctl binds `:<port>` on every interface (pkg/server/httpAPI.go `RegisterHandler`),
//! so its internal port is reachable from the pod network, and a non-leader sidecar delegates
//! `/snapshot/*` to the leader at `<etcd leader host>:<its own port>` over the etcd
//! endpoint's scheme (`delegateReqToLeader`, pkg/miscellaneous `GetBackupLeaderEndPoint`).
//! The upstream server therefore keeps druid's `--server-cert`/`--server-key`, and this proxy
//! talks TLS to it on 127.0.0.1, accepting exactly the certificate in `--server-cert` (the
//! name in it is the Service's, never 127.0.0.1, so a name check cannot apply).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("reading the certificate {}: {source}", path.display())]
    Cert {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("{} holds no certificate", path.display())]
    NoCert { path: PathBuf },
    #[error("TLS set-up for the upstream server: {0}")]
    Tls(#[from] rustls::Error),
    #[error("building the HTTP client for the upstream server: {0}")]
    Client(#[from] reqwest::Error),
}

/// The upstream server on 127.0.0.1.
#[derive(Clone)]
pub struct Upstream {
    client: reqwest::Client,
    base: String,
}

/// Headers that describe one connection, not the message (RFC 9110 7.6.1), plus `Host`,
/// which names the proxy.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
    )
}

fn end_to_end(from: &HeaderMap) -> HeaderMap {
    from.iter()
        .filter(|(k, _)| !hop_by_hop(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

impl Upstream {
    /// The server at `127.0.0.1:port`; HTTPS pinned to the leaf certificate of `cert` when given.
    pub fn new(port: u16, cert: Option<&Path>) -> Result<Upstream, ProxyError> {
        let builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none());
        let (client, scheme) = match cert {
            None => (builder.build()?, "http"),
            Some(path) => {
                let tls = pinned_tls(path)?;
                (builder.tls_backend_preconfigured(tls).build()?, "https")
            }
        };
        Ok(Upstream {
            client,
            base: format!("{scheme}://127.0.0.1:{port}"),
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Forwards one request and streams the answer back; 502 when the upstream server cannot
    /// be reached (as Go's `httputil.ReverseProxy` answers).
    pub async fn forward(&self, req: Request) -> Response {
        let (parts, body) = req.into_parts();
        let path = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let url = format!("{}{path}", self.base);
        let has_body = parts.headers.contains_key(header::CONTENT_LENGTH)
            || parts.headers.contains_key(header::TRANSFER_ENCODING);
        let mut out = self
            .client
            .request(parts.method.clone(), &url)
            .headers(end_to_end(&parts.headers));
        if has_body {
            out = out.body(reqwest::Body::wrap_stream(body.into_data_stream()));
        }
        match out.send().await {
            Ok(answer) => {
                let mut r = Response::builder().status(answer.status());
                if let Some(h) = r.headers_mut() {
                    *h = end_to_end(answer.headers());
                }
                r.body(Body::from_stream(answer.bytes_stream()))
                    .unwrap_or_else(|e| bad_gateway(&url, &e.to_string()))
            }
            Err(e) => {
                tracing::warn!(%url, error = %e, "upstream etcdbrctl server unreachable");
                bad_gateway(&url, &e.to_string())
            }
        }
    }

    /// The upstream server's `/healthz` answered 200 within five seconds.
    pub async fn healthy(&self) -> bool {
        let url = format!("{}/healthz", self.base);
        match self
            .client
            .get(&url)
            .timeout(Duration::from_secs(5))
            .send()
            .await
        {
            Ok(r) => r.status() == StatusCode::OK,
            Err(e) => {
                tracing::debug!(%url, error = %e, "upstream health probe failed");
                false
            }
        }
    }
}

fn bad_gateway(url: &str, why: &str) -> Response {
    (
        StatusCode::BAD_GATEWAY,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("upstream etcdbrctl server {url}: {why}\n"),
    )
        .into_response()
}

fn pinned_tls(path: &Path) -> Result<rustls::ClientConfig, ProxyError> {
    let leaf = CertificateDer::pem_file_iter(path)
        .and_then(|mut certs| certs.next().transpose())
        .map_err(|source| ProxyError::Cert {
            path: path.to_path_buf(),
            source,
        })?
        .ok_or_else(|| ProxyError::NoCert {
            path: path.to_path_buf(),
        })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = PinnedLeaf {
        leaf,
        provider: Arc::clone(&provider),
    };
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth())
}

/// Accepts one certificate, byte for byte, and checks the handshake signature with its key.
#[derive(Debug)]
struct PinnedLeaf {
    leaf: CertificateDer<'static>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedLeaf {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.leaf.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "the upstream server's certificate is not the one in --server-cert".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
