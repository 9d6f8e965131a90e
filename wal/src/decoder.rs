//! Decoding one or many WAL segments: frames, the rolling CRC-32C chain across segments,
//! and the torn-write rule that tells a repairable tail from corruption (etcd's
//! `decoder.go`, `ReadAll`'s crc-record check). Never panics on any input bytes.

use std::borrow::Cow;
use std::path::Path;

use crate::error::{Damage, DamageKind, DamageReason, WalError};
use crate::record::{FRAME_HEADER_LEN, RecordRef, RecordType, decode_length_word, parse_record};
use crate::segment::SegmentId;
use crate::storage::Fs;

/// etcd's `minSectorSize`: torn-write detection looks at 512-byte sectors.
const SECTOR: u64 = 512;

/// One decoded record, borrowed from its segment's bytes.
#[derive(Clone, Copy, Debug)]
pub struct DecodedRecord<'a> {
    pub segment: SegmentId,
    /// File offset of the frame's length word.
    pub offset: u64,
    /// Header + record + padding.
    pub frame_len: u64,
    /// Length of the `walpb.Record` bytes.
    pub rec_len: u64,
    pub record: RecordRef<'a>,
}

/// How decoding ended after the last good record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tail {
    /// Clean end: a zero length word (preallocated space) or the end of the file.
    Clean,
    /// A torn write in the last segment, which etcd would repair.
    Torn(Damage),
}

/// Summary of a complete decode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeEnd {
    pub tail: Tail,
    /// The last segment and the offset just after its last good record (where etcd would
    /// truncate or continue writing).
    pub last_segment: SegmentId,
    pub last_valid_offset: u64,
    /// The running CRC after the last good record.
    pub crc: u32,
}

/// Receives what the decoder finds. `record` may reject a record (e.g. a consumer's
/// semantic check), which ends decoding with that error.
pub trait Visitor {
    fn segment_start(&mut self, _segment: SegmentId, _len: u64) {}
    fn record(&mut self, rec: &DecodedRecord<'_>) -> Result<(), Damage>;
    /// Called when a segment ends cleanly; `rest` is the segment from `end_offset` on
    /// (zeros for preallocated space).
    fn segment_end(&mut self, _segment: SegmentId, _end_offset: u64, _rest: &[u8]) {}
}

/// Decoder state within one segment; carried across segments for the CRC.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cursor {
    pub offset: u64,
    pub crc: u32,
}

/// Result of decoding one frame.
#[derive(Debug)]
pub enum Step<'a> {
    Record(DecodedRecord<'a>),
    /// Clean end of the segment at `offset`.
    End {
        offset: u64,
    },
    Damage(Damage),
}

/// Decodes the frame at `cur.offset` of `buf` (the whole segment). `is_last` enables
/// torn-write classification, which etcd applies only to the last segment.
pub fn step<'a>(buf: &'a [u8], segment: SegmentId, cur: &mut Cursor, is_last: bool) -> Step<'a> {
    let off = cur.offset;
    let len = buf.len() as u64;
    let damage = |kind, reason| {
        Step::Damage(Damage {
            segment,
            offset: off,
            kind,
            reason,
        })
    };
    let torn_or_corrupt = if is_last {
        DamageKind::Torn
    } else {
        DamageKind::Corrupt
    };
    let remaining = len.saturating_sub(off);
    if remaining == 0 {
        return Step::End { offset: off };
    }
    let Some(word_bytes) = slice(buf, off, FRAME_HEADER_LEN) else {
        return damage(
            torn_or_corrupt,
            DamageReason::ShortLengthWord {
                available: remaining,
            },
        );
    };
    let mut w = [0u8; 8];
    w.copy_from_slice(word_bytes);
    let word = u64::from_le_bytes(w);
    if word == 0 {
        return Step::End { offset: off };
    }
    let (rec_len, pad) = decode_length_word(word);
    let need = rec_len + pad; // < 2^56 + 8, no overflow
    let available = remaining - FRAME_HEADER_LEN;
    let Some(framed) = slice(buf, off + FRAME_HEADER_LEN, need) else {
        return damage(
            torn_or_corrupt,
            DamageReason::ShortRecord {
                needed: need,
                available,
            },
        );
    };
    let payload = framed.get(..rec_len as usize).unwrap_or_default();
    let torn_if = |reason| {
        let kind = if is_last && has_zero_sector(framed, off + FRAME_HEADER_LEN) {
            DamageKind::Torn
        } else {
            DamageKind::Corrupt
        };
        damage(kind, reason)
    };
    let rec = match parse_record(payload) {
        Ok(r) => r,
        Err(e) => return torn_if(DamageReason::Unmarshal(e)),
    };
    if rec.rec_type == RecordType::Crc as i64 {
        // ReadAll: a fresh chain (running 0) accepts any value; otherwise the crc record
        // must continue it. This is a hard error even at the tail.
        if cur.crc != 0 && rec.crc != cur.crc {
            return damage(
                DamageKind::Corrupt,
                DamageReason::CrcRecordMismatch {
                    stored: rec.crc,
                    running: cur.crc,
                },
            );
        }
        cur.crc = rec.crc;
    } else {
        let computed = crc32c::crc32c_append(cur.crc, rec.data_or_empty());
        if computed != rec.crc {
            return torn_if(DamageReason::CrcMismatch {
                stored: rec.crc,
                computed,
            });
        }
        cur.crc = computed;
    }
    let frame_len = FRAME_HEADER_LEN + need;
    cur.offset = off + frame_len;
    Step::Record(DecodedRecord {
        segment,
        offset: off,
        frame_len,
        rec_len,
        record: rec,
    })
}

fn slice(buf: &[u8], off: u64, len: u64) -> Option<&[u8]> {
    let start = usize::try_from(off).ok()?;
    let end = usize::try_from(off.checked_add(len)?).ok()?;
    buf.get(start..end)
}

/// etcd's `isTornEntry`: split the frame payload at 512-byte file-offset boundaries; a
/// chunk that is entirely zero means the write never reached that sector.
fn has_zero_sector(data: &[u8], mut file_off: u64) -> bool {
    let mut rest = data;
    while !rest.is_empty() {
        let chunk_len = (SECTOR - file_off % SECTOR).min(rest.len() as u64) as usize;
        let (chunk, tail) = rest.split_at(chunk_len);
        if is_all_zero(chunk) {
            return true;
        }
        file_off += chunk_len as u64;
        rest = tail;
    }
    false
}

/// Fast check that a byte run is zero.
pub fn is_all_zero(b: &[u8]) -> bool {
    first_nonzero(b).is_none()
}

/// Position of the first non-zero byte.
pub fn first_nonzero(b: &[u8]) -> Option<usize> {
    const W: usize = 64;
    let mut chunks = b.chunks_exact(W);
    let mut pos = 0;
    for c in &mut chunks {
        // The OR-fold vectorises; only a non-zero chunk is scanned bytewise.
        if c.iter().fold(0u8, |a, &x| a | x) != 0 {
            return c.iter().position(|&x| x != 0).map(|p| pos + p);
        }
        pos += W;
    }
    chunks
        .remainder()
        .iter()
        .position(|&x| x != 0)
        .map(|p| pos + p)
}

/// Decodes in-memory segments in order (the CRC chain continues across them).
pub fn decode_buffers<V: Visitor>(
    segments: &[(SegmentId, &[u8])],
    visitor: &mut V,
) -> Result<DecodeEnd, Damage> {
    let ids: Vec<SegmentId> = segments.iter().map(|(id, _)| *id).collect();
    drive(
        &ids,
        |i| Ok::<_, std::convert::Infallible>(Cow::Borrowed(segments[i].1)),
        visitor,
    )
    .map_err(|e| match e {
        DriveError::Damage(d) => d,
        DriveError::Load(never) => match never {},
    })
}

/// Decodes the given segments of `wal_dir`, loading one segment at a time.
pub fn decode_segments<V: Visitor>(
    fs: &dyn Fs,
    wal_dir: &Path,
    segments: &[SegmentId],
    visitor: &mut V,
) -> Result<DecodeEnd, WalError> {
    drive(
        segments,
        |i| {
            let p = wal_dir.join(segments[i].file_name());
            fs.read_file(&p)
                .map(Cow::Owned)
                .map_err(|e| WalError::io(p, e))
        },
        visitor,
    )
    .map_err(|e| match e {
        DriveError::Damage(damage) => WalError::Damaged {
            dir: wal_dir.to_path_buf(),
            damage,
        },
        DriveError::Load(e) => e,
    })
}

enum DriveError<E> {
    Damage(Damage),
    Load(E),
}

fn drive<'b, V: Visitor, E>(
    ids: &[SegmentId],
    mut load: impl FnMut(usize) -> Result<Cow<'b, [u8]>, E>,
    visitor: &mut V,
) -> Result<DecodeEnd, DriveError<E>> {
    let mut crc = 0u32;
    let mut end = DecodeEnd {
        tail: Tail::Clean,
        last_segment: ids
            .first()
            .copied()
            .unwrap_or(SegmentId { seq: 0, index: 0 }),
        last_valid_offset: 0,
        crc: 0,
    };
    for (i, &id) in ids.iter().enumerate() {
        let buf = load(i).map_err(DriveError::Load)?;
        let is_last = i + 1 == ids.len();
        visitor.segment_start(id, buf.len() as u64);
        let mut cur = Cursor { offset: 0, crc };
        loop {
            match step(&buf, id, &mut cur, is_last) {
                Step::Record(rec) => visitor.record(&rec).map_err(DriveError::Damage)?,
                Step::End { offset } => {
                    let rest = buf.get(offset as usize..).unwrap_or_default();
                    visitor.segment_end(id, offset, rest);
                    break;
                }
                Step::Damage(d) => {
                    if d.kind == DamageKind::Torn {
                        end.tail = Tail::Torn(d);
                        end.last_segment = id;
                        end.last_valid_offset = cur.offset;
                        end.crc = cur.crc;
                        return Ok(end);
                    }
                    return Err(DriveError::Damage(d));
                }
            }
        }
        crc = cur.crc;
        end.last_segment = id;
        end.last_valid_offset = cur.offset;
        end.crc = crc;
    }
    Ok(end)
}

/// An owned record, for iteration and printing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalRecord {
    pub segment: SegmentId,
    pub offset: u64,
    pub rec_type: i64,
    pub crc: u32,
    pub data: Option<Vec<u8>>,
}

impl WalRecord {
    pub fn from_decoded(r: &DecodedRecord<'_>) -> Self {
        WalRecord {
            segment: r.segment,
            offset: r.offset,
            rec_type: r.record.rec_type,
            crc: r.record.crc,
            data: r.record.data.map(<[u8]>::to_vec),
        }
    }
}

/// Iterates over the records of a WAL directory, one segment in memory at a time. After
/// the last record it yields nothing; [`WalIter::end`] then tells how decoding ended.
/// A corrupt frame is yielded as an error and ends the iteration.
pub struct WalIter<'f> {
    fs: &'f dyn Fs,
    dir: std::path::PathBuf,
    segments: Vec<SegmentId>,
    pos: usize,
    buf: Option<Vec<u8>>,
    cur: Cursor,
    end: Option<DecodeEnd>,
    failed: bool,
}

impl<'f> WalIter<'f> {
    pub fn new(fs: &'f dyn Fs, wal_dir: &Path, segments: Vec<SegmentId>) -> Self {
        WalIter {
            fs,
            dir: wal_dir.to_path_buf(),
            segments,
            pos: 0,
            buf: None,
            cur: Cursor::default(),
            end: None,
            failed: false,
        }
    }

    /// How decoding ended (`None` until the iterator returned `None` without error).
    pub fn end(&self) -> Option<&DecodeEnd> {
        self.end.as_ref()
    }
}

impl Iterator for WalIter<'_> {
    type Item = Result<WalRecord, WalError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.end.is_some() {
            return None;
        }
        loop {
            let id = *self.segments.get(self.pos)?;
            if self.buf.is_none() {
                let p = self.dir.join(id.file_name());
                match self.fs.read_file(&p) {
                    Ok(b) => self.buf = Some(b),
                    Err(e) => {
                        self.failed = true;
                        return Some(Err(WalError::io(p, e)));
                    }
                }
                self.cur.offset = 0;
            }
            let buf = self.buf.as_deref().unwrap_or_default();
            let is_last = self.pos + 1 == self.segments.len();
            match step(buf, id, &mut self.cur, is_last) {
                Step::Record(r) => return Some(Ok(WalRecord::from_decoded(&r))),
                Step::End { offset } => {
                    self.buf = None;
                    self.pos += 1;
                    if self.pos == self.segments.len() {
                        self.end = Some(DecodeEnd {
                            tail: Tail::Clean,
                            last_segment: id,
                            last_valid_offset: offset,
                            crc: self.cur.crc,
                        });
                        return None;
                    }
                }
                Step::Damage(d) => {
                    if d.kind == DamageKind::Torn {
                        self.end = Some(DecodeEnd {
                            tail: Tail::Torn(d),
                            last_segment: id,
                            last_valid_offset: self.cur.offset,
                            crc: self.cur.crc,
                        });
                        return None;
                    }
                    self.failed = true;
                    return Some(Err(WalError::Damaged {
                        dir: self.dir.clone(),
                        damage: d,
                    }));
                }
            }
        }
    }
}
