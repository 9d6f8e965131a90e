//! `etcdserverpb.KV` over one kept connection: `Range` and a compare-free `Txn`, the calls
//! etcd-backup-restore's delta replay makes through `clientv3` (`pkg/snapshot/restorer`
//! `applyEventsToEtcd`). The benches' embedded-etcd baseline replays through it, so one
//! connection serves thousands of calls instead of one connection per call.

use std::time::Duration;

use tonic::client::Grpc;
use tonic::transport::Channel;

use super::proto::{RangeRequest, RangeResponse, RequestOp, TxnRequest, TxnResponse};
use super::{CallError, Client, ClientError, unary};

/// Responses may carry many large values (a `Range` page of MiB-sized values).
const MAX_RESPONSE_BYTES: usize = 256 << 20;

/// A KV connection to the first endpoint of a [`Client`] that answered.
pub struct Kv {
    grpc: Grpc<Channel>,
    endpoint: String,
    token: Option<String>,
}

impl Client {
    /// Connects to the first endpoint that answers; `timeout` bounds each later call.
    pub async fn kv(&self, timeout: Duration) -> Result<Kv, ClientError> {
        let mut last = String::new();
        for ep in self.endpoints() {
            match self.connect(ep, timeout).await {
                Ok((channel, token)) => {
                    let grpc = Grpc::new(channel)
                        .max_decoding_message_size(MAX_RESPONSE_BYTES)
                        .max_encoding_message_size(MAX_RESPONSE_BYTES);
                    return Ok(Kv {
                        grpc,
                        endpoint: ep.clone(),
                        token,
                    });
                }
                Err(CallError::Transport(e)) => last = format!("{ep}: {e}"),
                Err(CallError::Status(status)) => {
                    return Err(ClientError::Rpc {
                        method: "/etcdserverpb.Auth/Authenticate",
                        endpoint: ep.clone(),
                        status,
                    });
                }
            }
        }
        Err(ClientError::Unreachable {
            method: "/etcdserverpb.KV",
            tried: self.endpoints().join(","),
            last,
        })
    }
}

impl Kv {
    pub async fn range(&self, req: RangeRequest) -> Result<RangeResponse, ClientError> {
        self.call("/etcdserverpb.KV/Range", req).await
    }

    /// A txn with no compares and `ops` as its `then` branch.
    pub async fn txn(&self, ops: Vec<RequestOp>) -> Result<TxnResponse, ClientError> {
        self.call("/etcdserverpb.KV/Txn", TxnRequest { success: ops })
            .await
    }

    async fn call<Req, Resp>(&self, method: &'static str, req: Req) -> Result<Resp, ClientError>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        unary(self.grpc.clone(), method, req, self.token.clone())
            .await
            .map_err(|e| match e {
                CallError::Status(status) => ClientError::Rpc {
                    method,
                    endpoint: self.endpoint.clone(),
                    status,
                },
                CallError::Transport(last) => ClientError::Unreachable {
                    method,
                    tried: self.endpoint.clone(),
                    last,
                },
            })
    }
}
