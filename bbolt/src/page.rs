//! Pages: the 16-byte header, branch and leaf elements, freelist payloads. Every accessor
//! checks its ranges against the page bytes, so no input can make a read go out of bounds.
//! Layout: docs/bbolt.md; upstream `page.go`.

use crate::error::{Corruption, Error, Result};

pub const PAGE_HEADER_SIZE: usize = 16;
/// Branch and leaf elements are both 16 bytes.
pub const ELEM_SIZE: usize = 16;
pub const BUCKET_HEADER_SIZE: usize = 16;

pub const BRANCH_FLAG: u16 = 0x01;
pub const LEAF_FLAG: u16 = 0x02;
pub const META_FLAG: u16 = 0x04;
pub const FREELIST_FLAG: u16 = 0x10;
/// Leaf element flag: the value is a bucket header (plus an inline page when root == 0).
pub const BUCKET_LEAF_FLAG: u32 = 0x01;

/// Go refuses to write a node with this many elements.
pub const MAX_ELEMENTS: usize = 0xFFFE;
pub const MAX_KEY_SIZE: usize = 32768;
pub const MAX_VALUE_SIZE: usize = (1 << 31) - 2;
/// Bound on tree depth when following child pointers (guards against cycles).
pub const MAX_DEPTH: usize = 64;

#[inline]
pub(crate) fn le16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes([s[0], s[1]]))
}

#[inline]
pub(crate) fn le32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

#[inline]
pub(crate) fn le64(b: &[u8], at: usize) -> Option<u64> {
    let s = b.get(at..at.checked_add(8)?)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Some(u64::from_le_bytes(a))
}

/// The page header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub id: u64,
    pub flags: u16,
    pub count: u16,
    pub overflow: u32,
}

pub fn read_header(b: &[u8]) -> Option<Header> {
    Some(Header {
        id: le64(b, 0)?,
        flags: le16(b, 8)?,
        count: le16(b, 10)?,
        overflow: le32(b, 12)?,
    })
}

pub(crate) fn put_header(buf: &mut [u8], id: u64, flags: u16, count: u16, overflow: u32) {
    buf[0..8].copy_from_slice(&id.to_le_bytes());
    buf[8..10].copy_from_slice(&flags.to_le_bytes());
    buf[10..12].copy_from_slice(&count.to_le_bytes());
    buf[12..16].copy_from_slice(&overflow.to_le_bytes());
}

pub fn type_name(flags: u16) -> &'static str {
    match flags {
        BRANCH_FLAG => "branch",
        LEAF_FLAG => "leaf",
        META_FLAG => "meta",
        FREELIST_FLAG => "freelist",
        _ => "unknown",
    }
}

/// A validated view of one branch or leaf node: a page run from the file, or an inline
/// bucket page inside a leaf value.
#[derive(Debug, Clone, Copy)]
pub struct Page<'a> {
    /// The node bytes: header, elements, data (all overflow pages included).
    pub bytes: &'a [u8],
    /// The page id (for an inline page: the page that holds it).
    pub id: u64,
    /// File offset of `bytes[0]` (best effort for inline pages).
    pub file_off: u64,
    pub flags: u16,
    pub count: u16,
    pub overflow: u32,
    pub inline: bool,
}

/// A leaf element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeafElem<'a> {
    pub flags: u32,
    pub key: &'a [u8],
    pub value: &'a [u8],
}

impl LeafElem<'_> {
    pub fn is_bucket(&self) -> bool {
        self.flags & BUCKET_LEAF_FLAG != 0
    }
}

/// A branch element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BranchElem<'a> {
    pub key: &'a [u8],
    pub pgid: u64,
}

/// Reads and checks the header of page run `id` in `data` (the whole file): the run must lie
/// inside the file and below the high-water mark, and the header must name `id`.
pub fn page_run(data: &[u8], ps: usize, id: u64, hwm: u64) -> Result<(Header, &[u8])> {
    let off = id.saturating_mul(ps as u64);
    let bad = |kind| Error::corrupt(id, off, kind);
    if id < 2 {
        return Err(bad(Corruption::MetaId));
    }
    if id >= hwm {
        return Err(bad(Corruption::BeyondHwm { hwm }));
    }
    let start = usize::try_from(off).map_err(|_| {
        bad(Corruption::BeyondEof {
            end: off,
            file_len: data.len() as u64,
        })
    })?;
    let hdr = data.get(start..).and_then(read_header).ok_or_else(|| {
        bad(Corruption::BeyondEof {
            end: off.saturating_add(ps as u64),
            file_len: data.len() as u64,
        })
    })?;
    if hdr.id != id {
        return Err(bad(Corruption::IdMismatch { found: hdr.id }));
    }
    let pages = u64::from(hdr.overflow) + 1;
    if id.saturating_add(pages) > hwm {
        return Err(bad(Corruption::BeyondHwm { hwm }));
    }
    let end = pages
        .checked_mul(ps as u64)
        .and_then(|l| l.checked_add(off))
        .unwrap_or(u64::MAX);
    let bytes = usize::try_from(end)
        .ok()
        .and_then(|e| data.get(start..e))
        .ok_or_else(|| {
            bad(Corruption::BeyondEof {
                end,
                file_len: data.len() as u64,
            })
        })?;
    Ok((hdr, bytes))
}

impl<'a> Page<'a> {
    /// Page `id` as a branch or leaf node.
    pub fn node(data: &'a [u8], ps: usize, id: u64, hwm: u64) -> Result<Page<'a>> {
        let (h, bytes) = page_run(data, ps, id, hwm)?;
        let p = Page {
            bytes,
            id,
            file_off: id * ps as u64,
            flags: h.flags,
            count: h.count,
            overflow: h.overflow,
            inline: false,
        };
        if h.flags != BRANCH_FLAG && h.flags != LEAF_FLAG {
            return Err(p.err(Corruption::BadType {
                flags: h.flags,
                expected: "branch or leaf",
            }));
        }
        p.check_array()?;
        Ok(p)
    }

    /// The inline page of a bucket value (`bytes` = the value after the bucket header).
    pub fn inline(bytes: &'a [u8], container: u64, file_off: u64) -> Result<Page<'a>> {
        let bad = |what| Error::corrupt(container, file_off, Corruption::Inline(what));
        let h = read_header(bytes).ok_or_else(|| bad("shorter than a page header"))?;
        if h.flags != LEAF_FLAG {
            return Err(bad("not a leaf page"));
        }
        let p = Page {
            bytes,
            id: container,
            file_off,
            flags: h.flags,
            count: h.count,
            overflow: 0,
            inline: true,
        };
        p.check_array()?;
        Ok(p)
    }

    fn check_array(&self) -> Result<()> {
        let need = PAGE_HEADER_SIZE + ELEM_SIZE * usize::from(self.count);
        if need > self.bytes.len() {
            return Err(self.err(Corruption::ElementArray {
                count: u32::from(self.count),
            }));
        }
        if self.flags == BRANCH_FLAG && self.count == 0 {
            return Err(self.err(Corruption::EmptyBranch));
        }
        Ok(())
    }

    pub fn err(&self, kind: Corruption) -> Error {
        Error::corrupt(self.id, self.file_off, kind)
    }

    pub fn is_leaf(&self) -> bool {
        self.flags == LEAF_FLAG
    }

    pub fn len(&self) -> usize {
        usize::from(self.count)
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Leaf element `i`. The caller must have checked that this is a leaf page.
    #[inline]
    pub fn leaf(&self, i: usize) -> Result<LeafElem<'a>> {
        let e = PAGE_HEADER_SIZE + ELEM_SIZE * i;
        let b = self.bytes;
        let parsed = (|| {
            let flags = le32(b, e)?;
            let pos = le32(b, e + 4)? as usize;
            let ksize = le32(b, e + 8)? as usize;
            let vsize = le32(b, e + 12)? as usize;
            let ks = e.checked_add(pos)?;
            let ke = ks.checked_add(ksize)?;
            let ve = ke.checked_add(vsize)?;
            Some(LeafElem {
                flags,
                key: b.get(ks..ke)?,
                value: b.get(ke..ve)?,
            })
        })();
        let el = parsed.ok_or_else(|| self.err(Corruption::ElementBounds { index: i }))?;
        if el.key.is_empty() {
            return Err(self.err(Corruption::EmptyKey { index: i }));
        }
        Ok(el)
    }

    /// Branch element `i`. The caller must have checked that this is a branch page.
    #[inline]
    pub fn branch(&self, i: usize) -> Result<BranchElem<'a>> {
        let e = PAGE_HEADER_SIZE + ELEM_SIZE * i;
        let b = self.bytes;
        let parsed = (|| {
            let pos = le32(b, e)? as usize;
            let ksize = le32(b, e + 4)? as usize;
            let pgid = le64(b, e + 8)?;
            let ks = e.checked_add(pos)?;
            Some(BranchElem {
                key: b.get(ks..ks.checked_add(ksize)?)?,
                pgid,
            })
        })();
        let el = parsed.ok_or_else(|| self.err(Corruption::ElementBounds { index: i }))?;
        if el.key.is_empty() {
            return Err(self.err(Corruption::EmptyKey { index: i }));
        }
        Ok(el)
    }

    /// The key of element `i`, whatever the page type.
    #[inline]
    pub fn key(&self, i: usize) -> Result<&'a [u8]> {
        if self.is_leaf() {
            Ok(self.leaf(i)?.key)
        } else {
            Ok(self.branch(i)?.key)
        }
    }

    /// File offset of element `i` (for error messages).
    pub fn elem_offset(&self, i: usize) -> u64 {
        self.file_off + (PAGE_HEADER_SIZE + ELEM_SIZE * i) as u64
    }
}

/// Decodes the ids of a freelist page run (header already read).
pub fn freelist_ids<'a>(
    bytes: &'a [u8],
    h: &Header,
) -> Result<impl ExactSizeIterator<Item = u64> + 'a, &'static str> {
    if h.flags != FREELIST_FLAG {
        return Err("not a freelist page");
    }
    let (start, n) = if h.count == 0xFFFF {
        let n = le64(bytes, PAGE_HEADER_SIZE).ok_or("count word beyond the page")?;
        (PAGE_HEADER_SIZE + 8, n)
    } else {
        (PAGE_HEADER_SIZE, u64::from(h.count))
    };
    let len = usize::try_from(n)
        .ok()
        .and_then(|n| n.checked_mul(8))
        .ok_or("id count overflows")?;
    let ids = start
        .checked_add(len)
        .and_then(|end| bytes.get(start..end))
        .ok_or("ids run beyond the page")?;
    Ok(ids.chunks_exact(8).map(|c| {
        let mut a = [0u8; 8];
        a.copy_from_slice(c);
        u64::from_le_bytes(a)
    }))
}

/// Root page, sequence and (for an inline bucket, root 0) the inline page of a bucket value.
pub fn bucket_value(value: &[u8]) -> Option<(u64, u64, Option<&[u8]>)> {
    let root = le64(value, 0)?;
    let seq = le64(value, 8)?;
    let inline = if root == 0 {
        Some(value.get(BUCKET_HEADER_SIZE..)?)
    } else {
        None
    };
    Some((root, seq, inline))
}

/// One element to serialize.
pub(crate) struct ElemSrc<'a> {
    pub flags: u32,
    pub key: &'a [u8],
    pub value: &'a [u8],
    pub pgid: u64,
}

/// Writes a branch or leaf node into `buf` (zeroed, at least the node size) the way Go packs
/// it: elements first, then keys and values in element order, no gaps. The header id and
/// overflow are written by the caller.
pub(crate) fn write_node<'a>(
    buf: &mut [u8],
    is_leaf: bool,
    count: usize,
    elems: impl Iterator<Item = ElemSrc<'a>>,
) {
    let flags = if is_leaf { LEAF_FLAG } else { BRANCH_FLAG };
    buf[8..10].copy_from_slice(&flags.to_le_bytes());
    buf[10..12].copy_from_slice(&(count as u16).to_le_bytes());
    let mut data = PAGE_HEADER_SIZE + ELEM_SIZE * count;
    for (i, el) in elems.enumerate() {
        let e = PAGE_HEADER_SIZE + ELEM_SIZE * i;
        let pos = (data - e) as u32;
        if is_leaf {
            buf[e..e + 4].copy_from_slice(&el.flags.to_le_bytes());
            buf[e + 4..e + 8].copy_from_slice(&pos.to_le_bytes());
            buf[e + 8..e + 12].copy_from_slice(&(el.key.len() as u32).to_le_bytes());
            buf[e + 12..e + 16].copy_from_slice(&(el.value.len() as u32).to_le_bytes());
        } else {
            buf[e..e + 4].copy_from_slice(&pos.to_le_bytes());
            buf[e + 4..e + 8].copy_from_slice(&(el.key.len() as u32).to_le_bytes());
            buf[e + 8..e + 16].copy_from_slice(&el.pgid.to_le_bytes());
        }
        buf[data..data + el.key.len()].copy_from_slice(el.key);
        data += el.key.len();
        if is_leaf {
            buf[data..data + el.value.len()].copy_from_slice(el.value);
            data += el.value.len();
        }
    }
}

/// A page image of the given number of pages with a header.
pub(crate) fn alloc_buf(ps: usize, pages: usize, id: u64) -> Vec<u8> {
    let mut buf = vec![0u8; ps * pages];
    buf[0..8].copy_from_slice(&id.to_le_bytes());
    buf[12..16].copy_from_slice(&((pages - 1) as u32).to_le_bytes());
    buf
}

/// Number of pages a node of `size` bytes needs.
pub(crate) fn pages_for(size: usize, ps: usize) -> usize {
    size.div_ceil(ps).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaf_roundtrip_and_bounds() {
        let mut buf = vec![0u8; 4096];
        let elems = [(b"a".as_slice(), b"xx".as_slice()), (b"bb", b"")];
        write_node(
            &mut buf,
            true,
            2,
            elems.iter().map(|(k, v)| ElemSrc {
                flags: 0,
                key: k,
                value: v,
                pgid: 0,
            }),
        );
        let p = Page::inline(&buf, 7, 0).unwrap();
        assert_eq!(p.leaf(0).unwrap().key, b"a");
        assert_eq!(p.leaf(0).unwrap().value, b"xx");
        assert_eq!(p.leaf(1).unwrap().key, b"bb");
        // pos of element 0 is 16*n (docs/bbolt.md packing rule)
        assert_eq!(le32(&buf, 20), Some(32));
        // corrupt ksize: must be an error, not a panic
        buf[24..28].copy_from_slice(&u32::MAX.to_le_bytes());
        let p = Page::inline(&buf, 7, 0).unwrap();
        assert!(p.leaf(0).is_err());
        assert!(p.leaf(5000).is_err());
    }
}
