//! A WAL segment's identity, `%016x-%016x.wal` (sequence, first raft index), and the
//! 16-hex-digit name fields it shares with `.snap` names. Depends on nothing in the crate so
//! that errors can name segments.

use std::fmt;

/// A segment's identity from its file name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SegmentId {
    pub seq: u64,
    pub index: u64,
}

impl SegmentId {
    pub fn file_name(&self) -> String {
        format!("{:016x}-{:016x}.wal", self.seq, self.index)
    }

    /// Parses a canonical segment name (16 lower-case hex digits each).
    pub fn parse(name: &str) -> Option<SegmentId> {
        let stem = name.strip_suffix(".wal")?;
        let (a, b) = stem.split_once('-')?;
        Some(SegmentId {
            seq: parse_hex16(a)?,
            index: parse_hex16(b)?,
        })
    }
}

impl fmt::Display for SegmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file_name())
    }
}

pub(crate) fn parse_hex16(s: &str) -> Option<u64> {
    // etcd writes lower case; accepting other spellings would make the name we open
    // differ from the name on disk.
    if s.len() != 16 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}
