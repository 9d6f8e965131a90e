//! Meta pages (pages 0 and 1): decoding, the FNV-1a checksum, validation and the choice of
//! the current meta. Layout: docs/bbolt.md, upstream `page.go`/`db.go` (`meta.validate`,
//! `DB.meta`).

use crate::error::MetaError;
use crate::page::{PAGE_HEADER_SIZE, put_header};

pub const MAGIC: u32 = 0xED0C_DAED;
pub const VERSION: u32 = 2;
/// `meta.freelist` value meaning "no freelist page; rebuild the free set by walking the tree".
pub const NO_FREELIST: u64 = u64::MAX;
/// Size of the meta struct that follows the page header.
pub const META_SIZE: usize = 64;
pub const MIN_PAGE_SIZE: u32 = 512;
pub const MAX_PAGE_SIZE: u32 = 1 << 16;

/// The decoded meta struct.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub magic: u32,
    pub version: u32,
    pub page_size: u32,
    pub flags: u32,
    /// Root page of the root bucket.
    pub root: u64,
    pub root_sequence: u64,
    /// Freelist page id or [`NO_FREELIST`].
    pub freelist: u64,
    /// High-water mark: number of pages in use.
    pub pgid: u64,
    pub txid: u64,
    pub checksum: u64,
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 4)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn le64(b: &[u8], at: usize) -> Option<u64> {
    let s = b.get(at..at + 8)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Some(u64::from_le_bytes(a))
}

/// FNV-1a, 64 bit.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

impl Meta {
    /// Decodes the meta struct of a page whose bytes start at `page[0]`.
    pub fn decode(page: &[u8]) -> Option<Meta> {
        let m = PAGE_HEADER_SIZE;
        Some(Meta {
            magic: le32(page, m)?,
            version: le32(page, m + 4)?,
            page_size: le32(page, m + 8)?,
            flags: le32(page, m + 12)?,
            root: le64(page, m + 16)?,
            root_sequence: le64(page, m + 24)?,
            freelist: le64(page, m + 32)?,
            pgid: le64(page, m + 40)?,
            txid: le64(page, m + 48)?,
            checksum: le64(page, m + 56)?,
        })
    }

    fn encode_fields(&self) -> [u8; META_SIZE] {
        let mut b = [0u8; META_SIZE];
        b[0..4].copy_from_slice(&self.magic.to_le_bytes());
        b[4..8].copy_from_slice(&self.version.to_le_bytes());
        b[8..12].copy_from_slice(&self.page_size.to_le_bytes());
        b[12..16].copy_from_slice(&self.flags.to_le_bytes());
        b[16..24].copy_from_slice(&self.root.to_le_bytes());
        b[24..32].copy_from_slice(&self.root_sequence.to_le_bytes());
        b[32..40].copy_from_slice(&self.freelist.to_le_bytes());
        b[40..48].copy_from_slice(&self.pgid.to_le_bytes());
        b[48..56].copy_from_slice(&self.txid.to_le_bytes());
        b[56..64].copy_from_slice(&self.checksum.to_le_bytes());
        b
    }

    /// Checksum over the 56 bytes before the checksum field.
    pub fn sum64(&self) -> u64 {
        fnv1a64(&self.encode_fields()[..56])
    }

    /// The checks Go's `meta.validate` does: magic, version, checksum.
    pub fn validate_go(&self) -> Result<(), MetaError> {
        if self.magic != MAGIC {
            return Err(MetaError::Magic(self.magic));
        }
        if self.version != VERSION {
            return Err(MetaError::Version(self.version));
        }
        let computed = self.sum64();
        if computed != self.checksum {
            return Err(MetaError::Checksum {
                stored: self.checksum,
                computed,
            });
        }
        Ok(())
    }

    /// Go's checks plus sanity of the fields Go trusts blindly.
    pub fn validate(&self, page_size: u32) -> Result<(), MetaError> {
        self.validate_go()?;
        if !valid_page_size(self.page_size) {
            return Err(MetaError::PageSize(self.page_size));
        }
        if self.page_size != page_size {
            return Err(MetaError::PageSizeMismatch {
                found: self.page_size,
                expected: page_size,
            });
        }
        if self.pgid < 3 {
            return Err(MetaError::Hwm(self.pgid));
        }
        if self.root < 2 || self.root >= self.pgid {
            return Err(MetaError::Root {
                root: self.root,
                hwm: self.pgid,
            });
        }
        if self.freelist != NO_FREELIST && (self.freelist < 2 || self.freelist >= self.pgid) {
            return Err(MetaError::Freelist {
                freelist: self.freelist,
                hwm: self.pgid,
            });
        }
        Ok(())
    }

    pub fn has_freelist(&self) -> bool {
        self.freelist != NO_FREELIST
    }

    /// A full page image: header `{id, META}` and this meta with a fresh checksum.
    pub fn encode_page(&self, id: u64, page_size: usize) -> Vec<u8> {
        let mut m = *self;
        m.checksum = m.sum64();
        let mut buf = vec![0u8; page_size.max(PAGE_HEADER_SIZE + META_SIZE)];
        put_header(&mut buf, id, crate::page::META_FLAG, 0, 0);
        buf[PAGE_HEADER_SIZE..PAGE_HEADER_SIZE + META_SIZE].copy_from_slice(&m.encode_fields());
        buf
    }

    /// A meta for a fresh database with this layout.
    pub fn new(page_size: u32, root: u64, freelist: u64, pgid: u64, txid: u64) -> Meta {
        let mut m = Meta {
            magic: MAGIC,
            version: VERSION,
            page_size,
            flags: 0,
            root,
            root_sequence: 0,
            freelist,
            pgid,
            txid,
            checksum: 0,
        };
        m.checksum = m.sum64();
        m
    }
}

pub fn valid_page_size(ps: u32) -> bool {
    ps.is_power_of_two() && (MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&ps)
}

/// Decodes and validates the meta stored in `page`.
pub fn read_meta(page: Option<&[u8]>, page_size: u32) -> Result<Meta, MetaError> {
    let meta = page.and_then(Meta::decode).ok_or(MetaError::Truncated)?;
    meta.validate(page_size)?;
    Ok(meta)
}

/// Go's rule (`DB.meta`): the valid meta with the higher txid; on a tie meta 0.
pub fn choose(
    m0: Result<Meta, MetaError>,
    m1: Result<Meta, MetaError>,
) -> Result<Meta, (MetaError, MetaError)> {
    match (m0, m1) {
        (Ok(a), Ok(b)) => Ok(if b.txid > a.txid { b } else { a }),
        (Ok(a), Err(_)) => Ok(a),
        (Err(_), Ok(b)) => Ok(b),
        (Err(e0), Err(e1)) => Err((e0, e1)),
    }
}

/// Finds the page size of a file from its first bytes the way Go (v1.3.7+) does: the meta at
/// offset 0, else a meta found at offsets 1 KiB << i (for the case meta 0 is damaged).
/// `read` returns up to 4096 bytes at an offset (fewer at the end of the file).
pub fn discover_page_size(
    file_len: u64,
    mut read: impl FnMut(u64) -> Option<Vec<u8>>,
) -> Option<u32> {
    let ok = |b: &[u8]| -> Option<u32> {
        let m = Meta::decode(b)?;
        m.validate_go().ok()?;
        valid_page_size(m.page_size).then_some(m.page_size)
    };
    if let Some(ps) = read(0).as_deref().and_then(ok) {
        return Some(ps);
    }
    for i in 0..15u32 {
        let pos = 1024u64 << i;
        if pos >= file_len.saturating_sub(1024) {
            break;
        }
        if let Some(ps) = read(pos).as_deref().and_then(ok)
            && u64::from(ps) == pos
        {
            return Some(ps);
        }
    }
    None
}

/// Page size and both metas of a file image (page size 4096 when none can be found, so the
/// metas then report why they are invalid).
pub fn load(data: &[u8]) -> (u32, Result<Meta, MetaError>, Result<Meta, MetaError>) {
    let len = data.len() as u64;
    let found = discover_page_size(len, |off| {
        let start = usize::try_from(off).ok()?;
        let end = start.saturating_add(4096).min(data.len());
        data.get(start..end).map(<[u8]>::to_vec)
    });
    let ps = found.unwrap_or(4096);
    let p = ps as usize;
    let m0 = read_meta(data.get(0..p), ps);
    let m1 = read_meta(data.get(p..2 * p), ps);
    (ps, m0, m1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_matches_the_documented_init_vector() {
        // Page 0 of a fresh Go bbolt file at ps 4096 (docs/bbolt.md, init layout).
        let m0 = Meta::new(4096, 3, 2, 4, 0);
        assert_eq!(m0.checksum, 0x07516e114689fdee);
        let m1 = Meta::new(4096, 3, 2, 4, 1);
        assert_eq!(m1.checksum, 0x264c351a5179480f);
        let page = m0.encode_page(0, 4096);
        assert_eq!(read_meta(Some(&page), 4096), Ok(m0));
    }

    #[test]
    fn choose_follows_go() {
        let a = Meta::new(4096, 3, 2, 4, 6);
        let b = Meta::new(4096, 3, 2, 4, 7);
        assert_eq!(choose(Ok(a), Ok(b)), Ok(b));
        assert_eq!(choose(Ok(b), Ok(a)), Ok(b));
        assert_eq!(choose(Ok(a), Err(MetaError::Truncated)), Ok(a));
        assert!(choose(Err(MetaError::Truncated), Err(MetaError::Magic(0))).is_err());
    }
}
