//! Hand-written prost messages for the parts of etcd's protobuf schema that live in WAL
//! segments and `.snap` files (walpb, raftpb, snappb, etcdserverpb.Metadata).
//!
//! etcd generates its Go code with gogoproto. Fields marked `(gogoproto.nullable) = false`
//! are plain Go values that are always written, even when zero; prost's `required` label
//! does the same, so our bytes equal Go's. `bytes` fields are Go slices: written when
//! non-nil, hence `Option<Vec<u8>>`. Repeated uint64 fields are proto2 and therefore
//! unpacked (`packed = "false"`); prost decodes both forms, as gogoproto does.
//! Field numbers: raft/raftpb/raft.proto, server/wal/walpb/record.proto,
//! server/etcdserver/api/snap/snappb/snap.proto, api/etcdserverpb/etcdserver.proto
//! (etcd v3.4.23 / v3.5.1 / release-3.6; identical for these messages).

use prost::Message;

/// `walpb.Record`: one WAL frame payload.
#[derive(Clone, PartialEq, Message)]
pub struct Record {
    #[prost(int64, required, tag = "1")]
    pub r#type: i64,
    #[prost(uint32, required, tag = "2")]
    pub crc: u32,
    #[prost(bytes = "vec", optional, tag = "3")]
    pub data: Option<Vec<u8>>,
}

/// `walpb.Snapshot`: a snapshot marker in the WAL. `conf_state` is written since 3.5
/// (3.4 writers leave it out; 3.4 readers skip it as an unknown field).
#[derive(Clone, PartialEq, Eq, Message)]
pub struct WalSnapshot {
    #[prost(uint64, required, tag = "1")]
    pub index: u64,
    #[prost(uint64, required, tag = "2")]
    pub term: u64,
    #[prost(message, optional, tag = "3")]
    pub conf_state: Option<ConfState>,
}

/// `raftpb.EntryType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum EntryType {
    EntryNormal = 0,
    EntryConfChange = 1,
    EntryConfChangeV2 = 2,
}

/// `raftpb.Entry`.
#[derive(Clone, PartialEq, Message)]
pub struct Entry {
    #[prost(enumeration = "EntryType", required, tag = "1")]
    pub r#type: i32,
    #[prost(uint64, required, tag = "2")]
    pub term: u64,
    #[prost(uint64, required, tag = "3")]
    pub index: u64,
    #[prost(bytes = "vec", optional, tag = "4")]
    pub data: Option<Vec<u8>>,
}

/// `raftpb.HardState`.
#[derive(Clone, Copy, PartialEq, Eq, Message)]
pub struct HardState {
    #[prost(uint64, required, tag = "1")]
    pub term: u64,
    #[prost(uint64, required, tag = "2")]
    pub vote: u64,
    #[prost(uint64, required, tag = "3")]
    pub commit: u64,
}

impl HardState {
    /// raft's `IsEmptyHardState`: etcd does not write an all-zero state record.
    pub fn is_empty(&self) -> bool {
        self.term == 0 && self.vote == 0 && self.commit == 0
    }
}

/// `raftpb.ConfState`.
#[derive(Clone, PartialEq, Eq, Message)]
pub struct ConfState {
    #[prost(uint64, repeated, packed = "false", tag = "1")]
    pub voters: Vec<u64>,
    #[prost(uint64, repeated, packed = "false", tag = "2")]
    pub learners: Vec<u64>,
    #[prost(uint64, repeated, packed = "false", tag = "3")]
    pub voters_outgoing: Vec<u64>,
    #[prost(uint64, repeated, packed = "false", tag = "4")]
    pub learners_next: Vec<u64>,
    #[prost(bool, required, tag = "5")]
    pub auto_leave: bool,
}

/// `raftpb.ConfChangeType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ConfChangeType {
    ConfChangeAddNode = 0,
    ConfChangeRemoveNode = 1,
    ConfChangeUpdateNode = 2,
    ConfChangeAddLearnerNode = 3,
}

/// `raftpb.ConfChange` (the payload of an `EntryConfChange` entry).
#[derive(Clone, PartialEq, Message)]
pub struct ConfChange {
    #[prost(uint64, required, tag = "1")]
    pub id: u64,
    #[prost(enumeration = "ConfChangeType", required, tag = "2")]
    pub r#type: i32,
    #[prost(uint64, required, tag = "3")]
    pub node_id: u64,
    #[prost(bytes = "vec", optional, tag = "4")]
    pub context: Option<Vec<u8>>,
}

/// `raftpb.SnapshotMetadata`.
#[derive(Clone, PartialEq, Eq, Message)]
pub struct SnapshotMetadata {
    #[prost(message, required, tag = "1")]
    pub conf_state: ConfState,
    #[prost(uint64, required, tag = "2")]
    pub index: u64,
    #[prost(uint64, required, tag = "3")]
    pub term: u64,
}

/// `raftpb.Snapshot`: what a `.snap` file carries (v2 store JSON + metadata).
#[derive(Clone, PartialEq, Message)]
pub struct Snapshot {
    #[prost(bytes = "vec", optional, tag = "1")]
    pub data: Option<Vec<u8>>,
    #[prost(message, required, tag = "2")]
    pub metadata: SnapshotMetadata,
}

/// `snappb.snapshot`: the `.snap` file envelope; `crc` is CRC-32C of `data`.
#[derive(Clone, PartialEq, Message)]
pub struct SnapFile {
    #[prost(uint32, required, tag = "1")]
    pub crc: u32,
    #[prost(bytes = "vec", optional, tag = "2")]
    pub data: Option<Vec<u8>>,
}

/// `etcdserverpb.Metadata`: the WAL metadata record (local member and cluster).
#[derive(Clone, Copy, PartialEq, Eq, Message)]
pub struct Metadata {
    #[prost(uint64, required, tag = "1")]
    pub node_id: u64,
    #[prost(uint64, required, tag = "2")]
    pub cluster_id: u64,
}

/// The fields of a `raftpb.Entry` without copying its data: `(type, term, index,
/// data length)`. Validates the whole message like a full decode would.
pub fn entry_header(mut buf: &[u8]) -> Result<(i32, u64, u64, Option<usize>), String> {
    use prost::encoding::{DecodeContext, WireType, decode_key, decode_varint, skip_field};
    let (mut t, mut term, mut index, mut data) = (0i32, 0u64, 0u64, None);
    while !buf.is_empty() {
        let (tag, wt) = decode_key(&mut buf).map_err(|e| e.to_string())?;
        match (tag, wt) {
            (1, WireType::Varint) => t = decode_varint(&mut buf).map_err(|e| e.to_string())? as i32,
            (2, WireType::Varint) => term = decode_varint(&mut buf).map_err(|e| e.to_string())?,
            (3, WireType::Varint) => index = decode_varint(&mut buf).map_err(|e| e.to_string())?,
            (4, WireType::LengthDelimited) => {
                let len = usize::try_from(decode_varint(&mut buf).map_err(|e| e.to_string())?)
                    .ok()
                    .filter(|l| *l <= buf.len())
                    .ok_or_else(|| "buffer underflow".to_string())?;
                buf = buf.get(len..).unwrap_or_default();
                data = Some(len);
            }
            (1..=4, _) => return Err("wrong wire type".to_string()),
            _ => skip_field(wt, tag, &mut buf, DecodeContext::default())
                .map_err(|e| e.to_string())?,
        }
    }
    Ok((t, term, index, data))
}
