//! File-system access behind a small trait so tests can inject ENOSPC, EIO, short writes
//! and failed fsyncs into the WAL writer, the `.snap` writer and repair.

use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// An open file: positional IO only, so a handle is never in an unknown seek state.
pub trait File: Send {
    fn len(&self) -> io::Result<u64>;
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<usize>;
    fn set_len(&mut self, len: u64) -> io::Result<()>;
    /// fsync (data and metadata).
    fn sync(&mut self) -> io::Result<()>;
    /// Reserve `len` bytes and make the file at least that long (etcd's
    /// `fileutil.Preallocate(f, size, extendFile=true)`).
    fn preallocate(&mut self, len: u64) -> io::Result<()>;

    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Loops over short writes; a zero-length write is an error, not a hang.
    fn write_all_at(&mut self, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            let n = self.write_at(buf, offset)?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::WriteZero, "write returned 0"));
            }
            buf = buf.get(n..).unwrap_or_default();
            offset += n as u64;
        }
        Ok(())
    }

    /// Fills `buf` or fails with `UnexpectedEof`.
    fn read_exact_at(&self, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            let n = self.read_at(buf, offset)?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "short read"));
            }
            buf = std::mem::take(&mut buf).get_mut(n..).unwrap_or_default();
            offset += n as u64;
        }
        Ok(())
    }
}

/// Directory-level operations.
pub trait Fs: Send + Sync {
    /// Names of the entries of `dir` (unsorted).
    fn read_dir(&self, dir: &Path) -> io::Result<Vec<String>>;
    fn exists(&self, path: &Path) -> io::Result<bool>;
    fn open_read(&self, path: &Path) -> io::Result<Box<dyn File>>;
    fn open_rw(&self, path: &Path) -> io::Result<Box<dyn File>>;
    /// Creates a new file (fails if it exists) with the given permission bits.
    fn create_new(&self, path: &Path, mode: u32) -> io::Result<Box<dyn File>>;
    fn create_dir_all(&self, dir: &Path, mode: u32) -> io::Result<()>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    /// fsync a directory so that creations, renames and removals in it are durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;

    /// Whole file into memory (segments are at most ~64 MB; `.snap` files are small).
    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        let f = self.open_read(path)?;
        let len = usize::try_from(f.len()?)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "file too large"))?;
        let mut buf = vec![0u8; len];
        f.read_exact_at(&mut buf, 0)?;
        Ok(buf)
    }
}

/// The real file system.
#[derive(Clone, Copy, Debug, Default)]
pub struct OsFs;

#[derive(Debug)]
struct OsFile(fs::File);

impl File for OsFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.0.read_at(buf, offset)
    }
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<usize> {
        self.0.write_at(buf, offset)
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn sync(&mut self) -> io::Result<()> {
        self.0.sync_all()
    }
    fn preallocate(&mut self, len: u64) -> io::Result<()> {
        if len == 0 {
            return Ok(());
        }
        // etcd falls back to extending with truncate where fallocate is unsupported.
        let size = len;
        match rustix::fs::fallocate(&self.0, rustix::fs::FallocateFlags::empty(), 0, size) {
            Ok(()) => Ok(()),
            Err(e) if e == rustix::io::Errno::OPNOTSUPP || e == rustix::io::Errno::NOSYS => {
                if self.len()? < len {
                    self.0.set_len(len)?;
                }
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }
}

impl Fs for OsFs {
    fn read_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for e in fs::read_dir(dir)? {
            let e = e?;
            // Names that are not UTF-8 cannot be WAL or snap names; keep them visible
            // as lossy strings so callers can report them.
            out.push(e.file_name().to_string_lossy().into_owned());
        }
        Ok(out)
    }
    fn exists(&self, path: &Path) -> io::Result<bool> {
        path.try_exists()
    }
    fn open_read(&self, path: &Path) -> io::Result<Box<dyn File>> {
        Ok(Box::new(OsFile(fs::File::open(path)?)))
    }
    fn open_rw(&self, path: &Path) -> io::Result<Box<dyn File>> {
        Ok(Box::new(OsFile(
            OpenOptions::new().read(true).write(true).open(path)?,
        )))
    }
    fn create_new(&self, path: &Path, mode: u32) -> io::Result<Box<dyn File>> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(path)?;
        Ok(Box::new(OsFile(f)))
    }
    fn create_dir_all(&self, dir: &Path, mode: u32) -> io::Result<()> {
        fs::DirBuilder::new().recursive(true).mode(mode).create(dir)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        match fs::remove_dir_all(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            r => r,
        }
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        fs::File::open(dir)?.sync_all()
    }
}

/// Faults a [`FaultFs`] injects. Counters are shared by all files it opens.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Total bytes that may still be written; a write beyond fails with ENOSPC.
    pub write_budget: Option<u64>,
    /// Every write transfers at most this many bytes (exercises short-write loops).
    pub max_write_chunk: Option<usize>,
    /// File fsyncs fail with EIO.
    pub fail_file_sync: bool,
    /// Directory fsyncs fail with EIO.
    pub fail_dir_sync: bool,
    /// Renames fail with EIO.
    pub fail_rename: bool,
    /// `set_len` (truncate) fails with EIO.
    pub fail_set_len: bool,
    /// Preallocation fails with ENOSPC.
    pub fail_preallocate: bool,
}

/// A wrapper around [`OsFs`] that injects [`Faults`] (for tests).
#[derive(Clone, Debug, Default)]
pub struct FaultFs {
    faults: Arc<Mutex<Faults>>,
}

impl FaultFs {
    pub fn new(faults: Faults) -> Self {
        FaultFs {
            faults: Arc::new(Mutex::new(faults)),
        }
    }
    /// Changes the faults for subsequent operations.
    pub fn set(&self, faults: Faults) {
        *lock(&self.faults) = faults;
    }
    fn get(&self) -> Faults {
        lock(&self.faults).clone()
    }
}

fn lock(m: &Mutex<Faults>) -> std::sync::MutexGuard<'_, Faults> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn eio(what: &str) -> io::Error {
    io::Error::other(format!("injected EIO: {what}"))
}

fn enospc() -> io::Error {
    io::Error::from_raw_os_error(28)
}

struct FaultFile {
    inner: Box<dyn File>,
    faults: Arc<Mutex<Faults>>,
}

impl File for FaultFile {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.inner.read_at(buf, offset)
    }
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<usize> {
        let mut n = buf.len();
        {
            let mut f = lock(&self.faults);
            if let Some(max) = f.max_write_chunk {
                n = n.min(max.max(1));
            }
            if let Some(budget) = f.write_budget.as_mut() {
                if *budget == 0 {
                    return Err(enospc());
                }
                n = n.min(usize::try_from(*budget).unwrap_or(usize::MAX));
                *budget -= n as u64;
            }
        }
        self.inner.write_at(buf.get(..n).unwrap_or(buf), offset)
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        if lock(&self.faults).fail_set_len {
            return Err(eio("set_len"));
        }
        self.inner.set_len(len)
    }
    fn sync(&mut self) -> io::Result<()> {
        if lock(&self.faults).fail_file_sync {
            return Err(eio("fsync"));
        }
        self.inner.sync()
    }
    fn preallocate(&mut self, len: u64) -> io::Result<()> {
        if lock(&self.faults).fail_preallocate {
            return Err(enospc());
        }
        self.inner.preallocate(len)
    }
}

impl FaultFs {
    fn wrap(&self, f: Box<dyn File>) -> Box<dyn File> {
        Box::new(FaultFile {
            inner: f,
            faults: self.faults.clone(),
        })
    }
}

impl Fs for FaultFs {
    fn read_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        OsFs.read_dir(dir)
    }
    fn exists(&self, path: &Path) -> io::Result<bool> {
        OsFs.exists(path)
    }
    fn open_read(&self, path: &Path) -> io::Result<Box<dyn File>> {
        Ok(self.wrap(OsFs.open_read(path)?))
    }
    fn open_rw(&self, path: &Path) -> io::Result<Box<dyn File>> {
        Ok(self.wrap(OsFs.open_rw(path)?))
    }
    fn create_new(&self, path: &Path, mode: u32) -> io::Result<Box<dyn File>> {
        Ok(self.wrap(OsFs.create_new(path, mode)?))
    }
    fn create_dir_all(&self, dir: &Path, mode: u32) -> io::Result<()> {
        OsFs.create_dir_all(dir, mode)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        if self.get().fail_rename {
            return Err(eio("rename"));
        }
        OsFs.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        OsFs.remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        OsFs.remove_dir_all(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        if self.get().fail_dir_sync {
            return Err(eio("fsync dir"));
        }
        OsFs.sync_dir(dir)
    }
}
