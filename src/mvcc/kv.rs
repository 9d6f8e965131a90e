//! `mvccpb.KeyValue` and `leasepb.Lease`, the values etcd stores in the `key` and `lease`
//! buckets.
//!
//! Both are proto3 messages: zero values are omitted and fields are written in field-number order,
//! which is what gogoproto's generated marshallers do. They are encoded and decoded by hand here
//! because the apply loop encodes one KeyValue per event and must not allocate per record; the
//! decoder borrows from the input. Upstream: `api/mvccpb/kv.proto`, `server/lease/leasepb/lease.proto`.

/// A borrowed `mvccpb.KeyValue`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyValue<'a> {
    pub key: &'a [u8],
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
    pub value: &'a [u8],
    pub lease: i64,
}

/// Why bytes are not a protobuf message we understand.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtoError {
    #[error("truncated protobuf at byte {0}")]
    Truncated(usize),
    #[error("varint too long at byte {0}")]
    VarintOverflow(usize),
    #[error("unsupported wire type {wire} for field {field} at byte {at}")]
    WireType { field: u64, wire: u8, at: usize },
}

const WIRE_VARINT: u8 = 0;
const WIRE_I64: u8 = 1;
const WIRE_LEN: u8 = 2;
const WIRE_I32: u8 = 5;

impl<'a> KeyValue<'a> {
    /// Appends the protobuf encoding to `out`, byte-identical to Go's gogoproto marshaller.
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_bytes(out, 1, self.key);
        put_int(out, 2, self.create_revision);
        put_int(out, 3, self.mod_revision);
        put_int(out, 4, self.version);
        put_bytes(out, 5, self.value);
        put_int(out, 6, self.lease);
    }

    /// Decodes a stored value. Unknown fields are skipped, like Go's unmarshaller does.
    pub fn decode(buf: &'a [u8]) -> Result<Self, ProtoError> {
        let mut kv = KeyValue::default();
        let mut r = Reader { buf, pos: 0 };
        while let Some((field, wire)) = r.tag()? {
            match (field, wire) {
                (1, WIRE_LEN) => kv.key = r.len_delimited()?,
                (2, WIRE_VARINT) => kv.create_revision = r.varint()? as i64,
                (3, WIRE_VARINT) => kv.mod_revision = r.varint()? as i64,
                (4, WIRE_VARINT) => kv.version = r.varint()? as i64,
                (5, WIRE_LEN) => kv.value = r.len_delimited()?,
                (6, WIRE_VARINT) => kv.lease = r.varint()? as i64,
                _ => r.skip(field, wire)?,
            }
        }
        Ok(kv)
    }
}

/// `leasepb.Lease` as stored in the `lease` bucket (key: `u64be(ID)`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lease {
    pub id: i64,
    pub ttl: i64,
    pub remaining_ttl: i64,
}

impl Lease {
    pub fn decode(buf: &[u8]) -> Result<Self, ProtoError> {
        let mut l = Lease::default();
        let mut r = Reader { buf, pos: 0 };
        while let Some((field, wire)) = r.tag()? {
            match (field, wire) {
                (1, WIRE_VARINT) => l.id = r.varint()? as i64,
                (2, WIRE_VARINT) => l.ttl = r.varint()? as i64,
                (3, WIRE_VARINT) => l.remaining_ttl = r.varint()? as i64,
                _ => r.skip(field, wire)?,
            }
        }
        Ok(l)
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        put_int(out, 1, self.id);
        put_int(out, 2, self.ttl);
        put_int(out, 3, self.remaining_ttl);
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_int(out: &mut Vec<u8>, field: u8, v: i64) {
    if v != 0 {
        out.push(field << 3 | WIRE_VARINT);
        // Negative int64 values are 10-byte two's-complement varints in protobuf.
        put_varint(out, v as u64);
    }
}

fn put_bytes(out: &mut Vec<u8>, field: u8, v: &[u8]) {
    if !v.is_empty() {
        out.push(field << 3 | WIRE_LEN);
        put_varint(out, v.len() as u64);
        out.extend_from_slice(v);
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, ProtoError> {
        let start = self.pos;
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or(ProtoError::Truncated(self.pos))?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(ProtoError::VarintOverflow(start))
    }

    fn tag(&mut self) -> Result<Option<(u64, u8)>, ProtoError> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let t = self.varint()?;
        Ok(Some((t >> 3, (t & 7) as u8)))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtoError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or(ProtoError::Truncated(self.pos))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn len_delimited(&mut self) -> Result<&'a [u8], ProtoError> {
        let n = self.varint()?;
        let n = usize::try_from(n).map_err(|_| ProtoError::Truncated(self.pos))?;
        self.take(n)
    }

    fn skip(&mut self, field: u64, wire: u8) -> Result<(), ProtoError> {
        match wire {
            WIRE_VARINT => self.varint().map(drop),
            WIRE_I64 => self.take(8).map(drop),
            WIRE_LEN => self.len_delimited().map(drop),
            WIRE_I32 => self.take(4).map(drop),
            _ => Err(ProtoError::WireType {
                field,
                wire,
                at: self.pos,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_reference_example() {
        // etcd-datadir.md §6.2: key "a", create 2, mod 4, version 2, value "11".
        let kv = KeyValue {
            key: b"a",
            create_revision: 2,
            mod_revision: 4,
            version: 2,
            value: b"11",
            lease: 0,
        };
        let mut out = Vec::new();
        kv.encode(&mut out);
        assert_eq!(
            out,
            [
                0x0a, 0x01, 0x61, 0x10, 0x02, 0x18, 0x04, 0x20, 0x02, 0x2a, 0x02, 0x31, 0x31
            ]
        );
        assert_eq!(KeyValue::decode(&out).unwrap(), kv);
    }

    #[test]
    fn tombstone_value_is_only_the_key() {
        let mut out = Vec::new();
        KeyValue {
            key: b"d",
            ..Default::default()
        }
        .encode(&mut out);
        assert_eq!(out, [0x0a, 0x01, 0x64]);
    }

    #[test]
    fn lease_matches_the_reference_example() {
        // etcd-datadir.md §6: `08 89 c2 a5 fe c8 bf e8 86 39 10 90 1c` (TTL 3600).
        let bytes = [
            0x08, 0x89, 0xc2, 0xa5, 0xfe, 0xc8, 0xbf, 0xe8, 0x86, 0x39, 0x10, 0x90, 0x1c,
        ];
        let l = Lease::decode(&bytes).unwrap();
        assert_eq!(l.ttl, 3600);
        let mut out = Vec::new();
        l.encode(&mut out);
        assert_eq!(out, bytes);
    }

    #[test]
    fn truncated_input_is_an_error_not_a_panic() {
        assert!(KeyValue::decode(&[0x0a, 0x05, 0x61]).is_err());
        assert!(KeyValue::decode(&[0x10]).is_err());
        assert!(KeyValue::decode(&[0xff; 11]).is_err());
        assert!(KeyValue::decode(&[0x0b]).is_err());
    }
}
