//! etcd's `key`-bucket records, encoded here independently of the code under test, for tests
//! that build a database byte by byte and compute what etcd must report for it.

/// Appends `v` as a protobuf varint.
pub fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// `mvccpb.KeyValue{key, create_revision, mod_revision, version, value}` as etcd stores it
/// (fields 1..5; zero varints and an empty value omitted, like Go's encoder).
pub fn kv_proto(key: &[u8], create: i64, modr: i64, version: i64, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + value.len() + 32);
    out.push(0x0a);
    varint(&mut out, key.len() as u64);
    out.extend_from_slice(key);
    for (tag, v) in [(0x10u8, create), (0x18, modr), (0x20, version)] {
        if v != 0 {
            out.push(tag);
            varint(&mut out, v as u64);
        }
    }
    if !value.is_empty() {
        out.push(0x2a);
        varint(&mut out, value.len() as u64);
        out.extend_from_slice(value);
    }
    out
}

/// A revision key: `main` and `sub` big-endian around `_`, and `t` for a tombstone.
pub fn rev_key(main: i64, sub: i64, tombstone: bool) -> Vec<u8> {
    let mut k = main.to_be_bytes().to_vec();
    k.push(b'_');
    k.extend_from_slice(&sub.to_be_bytes());
    if tombstone {
        k.push(b't');
    }
    k
}
