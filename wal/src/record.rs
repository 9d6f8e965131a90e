//! The WAL frame: an 8-byte little-endian length word, a `walpb.Record`, zero padding to
//! the next 8-byte boundary. See docs/wal.md §Frame.

use prost::encoding::{DecodeContext, WireType, decode_key, decode_varint, skip_field};

/// Bytes of the length word that starts every frame.
pub const FRAME_HEADER_LEN: u64 = 8;

/// Records at or above this size (minus padding) are refused by etcd 3.4.x and
/// 3.5.0–3.5.4 (`ErrMaxWALEntrySizeLimitExceeded`, never repaired).
pub const LEGACY_MAX_RECORD_LEN: u64 = 10 * 1024 * 1024;

const LEN_MASK: u64 = 0x00FF_FFFF_FFFF_FFFF;

/// `walpb.Record.type` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecordType {
    Metadata = 1,
    Entry = 2,
    State = 3,
    Crc = 4,
    Snapshot = 5,
}

impl RecordType {
    pub fn from_i64(v: i64) -> Option<Self> {
        Some(match v {
            1 => RecordType::Metadata,
            2 => RecordType::Entry,
            3 => RecordType::State,
            4 => RecordType::Crc,
            5 => RecordType::Snapshot,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            RecordType::Metadata => "metadata",
            RecordType::Entry => "entry",
            RecordType::State => "state",
            RecordType::Crc => "crc",
            RecordType::Snapshot => "snapshot",
        }
    }
}

/// Zero bytes that follow a record of `rec_len` bytes.
pub fn pad_len(rec_len: u64) -> u64 {
    (8 - rec_len % 8) % 8
}

/// Length word for a record of `rec_len` bytes: low 56 bits length, top byte
/// `0x80 | pad` when there is padding (etcd's `encodeFrameSize`).
pub fn encode_length_word(rec_len: u64) -> u64 {
    let pad = pad_len(rec_len);
    let mut word = rec_len & LEN_MASK;
    if pad != 0 {
        word |= (0x80 | pad) << 56;
    }
    word
}

/// `(rec_len, pad)` from a length word (etcd's `decodeFrameSize`: the pad count is only
/// honoured when bit 63 is set).
pub fn decode_length_word(word: u64) -> (u64, u64) {
    let rec_len = word & LEN_MASK;
    let pad = if word >> 63 == 1 { (word >> 56) & 7 } else { 0 };
    (rec_len, pad)
}

/// Appends one frame to `out`. The caller computes `crc` (the running CRC-32C).
pub fn encode_frame(out: &mut Vec<u8>, rec_type: i64, crc: u32, data: Option<&[u8]>) {
    // Hand-encoded to avoid copying `data` into a prost `Record`; the bytes are those of
    // `proto::Record` (fields in tag order, type and crc always present).
    let mut body_len = 1 + varint_len(rec_type as u64) + 1 + varint_len(u64::from(crc));
    if let Some(d) = data {
        body_len += 1 + varint_len(d.len() as u64) + d.len();
    }
    let word = encode_length_word(body_len as u64);
    let pad = pad_len(body_len as u64) as usize;
    out.reserve(8 + body_len + pad);
    out.extend_from_slice(&word.to_le_bytes());
    out.push(0x08);
    put_varint(out, rec_type as u64);
    out.push(0x10);
    put_varint(out, u64::from(crc));
    if let Some(d) = data {
        out.push(0x1a);
        put_varint(out, d.len() as u64);
        out.extend_from_slice(d);
    }
    out.resize(out.len() + pad, 0);
}

/// Total frame size (header + record + padding) of a record of `rec_len` bytes.
pub fn frame_len(rec_len: u64) -> u64 {
    FRAME_HEADER_LEN + rec_len + pad_len(rec_len)
}

fn varint_len(v: u64) -> usize {
    prost::encoding::encoded_len_varint(v)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A `walpb.Record` borrowed from a segment buffer (no copy of `data`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordRef<'a> {
    pub rec_type: i64,
    pub crc: u32,
    pub data: Option<&'a [u8]>,
}

impl<'a> RecordRef<'a> {
    /// Bytes covered by the rolling CRC (absent data counts as empty).
    pub fn data_or_empty(&self) -> &'a [u8] {
        self.data.unwrap_or_default()
    }
}

/// Parses a `walpb.Record` the way gogoproto's `Unmarshal` does: any field order, the
/// last occurrence wins, unknown fields skipped, wrong wire types rejected.
pub fn parse_record(mut buf: &[u8]) -> Result<RecordRef<'_>, String> {
    let mut rec = RecordRef {
        rec_type: 0,
        crc: 0,
        data: None,
    };
    while !buf.is_empty() {
        let (tag, wt) = decode_key(&mut buf).map_err(|e| e.to_string())?;
        match (tag, wt) {
            (1, WireType::Varint) => {
                rec.rec_type = decode_varint(&mut buf).map_err(|e| e.to_string())? as i64
            }
            (2, WireType::Varint) => {
                rec.crc = decode_varint(&mut buf).map_err(|e| e.to_string())? as u32
            }
            (3, WireType::LengthDelimited) => {
                let len = decode_varint(&mut buf).map_err(|e| e.to_string())?;
                let len = usize::try_from(len)
                    .ok()
                    .filter(|l| *l <= buf.len())
                    .ok_or_else(|| "buffer underflow".to_string())?;
                let (d, rest) = buf.split_at(len);
                rec.data = Some(d);
                buf = rest;
            }
            (1..=3, _) => return Err("wrong wire type".to_string()),
            _ => skip_field(wt, tag, &mut buf, DecodeContext::default())
                .map_err(|e| e.to_string())?,
        }
    }
    Ok(rec)
}
