//! Writing WAL segments as etcd's `wal.Create` / `Save` / `SaveSnapshot` / `cut` do:
//! rolling CRC-32C, segment naming, cut at 64,000,000 bytes, preallocation, fsync of
//! files and directories, atomic creation through `<waldir>.tmp`.

use std::path::{Path, PathBuf};

use prost::Message;

use crate::error::WalError;
use crate::proto::{Entry, HardState, WalSnapshot};
use crate::record::{RecordType, encode_frame};
use crate::segment::SEGMENT_SIZE_BYTES;
use crate::segment_id::SegmentId;
use crate::storage::{File, Fs};

/// Permission bits of WAL segments (etcd's `PrivateFileMode`).
pub const WAL_FILE_MODE: u32 = 0o600;
/// Permission bits of directories etcd creates (`PrivateDirMode`).
pub const DIR_MODE: u32 = 0o700;

/// Frames records into a buffer, carrying the rolling CRC-32C.
#[derive(Clone, Debug, Default)]
pub struct Encoder {
    crc: u32,
    buf: Vec<u8>,
}

impl Encoder {
    /// Starts a chain at `prev_crc` (0 for the first segment, else the CRC at the end of
    /// the previous segment).
    pub fn new(prev_crc: u32) -> Self {
        Encoder {
            crc: prev_crc,
            buf: Vec::new(),
        }
    }

    /// The running CRC after everything appended so far.
    pub fn crc(&self) -> u32 {
        self.crc
    }

    /// Appends a record. A `crc` record stores the running CRC and ignores `data`;
    /// every other record extends the CRC with its data and stores the result.
    pub fn append(&mut self, rec_type: RecordType, data: Option<&[u8]>) {
        if rec_type == RecordType::Crc {
            encode_frame(&mut self.buf, rec_type as i64, self.crc, None);
        } else {
            self.crc = crc32c::crc32c_append(self.crc, data.unwrap_or_default());
            encode_frame(&mut self.buf, rec_type as i64, self.crc, data);
        }
    }

    pub fn append_entry(&mut self, e: &Entry) {
        self.append(RecordType::Entry, Some(&e.encode_to_vec()));
    }

    pub fn append_state(&mut self, s: &HardState) {
        self.append(RecordType::State, Some(&s.encode_to_vec()));
    }

    pub fn append_snapshot(&mut self, s: &WalSnapshot) {
        self.append(RecordType::Snapshot, Some(&s.encode_to_vec()));
    }

    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Takes the framed bytes, keeping the CRC.
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }
}

/// Writer settings.
#[derive(Clone, Copy, Debug)]
pub struct WriterOptions {
    /// Cut threshold and preallocation size.
    pub segment_size: u64,
    /// Preallocate segments to `segment_size` (etcd does; a WAL without it is accepted).
    pub preallocate: bool,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            segment_size: SEGMENT_SIZE_BYTES,
            preallocate: true,
        }
    }
}

/// An open WAL for appending.
pub struct WalWriter<'f> {
    fs: &'f dyn Fs,
    dir: PathBuf,
    opts: WriterOptions,
    segment: SegmentId,
    tail: Box<dyn File>,
    offset: u64,
    crc: u32,
    metadata: Vec<u8>,
    state: HardState,
    last_index: u64,
    cuts: u64,
    /// Set after a failed write or fsync: the on-disk state is uncertain, so (like etcd,
    /// which panics) the writer refuses further work.
    failed: bool,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> WalError + '_ {
    move |e| WalError::io(path, e)
}

impl<'f> WalWriter<'f> {
    /// etcd's `wal.Create`: builds `<wal_dir>.tmp/0000000000000000-0000000000000000.wal`
    /// with `crc(0)`, `metadata`, `snapshot{0,0}`, fsyncs it, renames the directory to
    /// `wal_dir` and fsyncs the parent. Fails if `wal_dir` already holds a segment.
    pub fn create(
        fs: &'f dyn Fs,
        wal_dir: &Path,
        metadata: &[u8],
        opts: WriterOptions,
    ) -> Result<Self, WalError> {
        if fs.exists(wal_dir).map_err(io_err(wal_dir))? {
            let names = fs.read_dir(wal_dir).map_err(io_err(wal_dir))?;
            if names.iter().any(|n| SegmentId::parse(n).is_some()) {
                return Err(WalError::Exists {
                    path: wal_dir.to_path_buf(),
                });
            }
        }
        let parent = wal_dir
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut tmp_name = wal_dir.as_os_str().to_owned();
        tmp_name.push(".tmp");
        let tmp_dir = PathBuf::from(tmp_name);
        fs.remove_dir_all(&tmp_dir).map_err(io_err(&tmp_dir))?;
        let result = Self::create_in(fs, wal_dir, parent, &tmp_dir, metadata, opts);
        if result.is_err() {
            let _ = fs.remove_dir_all(&tmp_dir);
        }
        result
    }

    fn create_in(
        fs: &'f dyn Fs,
        wal_dir: &Path,
        parent: &Path,
        tmp_dir: &Path,
        metadata: &[u8],
        opts: WriterOptions,
    ) -> Result<Self, WalError> {
        fs.create_dir_all(tmp_dir, DIR_MODE)
            .map_err(io_err(tmp_dir))?;
        let segment = SegmentId { seq: 0, index: 0 };
        let path = tmp_dir.join(segment.file_name());
        let mut f = fs.create_new(&path, WAL_FILE_MODE).map_err(io_err(&path))?;
        if opts.preallocate {
            f.preallocate(opts.segment_size).map_err(io_err(&path))?;
        }
        let mut enc = Encoder::new(0);
        enc.append(RecordType::Crc, None);
        enc.append(RecordType::Metadata, Some(metadata));
        enc.append_snapshot(&WalSnapshot::default());
        let bytes = enc.take();
        f.write_all_at(&bytes, 0).map_err(io_err(&path))?;
        f.sync().map_err(io_err(&path))?;
        fs.sync_dir(tmp_dir).map_err(io_err(tmp_dir))?;
        // rename(2) replaces an empty directory and fails on a non-empty one, so an
        // existing `wal_dir` with foreign files is never deleted.
        fs.rename(tmp_dir, wal_dir).map_err(io_err(wal_dir))?;
        fs.sync_dir(parent).map_err(io_err(parent))?;
        Ok(WalWriter {
            fs,
            dir: wal_dir.to_path_buf(),
            opts,
            segment,
            tail: f,
            offset: bytes.len() as u64,
            crc: enc.crc(),
            metadata: metadata.to_vec(),
            state: HardState::default(),
            last_index: 0,
            cuts: 0,
            failed: false,
        })
    }

    /// The segment being written.
    pub fn segment(&self) -> SegmentId {
        self.segment
    }

    /// Bytes written to the current segment.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The running CRC.
    pub fn crc(&self) -> u32 {
        self.crc
    }

    fn tail_path(&self) -> PathBuf {
        self.dir.join(self.segment.file_name())
    }

    fn check(&self) -> Result<(), WalError> {
        if self.failed {
            return Err(WalError::Invalid {
                path: self.tail_path(),
                what: "an earlier write or fsync failed; reopen the WAL".into(),
            });
        }
        Ok(())
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), WalError> {
        self.check()?;
        let p = self.tail_path();
        if let Err(e) = self.tail.write_all_at(bytes, self.offset) {
            // A partly written record whose sectors are not all zero would read as
            // corruption, not as a torn write; cut it off (best effort).
            self.failed = true;
            let _ = self.tail.set_len(self.offset);
            let _ = self.tail.sync();
            return Err(WalError::io(p, e));
        }
        self.offset += bytes.len() as u64;
        Ok(())
    }

    /// fsync the current segment.
    pub fn sync(&mut self) -> Result<(), WalError> {
        self.check()?;
        let p = self.tail_path();
        self.tail.sync().map_err(|e| {
            self.failed = true;
            WalError::io(p, e)
        })
    }

    /// etcd's `Save`: the entries, then the HardState (unless empty); fsync when raft
    /// requires it; cut a new segment once the current one reached the segment size.
    pub fn save(&mut self, state: &HardState, entries: &[Entry]) -> Result<(), WalError> {
        if state.is_empty() && entries.is_empty() {
            return Ok(());
        }
        let must_sync =
            !entries.is_empty() || state.vote != self.state.vote || state.term != self.state.term;
        let mut enc = Encoder::new(self.crc);
        for e in entries {
            enc.append_entry(e);
            self.last_index = e.index;
        }
        if !state.is_empty() {
            self.state = *state;
            enc.append_state(state);
        }
        let bytes = enc.take();
        self.write(&bytes)?;
        self.crc = enc.crc();
        if self.offset < self.opts.segment_size {
            if must_sync {
                self.sync()?;
            }
            return Ok(());
        }
        self.cut()
    }

    /// etcd's `SaveSnapshot`: one snapshot record, fsync.
    pub fn save_snapshot(&mut self, snap: &WalSnapshot) -> Result<(), WalError> {
        let mut enc = Encoder::new(self.crc);
        enc.append_snapshot(snap);
        let bytes = enc.take();
        self.write(&bytes)?;
        self.crc = enc.crc();
        if self.last_index < snap.index {
            self.last_index = snap.index;
        }
        self.sync()
    }

    /// etcd's `cut`: truncate the current segment at its end, start
    /// `<seq+1>-<last index+1>.wal` (built under a `.tmp` name, preallocated) with
    /// `crc`, `metadata`, `state`, fsync it, rename it, fsync the directory.
    fn cut(&mut self) -> Result<(), WalError> {
        let r = self.cut_inner();
        if r.is_err() {
            self.failed = true;
        }
        r
    }

    fn cut_inner(&mut self) -> Result<(), WalError> {
        let old = self.tail_path();
        self.tail.set_len(self.offset).map_err(io_err(&old))?;
        self.sync()?;
        let next = SegmentId {
            seq: self.segment.seq + 1,
            index: self.last_index + 1,
        };
        let tmp = self.dir.join(format!("{}.tmp", self.cuts % 2));
        self.cuts += 1;
        match self.fs.remove_file(&tmp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(WalError::io(tmp, e)),
            _ => {}
        }
        let mut f = self
            .fs
            .create_new(&tmp, WAL_FILE_MODE)
            .map_err(io_err(&tmp))?;
        if self.opts.preallocate {
            f.preallocate(self.opts.segment_size)
                .map_err(io_err(&tmp))?;
        }
        let mut enc = Encoder::new(self.crc);
        enc.append(RecordType::Crc, None);
        enc.append(RecordType::Metadata, Some(&self.metadata));
        if !self.state.is_empty() {
            enc.append_state(&self.state);
        }
        let bytes = enc.take();
        f.write_all_at(&bytes, 0).map_err(io_err(&tmp))?;
        f.sync().map_err(io_err(&tmp))?;
        let path = self.dir.join(next.file_name());
        self.fs.rename(&tmp, &path).map_err(io_err(&path))?;
        self.fs.sync_dir(&self.dir).map_err(io_err(&self.dir))?;
        self.tail = f;
        self.segment = next;
        self.offset = bytes.len() as u64;
        self.crc = enc.crc();
        Ok(())
    }

    /// fsync and close.
    pub fn close(mut self) -> Result<(), WalError> {
        self.sync()
    }
}
