//! The little of the Kubernetes API that `compact` needs: client-go's in-cluster configuration
//! (`k8s.io/client-go/rest` `InClusterConfig`, what etcdbrctl's controller-runtime client uses
//! inside druid's compaction Job) and authenticated JSON requests. The one object written is the
//! full-snapshot Lease ([`lease`]).

pub mod lease;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::snapstore::config::EnvLookup;

/// Where the kubelet mounts the pod's service-account token and the cluster CA.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error(
        "not running in a Kubernetes pod: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must both be set (client-go's in-cluster configuration); without lease renewal, pass --enable-snapshot-lease-renewal=false"
    )]
    NotInCluster,
    #[error("reading the service-account token {}: {source}", path.display())]
    Token {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("building the Kubernetes API client: {0}")]
    Client(String),
    #[error("{method} {url}: {detail}")]
    Transport {
        method: &'static str,
        url: String,
        detail: String,
    },
    #[error("{method} {url}: HTTP {status}: {message}")]
    Status {
        method: &'static str,
        url: String,
        status: u16,
        message: String,
    },
    #[error("{url}: the answer is not a {what}: {detail}")]
    Decode {
        url: String,
        what: &'static str,
        detail: String,
    },
    #[error("lease {namespace}/{name}: {detail}")]
    Lease {
        namespace: String,
        name: String,
        detail: String,
    },
    #[error(
        "$POD_NAMESPACE is not set: it names the namespace of the snapshot leases (druid sets it from the pod's metadata.namespace)"
    )]
    NoNamespace,
    #[error("updating lease {namespace}/{name} took longer than {seconds} s")]
    Timeout {
        namespace: String,
        name: String,
        seconds: u64,
    },
}

/// Where the API server is and how to authenticate.
#[derive(Clone, Debug)]
pub struct KubeConfig {
    /// `https://host:port` (no trailing slash).
    pub api_url: String,
    /// Read before every request, like client-go's `BearerTokenFile` (the kubelet rotates it).
    pub token_file: PathBuf,
    /// The only CA trusted, if it could be read; otherwise the system roots (client-go logs
    /// the error and goes on the same way).
    pub ca_file: Option<PathBuf>,
}

impl KubeConfig {
    /// client-go's `InClusterConfig`: `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT`,
    /// the token and `ca.crt` from `sa_dir`. `api_url` replaces the host and port (tests, which
    /// also point `sa_dir` at their own files).
    pub fn in_cluster(
        env: EnvLookup<'_>,
        sa_dir: &Path,
        api_url: Option<&str>,
    ) -> Result<Self, KubeError> {
        let api_url = match api_url {
            Some(u) => u.trim_end_matches('/').to_string(),
            None => {
                let var = |n: &str| env(n).filter(|v| !v.is_empty());
                let (Some(host), Some(port)) = (
                    var("KUBERNETES_SERVICE_HOST"),
                    var("KUBERNETES_SERVICE_PORT"),
                ) else {
                    return Err(KubeError::NotInCluster);
                };
                // net.JoinHostPort: an IPv6 address gets brackets.
                if host.contains(':') {
                    format!("https://[{host}]:{port}")
                } else {
                    format!("https://{host}:{port}")
                }
            }
        };
        let token_file = sa_dir.join("token");
        // client-go fails here when the token cannot be read.
        read_token(&token_file)?;
        let ca = sa_dir.join("ca.crt");
        let ca_file = match std::fs::read(&ca)
            .map_err(|e| e.to_string())
            .and_then(|pem| reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| e.to_string()))
        {
            Ok(certs) if !certs.is_empty() => Some(ca),
            Ok(_) => {
                tracing::error!(path = %ca.display(), "no certificate in the cluster CA file; using the system roots");
                None
            }
            Err(e) => {
                tracing::error!(path = %ca.display(), error = %e, "expected to load the cluster CA; using the system roots");
                None
            }
        };
        Ok(KubeConfig {
            api_url,
            token_file,
            ca_file,
        })
    }
}

fn read_token(path: &Path) -> Result<String, KubeError> {
    std::fs::read_to_string(path)
        .map(|t| t.trim().to_string())
        .map_err(|source| KubeError::Token {
            path: path.to_path_buf(),
            source,
        })
}

/// An authenticated JSON client of one API server.
#[derive(Clone, Debug)]
pub struct KubeClient {
    http: reqwest::Client,
    config: KubeConfig,
}

/// Per request; the whole lease update has its own bound.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

impl KubeClient {
    pub fn new(config: KubeConfig) -> Result<Self, KubeError> {
        let mut b = reqwest::Client::builder().timeout(REQUEST_TIMEOUT);
        if let Some(ca) = &config.ca_file {
            let pem = std::fs::read(ca).map_err(|e| KubeError::Client(e.to_string()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| KubeError::Client(format!("{}: {e}", ca.display())))?;
            b = b.tls_certs_only(certs);
        }
        let http = b.build().map_err(|e| KubeError::Client(e.to_string()))?;
        Ok(KubeClient { http, config })
    }

    /// Sends a request to `path` (below the API URL) and returns the status and JSON body;
    /// a non-2xx answer is an error carrying the `Status` object's message.
    async fn request(
        &self,
        method: &'static str,
        path: &str,
        body: Option<(&'static str, Vec<u8>)>,
    ) -> Result<serde_json::Value, KubeError> {
        let url = format!("{}{path}", self.config.api_url);
        let token = read_token(&self.config.token_file)?;
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("a valid method");
        let mut req = self
            .http
            .request(m, &url)
            .bearer_auth(token)
            .header("Accept", "application/json");
        if let Some((content_type, bytes)) = body {
            req = req.header("Content-Type", content_type).body(bytes);
        }
        let transport = |e: reqwest::Error| KubeError::Transport {
            method,
            url: url.clone(),
            detail: error_chain(&e),
        };
        let resp = req.send().await.map_err(transport)?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(transport)?;
        let json: Option<serde_json::Value> = serde_json::from_slice(&bytes).ok();
        if !(200..300).contains(&status) {
            let message = json
                .as_ref()
                .and_then(|j| j.get("message"))
                .and_then(|m| m.as_str())
                .map(str::to_string)
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).trim().to_string());
            return Err(KubeError::Status {
                method,
                url,
                status,
                message,
            });
        }
        json.ok_or_else(|| KubeError::Decode {
            url,
            what: "JSON object",
            detail: String::from_utf8_lossy(&bytes).chars().take(200).collect(),
        })
    }
}

/// reqwest's Display stops at the outermost error; the cause (a certificate, a refused
/// connection) is what the operator needs.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}
