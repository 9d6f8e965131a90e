//! A minimal etcd v3 gRPC client: the cluster-membership, status and probe calls that
//! etcd-backup-restore's member bootstrap makes through `clientv3` (`pkg/member/
//! member_control.go`, `pkg/miscellaneous/miscellaneous.go`), over tonic with hand-written
//! prost messages ([`proto`]).
//!
//! Connections follow `pkg/etcdutil/etcdutil.go` `GetTLSClientForEtcd`: endpoints are tried in
//! order (clientv3 balances over them; any member forwards membership changes to the leader,
//! so the first that answers is as good), `https://` endpoints use `--cacert` and the client
//! certificate `--cert`/`--key` that druid mounts, `http://` ones plain HTTP/2.

mod kv;
pub mod proto;

use std::path::{Path, PathBuf};
use std::time::Duration;

use tonic::client::Grpc;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic_prost::ProstCodec;

pub use kv::Kv;
pub use proto::{Member, StatusResponse};

/// etcd-backup-restore's `member.EtcdTimeout`: connecting, probing and adding a learner.
pub const ETCD_TIMEOUT: Duration = Duration::from_secs(5);
/// etcd-backup-restore's `DefaultEtcdConnectionTimeout`: listing, removing, promoting.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// PEM files for TLS to etcd (etcdbrctl's `--cacert`, `--cert`, `--key`).
#[derive(Clone, Debug, Default)]
pub struct TlsFiles {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// How to reach etcd (etcdbrctl's `EtcdConnectionConfig`).
#[derive(Clone, Debug)]
pub struct Connection {
    pub endpoints: Vec<String>,
    pub tls: TlsFiles,
    /// `--insecure-transport`: endpoints without a scheme use plain HTTP/2.
    pub insecure_transport: bool,
    /// `--etcd-username` / `--etcd-password`.
    pub auth: Option<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("reading {what} {}: {source}", path.display())]
    TlsFile {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(String),
    #[error("no etcd endpoint answered {method} (tried {tried}): {last}")]
    Unreachable {
        method: &'static str,
        tried: String,
        last: String,
    },
    #[error("{method} on {endpoint}: {} ({:?})", status.message(), status.code())]
    Rpc {
        method: &'static str,
        endpoint: String,
        status: tonic::Status,
    },
}

impl ClientError {
    /// etcd's error text (`rpctypes`), when etcd answered.
    pub fn etcd_message(&self) -> Option<&str> {
        match self {
            ClientError::Rpc { status, .. } => Some(status.message()),
            _ => None,
        }
    }

    fn is(&self, desc: &str) -> bool {
        self.etcd_message() == Some(desc)
    }

    /// `ErrGRPCMemberExist` or `ErrGRPCPeerURLExist`.
    pub fn is_member_exists(&self) -> bool {
        self.is("etcdserver: member ID already exist")
            || self.is("etcdserver: Peer URLs already exists")
    }

    /// `ErrGRPCTooManyLearners`.
    pub fn is_too_many_learners(&self) -> bool {
        self.is("etcdserver: too many learner members in cluster")
    }

    /// `ErrGRPCMemberNotLearner`: promoting a voting member.
    pub fn is_not_learner(&self) -> bool {
        self.is("etcdserver: can only promote a learner member")
    }

    /// `ErrGRPCLearnerNotReady`: the learner has not caught up with the leader yet.
    pub fn is_learner_not_ready(&self) -> bool {
        self.is("etcdserver: can only promote a learner member which is in sync with leader")
    }

    /// `ErrGRPCMemberNotFound`.
    pub fn is_member_not_found(&self) -> bool {
        self.is("etcdserver: member not found")
    }
}

/// Loaded PEM material, so every call does not reread the files.
#[derive(Clone)]
struct Pem {
    ca: Option<Vec<u8>>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
}

/// A client over a list of endpoints.
#[derive(Clone)]
pub struct Client {
    endpoints: Vec<String>,
    pem: Pem,
    insecure_transport: bool,
    auth: Option<(String, String)>,
}

fn read_pem(what: &'static str, path: &Path) -> Result<Vec<u8>, ClientError> {
    std::fs::read(path).map_err(|source| ClientError::TlsFile {
        what,
        path: path.to_path_buf(),
        source,
    })
}

impl Client {
    pub fn new(conn: &Connection) -> Result<Client, ClientError> {
        if conn.endpoints.is_empty() {
            return Err(ClientError::Config(
                "no etcd endpoints (--endpoints / --service-endpoints)".into(),
            ));
        }
        let ca = conn
            .tls
            .ca
            .as_deref()
            .map(|p| read_pem("--cacert", p))
            .transpose()?;
        let identity = match (&conn.tls.cert, &conn.tls.key) {
            (Some(c), Some(k)) => Some((read_pem("--cert", c)?, read_pem("--key", k)?)),
            (None, None) => None,
            _ => {
                return Err(ClientError::Config(
                    "--cert and --key go together (the client certificate druid mounts under /var/etcd/ssl/client)".into(),
                ));
            }
        };
        Ok(Client {
            endpoints: conn.endpoints.clone(),
            pem: Pem { ca, identity },
            insecure_transport: conn.insecure_transport,
            auth: conn.auth.clone(),
        })
    }

    /// The same credentials over other endpoints.
    pub fn with_endpoints(&self, endpoints: Vec<String>) -> Client {
        Client {
            endpoints,
            ..self.clone()
        }
    }

    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    fn endpoint(&self, ep: &str) -> Result<Endpoint, String> {
        let url = if ep.contains("://") {
            ep.to_string()
        } else if self.insecure_transport && self.pem.ca.is_none() {
            format!("http://{ep}")
        } else {
            format!("https://{ep}")
        };
        let mut e = Endpoint::from_shared(url.clone())
            .map_err(|e| format!("{url:?} is not an endpoint URL: {e}"))?
            .connect_timeout(ETCD_TIMEOUT);
        if url.starts_with("https://") {
            let Some(ca) = &self.pem.ca else {
                return Err(format!(
                    "{url}: an https endpoint needs --cacert (server certificates are always verified)"
                ));
            };
            let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
            if let Some((cert, key)) = &self.pem.identity {
                tls = tls.identity(Identity::from_pem(cert, key));
            }
            e = e
                .tls_config(tls)
                .map_err(|e| format!("{url}: TLS configuration: {e}"))?;
        }
        Ok(e)
    }

    /// Sends one unary call to the first endpoint that answers; moves on to the next when an
    /// endpoint cannot be reached or says it is unavailable (stopped, no leader, timeout).
    async fn call<Req, Resp>(
        &self,
        method: &'static str,
        req: Req,
        timeout: Duration,
    ) -> Result<Resp, ClientError>
    where
        Req: prost::Message + Clone + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let mut last = String::new();
        for ep in &self.endpoints {
            match self.call_one(ep, method, req.clone(), timeout).await {
                Ok(r) => return Ok(r),
                Err(CallError::Transport(e)) => last = format!("{ep}: {e}"),
                Err(CallError::Status(s))
                    if matches!(
                        s.code(),
                        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded
                    ) =>
                {
                    last = format!("{ep}: {} ({:?})", s.message(), s.code());
                }
                Err(CallError::Status(status)) => {
                    return Err(ClientError::Rpc {
                        method,
                        endpoint: ep.clone(),
                        status,
                    });
                }
            }
            tracing::debug!(endpoint = %ep, method, error = %last, "etcd endpoint did not answer");
        }
        Err(ClientError::Unreachable {
            method,
            tried: self.endpoints.join(","),
            last,
        })
    }

    async fn call_one<Req, Resp>(
        &self,
        ep: &str,
        method: &'static str,
        req: Req,
        timeout: Duration,
    ) -> Result<Resp, CallError>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let (channel, token) = self.connect(ep, timeout).await?;
        unary(Grpc::new(channel), method, req, token).await
    }

    /// A channel to `ep` and, with `--etcd-username`, the auth token for it.
    async fn connect(
        &self,
        ep: &str,
        timeout: Duration,
    ) -> Result<(Channel, Option<String>), CallError> {
        let endpoint = self.endpoint(ep).map_err(CallError::Transport)?;
        let channel = endpoint
            .timeout(timeout)
            .connect()
            .await
            .map_err(|e| CallError::Transport(transport_chain(&e)))?;
        let token = match &self.auth {
            None => None,
            Some((name, password)) => {
                let r: proto::AuthenticateResponse = unary(
                    Grpc::new(channel.clone()),
                    "/etcdserverpb.Auth/Authenticate",
                    proto::AuthenticateRequest {
                        name: name.clone(),
                        password: password.clone(),
                    },
                    None,
                )
                .await?;
                Some(r.token)
            }
        };
        Ok((channel, token))
    }

    /// `MemberList` (linearizable, as clientv3's default).
    pub async fn member_list(&self, timeout: Duration) -> Result<Vec<Member>, ClientError> {
        let r: proto::MemberListResponse = self
            .call(
                "/etcdserverpb.Cluster/MemberList",
                proto::MemberListRequest { linearizable: true },
                timeout,
            )
            .await?;
        Ok(r.members)
    }

    /// `MemberAddAsLearner`: returns the new member (no name until it starts).
    pub async fn member_add_learner(&self, peer_urls: &[String]) -> Result<Member, ClientError> {
        let r: proto::MemberAddResponse = self
            .call(
                "/etcdserverpb.Cluster/MemberAdd",
                proto::MemberAddRequest {
                    peer_urls: peer_urls.to_vec(),
                    is_learner: true,
                },
                ETCD_TIMEOUT,
            )
            .await?;
        r.member.ok_or_else(|| {
            ClientError::Config("MemberAdd answered without the added member".into())
        })
    }

    pub async fn member_remove(&self, id: u64) -> Result<(), ClientError> {
        let _: proto::MembersResponse = self
            .call(
                "/etcdserverpb.Cluster/MemberRemove",
                proto::MemberIdRequest { id },
                CONNECTION_TIMEOUT,
            )
            .await?;
        Ok(())
    }

    pub async fn member_promote(&self, id: u64) -> Result<(), ClientError> {
        let _: proto::MembersResponse = self
            .call(
                "/etcdserverpb.Cluster/MemberPromote",
                proto::MemberIdRequest { id },
                CONNECTION_TIMEOUT,
            )
            .await?;
        Ok(())
    }

    /// `Maintenance.Status` of the first endpoint that answers.
    pub async fn status(&self, timeout: Duration) -> Result<StatusResponse, ClientError> {
        self.call(
            "/etcdserverpb.Maintenance/Status",
            proto::StatusRequest {},
            timeout,
        )
        .await
    }

    /// etcdbrctl's `ProbeEtcd`: a linearizable `Get("foo")`, which only succeeds when the
    /// cluster has a quorum.
    pub async fn probe(&self) -> Result<(), ClientError> {
        let _: proto::RangeResponse = self
            .call(
                "/etcdserverpb.KV/Range",
                proto::RangeRequest {
                    key: b"foo".to_vec(),
                    ..Default::default()
                },
                ETCD_TIMEOUT,
            )
            .await?;
        Ok(())
    }
}

enum CallError {
    Transport(String),
    Status(tonic::Status),
}

impl From<tonic::Status> for CallError {
    fn from(s: tonic::Status) -> Self {
        CallError::Status(s)
    }
}

/// The error and its causes on one line (tonic's top-level message is just "transport error").
fn transport_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

async fn unary<Req, Resp>(
    mut grpc: Grpc<Channel>,
    method: &'static str,
    req: Req,
    token: Option<String>,
) -> Result<Resp, CallError>
where
    Req: prost::Message + Send + Sync + 'static,
    Resp: prost::Message + Default + Send + Sync + 'static,
{
    grpc.ready()
        .await
        .map_err(|e| CallError::Transport(e.to_string()))?;
    let mut request = tonic::Request::new(req);
    if let Some(t) = token {
        let v = t
            .parse()
            .map_err(|_| CallError::Transport("etcd returned an unusable auth token".into()))?;
        request.metadata_mut().insert("token", v);
    }
    let codec: ProstCodec<Req, Resp> = ProstCodec::default();
    let resp = grpc
        .unary(request, PathAndQuery::from_static(method), codec)
        .await?;
    Ok(resp.into_inner())
}
