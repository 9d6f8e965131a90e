//! Decoding one or many WAL segments: frames, the rolling CRC-32C chain across segments,
//! and the torn-write rule that tells a repairable tail from corruption (etcd's
//! `decoder.go`, `ReadAll`'s crc-record check). Never panics on any input bytes.

use std::path::Path;

use crate::error::{Damage, DamageKind, DamageReason, WalError};
use crate::record::{FRAME_HEADER_LEN, RecordRef, RecordType, decode_length_word, parse_record};
use crate::segment_id::SegmentId;
use crate::storage::{File, Fs};

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
    /// Whether [`Visitor::segment_end`] should be told about non-zero bytes after a
    /// clean end (costs a scan of the preallocated space).
    fn wants_stale_scan(&self) -> bool {
        false
    }
    /// Called when a segment ends cleanly at `end_offset`; `stale_at` is the first
    /// non-zero byte after it (only looked for if [`Visitor::wants_stale_scan`]).
    fn segment_end(&mut self, _segment: SegmentId, _end_offset: u64, _stale_at: Option<u64>) {}
}

/// Decoder state within one segment; carried across segments for the CRC.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cursor {
    pub offset: u64,
    pub crc: u32,
}

/// A segment's bytes, read through a window so a segment is never held in memory as a
/// whole (and tests/fuzzing can use plain slices).
pub trait Source {
    /// Segment length in bytes.
    fn len(&self) -> u64;
    /// Up to `n` bytes at `off`: exactly `n` unless the segment ends first.
    fn get(&mut self, off: u64, n: u64) -> std::io::Result<&[u8]>;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Source for &[u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }
    fn get(&mut self, off: u64, n: u64) -> std::io::Result<&[u8]> {
        let len = <[u8]>::len(self) as u64;
        let start = off.min(len);
        let end = start.saturating_add(n).min(len);
        Ok(<[u8]>::get(self, start as usize..end as usize).unwrap_or_default())
    }
}

/// Window size of [`FileSource`]: large enough that syscalls are rare, small enough to
/// stay in cache.
const WINDOW: usize = 1 << 20;

/// A segment file read through a reusable window buffer (pread).
pub struct FileSource {
    file: Box<dyn File>,
    len: u64,
    buf: Vec<u8>,
    base: u64,
    filled: usize,
}

impl FileSource {
    pub fn open(fs: &dyn Fs, path: &Path) -> std::io::Result<FileSource> {
        let file = fs.open_read(path)?;
        let len = file.len()?;
        Ok(FileSource {
            file,
            len,
            buf: Vec::new(),
            base: 0,
            filled: 0,
        })
    }
}

impl Source for FileSource {
    fn len(&self) -> u64 {
        self.len
    }
    fn get(&mut self, off: u64, n: u64) -> std::io::Result<&[u8]> {
        let off = off.min(self.len);
        // Bounded by the file length, so a corrupt length word cannot make us allocate
        // more than the segment's size.
        let want = n.min(self.len - off) as usize;
        let have = off >= self.base && off + want as u64 <= self.base + self.filled as u64;
        if !have {
            let size = want.max(WINDOW).min((self.len - off) as usize);
            if self.buf.len() < size {
                self.buf.resize(size, 0);
            }
            let dst = self.buf.get_mut(..size).unwrap_or_default();
            self.file.read_exact_at(dst, off)?;
            self.base = off;
            self.filled = size;
        }
        let start = (off - self.base) as usize;
        Ok(self.buf.get(start..start + want).unwrap_or_default())
    }
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

/// Decodes the frame at `cur.offset` of a segment. `is_last` enables torn-write
/// classification, which etcd applies only to the last segment.
pub fn step<'a, S: Source>(
    src: &'a mut S,
    segment: SegmentId,
    cur: &mut Cursor,
    is_last: bool,
) -> std::io::Result<Step<'a>> {
    let off = cur.offset;
    let len = src.len();
    let damage = |kind, reason| {
        Ok(Step::Damage(Damage {
            segment,
            offset: off,
            kind,
            reason,
        }))
    };
    let torn_or_corrupt = if is_last {
        DamageKind::Torn
    } else {
        DamageKind::Corrupt
    };
    let remaining = len.saturating_sub(off);
    if remaining == 0 {
        return Ok(Step::End { offset: off });
    }
    let mut w = [0u8; 8];
    {
        let word_bytes = src.get(off, FRAME_HEADER_LEN)?;
        if word_bytes.len() < 8 {
            return damage(
                torn_or_corrupt,
                DamageReason::ShortLengthWord {
                    available: remaining,
                },
            );
        }
        w.copy_from_slice(word_bytes);
    }
    let word = u64::from_le_bytes(w);
    if word == 0 {
        return Ok(Step::End { offset: off });
    }
    let (rec_len, pad) = decode_length_word(word);
    let need = rec_len + pad; // < 2^56 + 8, no overflow
    let available = remaining - FRAME_HEADER_LEN;
    if need > available {
        return damage(
            torn_or_corrupt,
            DamageReason::ShortRecord {
                needed: need,
                available,
            },
        );
    }
    let framed = src.get(off + FRAME_HEADER_LEN, need)?;
    let payload = framed.get(..rec_len as usize).unwrap_or_default();
    let torn_if = |reason| {
        let kind = if is_last && has_zero_sector(framed, off + FRAME_HEADER_LEN) {
            DamageKind::Torn
        } else {
            DamageKind::Corrupt
        };
        Ok(Step::Damage(Damage {
            segment,
            offset: off,
            kind,
            reason,
        }))
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
    Ok(Step::Record(DecodedRecord {
        segment,
        offset: off,
        frame_len,
        rec_len,
        record: rec,
    }))
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

/// Offset of the first non-zero byte of `src` at or after `off`.
fn first_nonzero_from<S: Source>(src: &mut S, mut off: u64) -> std::io::Result<Option<u64>> {
    while off < src.len() {
        let chunk = src.get(off, WINDOW as u64)?;
        if chunk.is_empty() {
            break;
        }
        if let Some(p) = first_nonzero(chunk) {
            return Ok(Some(off + p as u64));
        }
        off += chunk.len() as u64;
    }
    Ok(None)
}

/// Decodes in-memory segments in order (the CRC chain continues across them).
pub fn decode_buffers<V: Visitor>(
    segments: &[(SegmentId, &[u8])],
    visitor: &mut V,
) -> Result<DecodeEnd, Damage> {
    let ids: Vec<SegmentId> = segments.iter().map(|(id, _)| *id).collect();
    drive(
        &ids,
        |i| Ok::<_, std::convert::Infallible>(segments.get(i).map(|(_, b)| *b).unwrap_or_default()),
        visitor,
    )
    .map_err(|e| match e {
        DriveError::Damage(d) => d,
        DriveError::Load(never) => match never {},
        DriveError::Io(i, _) => Damage {
            // Slices never fail to read.
            segment: ids.get(i).copied().unwrap_or_default(),
            offset: 0,
            kind: DamageKind::Corrupt,
            reason: DamageReason::Unmarshal("read error".into()),
        },
    })
}

/// Decodes the given segments of `wal_dir`, reading each through a window buffer.
pub fn decode_segments<V: Visitor>(
    fs: &dyn Fs,
    wal_dir: &Path,
    segments: &[SegmentId],
    visitor: &mut V,
) -> Result<DecodeEnd, WalError> {
    let path = |i: usize| wal_dir.join(segments.get(i).copied().unwrap_or_default().file_name());
    drive(
        segments,
        |i| {
            let p = path(i);
            FileSource::open(fs, &p).map_err(|e| WalError::io(p, e))
        },
        visitor,
    )
    .map_err(|e| match e {
        DriveError::Damage(damage) => WalError::Damaged {
            dir: wal_dir.to_path_buf(),
            damage,
        },
        DriveError::Load(e) => e,
        DriveError::Io(i, e) => WalError::io(path(i), e),
    })
}

enum DriveError<E> {
    Damage(Damage),
    Load(E),
    Io(usize, std::io::Error),
}

fn drive<V: Visitor, E, S: Source>(
    ids: &[SegmentId],
    mut load: impl FnMut(usize) -> Result<S, E>,
    visitor: &mut V,
) -> Result<DecodeEnd, DriveError<E>> {
    let mut crc = 0u32;
    let mut end = DecodeEnd {
        tail: Tail::Clean,
        last_segment: ids.first().copied().unwrap_or_default(),
        last_valid_offset: 0,
        crc: 0,
    };
    for (i, &id) in ids.iter().enumerate() {
        let mut src = load(i).map_err(DriveError::Load)?;
        let is_last = i + 1 == ids.len();
        visitor.segment_start(id, src.len());
        let mut cur = Cursor { offset: 0, crc };
        loop {
            match step(&mut src, id, &mut cur, is_last).map_err(|e| DriveError::Io(i, e))? {
                Step::Record(rec) => visitor.record(&rec).map_err(DriveError::Damage)?,
                Step::End { offset } => {
                    let stale = if visitor.wants_stale_scan() {
                        first_nonzero_from(&mut src, offset).map_err(|e| DriveError::Io(i, e))?
                    } else {
                        None
                    };
                    visitor.segment_end(id, offset, stale);
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

/// Iterates over the records of a WAL directory, reading through a window buffer. After
/// the last record it yields nothing; [`WalIter::end`] then tells how decoding ended.
/// A corrupt frame is yielded as an error and ends the iteration.
pub struct WalIter<'f> {
    fs: &'f dyn Fs,
    dir: std::path::PathBuf,
    segments: Vec<SegmentId>,
    pos: usize,
    src: Option<FileSource>,
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
            src: None,
            cur: Cursor::default(),
            end: None,
            failed: false,
        }
    }

    /// How decoding ended (`None` until the iterator returned `None` without error).
    pub fn end(&self) -> Option<&DecodeEnd> {
        self.end.as_ref()
    }

    fn fail(&mut self, e: WalError) -> Option<Result<WalRecord, WalError>> {
        self.failed = true;
        Some(Err(e))
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
            let p = self.dir.join(id.file_name());
            if self.src.is_none() {
                match FileSource::open(self.fs, &p) {
                    Ok(s) => self.src = Some(s),
                    Err(e) => return self.fail(WalError::io(p, e)),
                }
                self.cur.offset = 0;
            }
            let is_last = self.pos + 1 == self.segments.len();
            let src = self.src.as_mut()?;
            let step = match step(src, id, &mut self.cur, is_last) {
                Ok(s) => s,
                Err(e) => return self.fail(WalError::io(p, e)),
            };
            match step {
                Step::Record(r) => return Some(Ok(WalRecord::from_decoded(&r))),
                Step::End { offset } => {
                    self.src = None;
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
                    let dir = self.dir.clone();
                    return self.fail(WalError::Damaged { dir, damage: d });
                }
            }
        }
    }
}
