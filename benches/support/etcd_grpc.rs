//! A minimal etcd v3 gRPC client for the restore_e2e bench only: `KV/Txn` (the baseline's
//! replay, as etcdbrctl does it through clientv3) and `KV/Range` (to read the data back for
//! the correctness check). Messages are hand-written prost structs carrying just the fields
//! used, with etcd 3.5's field numbers (api/etcdserverpb/rpc.proto, api/mvccpb/kv.proto);
//! prost skips the fields of the responses we do not declare.

#![allow(dead_code)]

use tonic::client::Grpc;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic_prost::ProstCodec;

#[derive(Clone, PartialEq, prost::Message)]
pub struct ResponseHeader {
    #[prost(uint64, tag = "1")]
    pub cluster_id: u64,
    #[prost(uint64, tag = "2")]
    pub member_id: u64,
    #[prost(int64, tag = "3")]
    pub revision: i64,
    #[prost(uint64, tag = "4")]
    pub raft_term: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PutRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
    #[prost(int64, tag = "3")]
    pub lease: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct DeleteRangeRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub range_end: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RangeRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub range_end: Vec<u8>,
    #[prost(int64, tag = "3")]
    pub limit: i64,
    #[prost(int64, tag = "4")]
    pub revision: i64,
    #[prost(bool, tag = "9")]
    pub count_only: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyValue {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(int64, tag = "2")]
    pub create_revision: i64,
    #[prost(int64, tag = "3")]
    pub mod_revision: i64,
    #[prost(int64, tag = "4")]
    pub version: i64,
    #[prost(bytes = "vec", tag = "5")]
    pub value: Vec<u8>,
    #[prost(int64, tag = "6")]
    pub lease: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RangeResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
    #[prost(message, repeated, tag = "2")]
    pub kvs: Vec<KeyValue>,
    #[prost(bool, tag = "3")]
    pub more: bool,
    #[prost(int64, tag = "4")]
    pub count: i64,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Request {
    #[prost(message, tag = "2")]
    Put(PutRequest),
    #[prost(message, tag = "3")]
    DeleteRange(DeleteRangeRequest),
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RequestOp {
    #[prost(oneof = "Request", tags = "2, 3")]
    pub request: Option<Request>,
}

impl RequestOp {
    /// A put without lease: etcdbrctl's `clientv3.OpPut(key, value)`.
    pub fn put(key: &[u8], value: &[u8]) -> RequestOp {
        RequestOp {
            request: Some(Request::Put(PutRequest {
                key: key.to_vec(),
                value: value.to_vec(),
                lease: 0,
            })),
        }
    }

    /// A single-key delete: etcdbrctl's `clientv3.OpDelete(key)`.
    pub fn delete(key: &[u8]) -> RequestOp {
        RequestOp {
            request: Some(Request::DeleteRange(DeleteRangeRequest {
                key: key.to_vec(),
                range_end: Vec::new(),
            })),
        }
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TxnRequest {
    #[prost(message, repeated, tag = "2")]
    pub success: Vec<RequestOp>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TxnResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
    #[prost(bool, tag = "2")]
    pub succeeded: bool,
}

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// `etcdserverpb.KV` over one HTTP/2 connection.
pub struct KvClient {
    grpc: Grpc<Channel>,
}

impl KvClient {
    pub async fn connect(endpoint: &str) -> Result<KvClient, BoxError> {
        let channel = Channel::from_shared(endpoint.to_string())?
            .connect()
            .await?;
        let grpc = Grpc::new(channel)
            .max_decoding_message_size(256 << 20)
            .max_encoding_message_size(256 << 20);
        Ok(KvClient { grpc })
    }

    /// A txn with no compares and `ops` as its `then` branch.
    pub async fn txn(&mut self, ops: Vec<RequestOp>) -> Result<TxnResponse, tonic::Status> {
        self.call("/etcdserverpb.KV/Txn", TxnRequest { success: ops })
            .await
    }

    pub async fn range(&mut self, req: RangeRequest) -> Result<RangeResponse, tonic::Status> {
        self.call("/etcdserverpb.KV/Range", req).await
    }

    async fn call<Req, Resp>(&mut self, path: &'static str, req: Req) -> Result<Resp, tonic::Status>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        self.grpc
            .ready()
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let codec: ProstCodec<Req, Resp> = ProstCodec::default();
        let resp = self
            .grpc
            .unary(
                tonic::Request::new(req),
                PathAndQuery::from_static(path),
                codec,
            )
            .await?;
        Ok(resp.into_inner())
    }
}
