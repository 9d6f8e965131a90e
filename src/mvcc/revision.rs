//! Revision keys of etcd's `key` bucket.
//!
//! A key is `u64be(main) '_' u64be(sub)` (17 bytes), plus a trailing `'t'` for a tombstone
//! (18 bytes). Byte order equals (main, sub) order, which is why bbolt keeps the bucket sorted by
//! revision. Upstream: etcd `server/mvcc/revision.go` (3.5), `server/storage/mvcc/revision.go` (3.6).

use std::fmt;

/// Length of a revision key without the tombstone marker.
pub const REV_KEY_LEN: usize = 17;
/// Length of a tombstone revision key.
pub const TOMBSTONE_KEY_LEN: usize = 18;
const SEPARATOR: u8 = b'_';
const TOMBSTONE_MARK: u8 = b't';

/// An MVCC revision: `main` is the store-wide transaction counter, `sub` the operation index
/// inside that transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Revision {
    pub main: i64,
    pub sub: i64,
}

impl Revision {
    pub const fn new(main: i64, sub: i64) -> Self {
        Self { main, sub }
    }

    /// The 17-byte key bytes (18 with the tombstone marker).
    pub fn to_key(self, tombstone: bool) -> RevKey {
        let mut b = [0u8; TOMBSTONE_KEY_LEN];
        b[..8].copy_from_slice(&(self.main as u64).to_be_bytes());
        b[8] = SEPARATOR;
        b[9..17].copy_from_slice(&(self.sub as u64).to_be_bytes());
        if tombstone {
            b[17] = TOMBSTONE_MARK;
        }
        RevKey {
            bytes: b,
            len: if tombstone {
                TOMBSTONE_KEY_LEN
            } else {
                REV_KEY_LEN
            },
        }
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.main, self.sub)
    }
}

/// Encoded revision key, kept on the stack.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RevKey {
    bytes: [u8; TOMBSTONE_KEY_LEN],
    len: usize,
}

impl RevKey {
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl fmt::Debug for RevKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.as_bytes() {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// A decoded key of the `key` bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParsedRevKey {
    pub rev: Revision,
    pub tombstone: bool,
}

/// Why a `key`-bucket key is not a revision key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RevKeyError {
    #[error("revision key has {0} bytes, expected 17 or 18")]
    Length(usize),
    #[error("revision key has separator byte {0:#04x}, expected '_'")]
    Separator(u8),
    #[error("revision key has marker byte {0:#04x}, expected 't'")]
    Marker(u8),
    #[error("revision key holds a negative revision")]
    Negative,
}

/// Decodes a `key`-bucket key. Strict like etcd 3.6, which refuses anything else at start-up.
pub fn parse_rev_key(k: &[u8]) -> Result<ParsedRevKey, RevKeyError> {
    if k.len() != REV_KEY_LEN && k.len() != TOMBSTONE_KEY_LEN {
        return Err(RevKeyError::Length(k.len()));
    }
    if k[8] != SEPARATOR {
        return Err(RevKeyError::Separator(k[8]));
    }
    let tombstone = k.len() == TOMBSTONE_KEY_LEN;
    if tombstone && k[17] != TOMBSTONE_MARK {
        return Err(RevKeyError::Marker(k[17]));
    }
    let main = i64::from_be_bytes(
        k[..8]
            .try_into()
            .map_err(|_| RevKeyError::Length(k.len()))?,
    );
    let sub = i64::from_be_bytes(
        k[9..17]
            .try_into()
            .map_err(|_| RevKeyError::Length(k.len()))?,
    );
    if main < 0 || sub < 0 {
        return Err(RevKeyError::Negative);
    }
    Ok(ParsedRevKey {
        rev: Revision { main, sub },
        tombstone,
    })
}

/// The main revision of a key of at least 8 bytes, the way etcd-backup-restore's sanity check
/// reads "the latest revision" (first 8 bytes, big-endian) without validating the rest.
pub fn main_of(k: &[u8]) -> Option<i64> {
    Some(i64::from_be_bytes(k.get(..8)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_the_reference_examples() {
        // etcd-datadir.md §6.1: {main 4, sub 0} and a tombstone at {9, 0}.
        assert_eq!(
            format!("{:?}", Revision::new(4, 0).to_key(false)),
            "00000000000000045f0000000000000000"
        );
        assert_eq!(
            format!("{:?}", Revision::new(9, 0).to_key(true)),
            "00000000000000095f000000000000000074"
        );
    }

    #[test]
    fn round_trips_and_orders_bytewise() {
        let a = Revision::new(5, 1).to_key(false);
        let b = Revision::new(5, 2).to_key(true);
        let c = Revision::new(6, 0).to_key(false);
        assert!(a.as_bytes() < b.as_bytes() && b.as_bytes() < c.as_bytes());
        let p = parse_rev_key(b.as_bytes()).unwrap();
        assert_eq!(p.rev, Revision::new(5, 2));
        assert!(p.tombstone);
    }

    #[test]
    fn rejects_malformed_keys() {
        assert_eq!(parse_rev_key(b"abc"), Err(RevKeyError::Length(3)));
        let mut k = Revision::new(1, 0).to_key(true).as_bytes().to_vec();
        k[17] = b'x';
        assert_eq!(parse_rev_key(&k), Err(RevKeyError::Marker(b'x')));
        k[8] = b'-';
        assert_eq!(parse_rev_key(&k), Err(RevKeyError::Separator(b'-')));
        let neg = Revision::new(-1, 0).to_key(false);
        assert_eq!(parse_rev_key(neg.as_bytes()), Err(RevKeyError::Negative));
    }
}
