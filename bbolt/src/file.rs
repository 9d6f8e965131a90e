//! The IO seam: every byte this crate writes (and the non-mapped reads) goes through
//! [`Storage`], so tests can substitute [`FaultyStorage`] and observe how commits behave when
//! the disk fails (ENOSPC, EIO, short writes, failed fsync, a crash after N bytes).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Mutex;

/// Positioned file IO. Implementations must be usable from several threads.
#[allow(clippy::len_without_is_empty)]
pub trait Storage: Send + Sync {
    /// Reads exactly `buf.len()` bytes at `offset`.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Writes all of `buf` at `offset`, extending the file when needed.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    fn len(&self) -> io::Result<u64>;
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Makes written data durable (fdatasync).
    fn sync_data(&self) -> io::Result<()>;
}

/// [`Storage`] on a real file.
#[derive(Debug)]
pub struct FileStorage {
    file: File,
}

impl FileStorage {
    pub fn new(file: File) -> Self {
        FileStorage { file }
    }

    pub fn file(&self) -> &File {
        &self.file
    }
}

impl Storage for FileStorage {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}

/// A fault to inject, see [`FaultyStorage`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Every write after the first `after_writes` successful writes fails with ENOSPC.
    NoSpace { after_writes: usize },
    /// Every write after `after_writes` writes fails with EIO.
    WriteEio { after_writes: usize },
    /// The write number `nth` (0-based) stores only half of its bytes and then fails.
    ShortWrite { nth: usize },
    /// The sync number `nth` (0-based) and every later one fails with EIO.
    SyncFails { nth: usize },
    /// Simulated power loss: after `bytes` bytes in total have been written, the rest of that
    /// write and everything after it is silently dropped, and every call fails from then on.
    CrashAfterBytes { bytes: u64 },
}

#[derive(Debug, Default)]
struct FaultState {
    writes: usize,
    syncs: usize,
    bytes: u64,
    crashed: bool,
}

/// A [`Storage`] wrapper that fails on purpose. For tests.
pub struct FaultyStorage<S> {
    inner: S,
    fault: Fault,
    state: Mutex<FaultState>,
}

impl<S: Storage> FaultyStorage<S> {
    pub fn new(inner: S, fault: Fault) -> Self {
        FaultyStorage {
            inner,
            fault,
            state: Mutex::new(FaultState::default()),
        }
    }

    /// True once a [`Fault::CrashAfterBytes`] budget was used up.
    pub fn crashed(&self) -> bool {
        self.state.lock().map(|s| s.crashed).unwrap_or(true)
    }

    fn lock(&self) -> io::Result<std::sync::MutexGuard<'_, FaultState>> {
        self.state
            .lock()
            .map_err(|_| io::Error::other("fault state poisoned"))
    }
}

fn crashed_err() -> io::Error {
    io::Error::other("simulated crash: device gone")
}

impl<S: Storage> Storage for FaultyStorage<S> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        if self.lock()?.crashed {
            return Err(crashed_err());
        }
        self.inner.read_at(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut st = self.lock()?;
        if st.crashed {
            return Err(crashed_err());
        }
        let n = st.writes;
        st.writes += 1;
        match self.fault {
            Fault::NoSpace { after_writes } if n >= after_writes => {
                return Err(io::Error::from_raw_os_error(28));
            }
            Fault::WriteEio { after_writes } if n >= after_writes => {
                return Err(io::Error::from_raw_os_error(5));
            }
            Fault::ShortWrite { nth } if n == nth => {
                let half = buf.len() / 2;
                self.inner.write_at(&buf[..half], offset)?;
                return Err(io::Error::new(io::ErrorKind::WriteZero, "short write"));
            }
            Fault::CrashAfterBytes { bytes } => {
                let left = bytes.saturating_sub(st.bytes);
                if (buf.len() as u64) > left {
                    let keep = left as usize;
                    self.inner.write_at(&buf[..keep], offset)?;
                    st.bytes = bytes;
                    st.crashed = true;
                    return Err(crashed_err());
                }
                st.bytes += buf.len() as u64;
            }
            _ => {}
        }
        self.inner.write_at(buf, offset)
    }

    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        if self.lock()?.crashed {
            return Err(crashed_err());
        }
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut st = self.lock()?;
        if st.crashed {
            return Err(crashed_err());
        }
        let n = st.syncs;
        st.syncs += 1;
        if let Fault::SyncFails { nth } = self.fault
            && n >= nth
        {
            return Err(io::Error::from_raw_os_error(5));
        }
        self.inner.sync_data()
    }
}

/// A read-only shared mapping of a database file. Pages touched through the mapping count
/// towards the process's resident memory, so readers report how many bytes they touched and
/// the mapping is told to drop its resident pages (`MADV_DONTNEED`) whenever that exceeds a
/// budget. Dropping is safe for a shared read-only file mapping: the next access faults the
/// same bytes back in from the page cache.
pub struct MappedFile {
    map: Option<memmap2::Mmap>,
    touched: std::sync::atomic::AtomicUsize,
    /// The fault-around block of the last [`touch_slice`](Self::touch_slice), +1 (0 = none).
    last_block: std::sync::atomic::AtomicUsize,
    budget: usize,
}

/// A read fault on a file mapping maps up to this many bytes around the faulting page (Linux
/// `fault_around_bytes`, 64 KiB by default) when they are in the page cache, and all of them
/// count in RSS: a reader that touches one page of a block is charged the whole block.
const FAULT_AROUND: usize = 64 << 10;

impl std::fmt::Debug for MappedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MappedFile")
            .field("len", &self.bytes().len())
            .field("budget", &self.budget)
            .finish()
    }
}

impl MappedFile {
    /// Maps all of `file`. `budget` = bytes of touched pages after which resident pages are
    /// dropped (0 = never drop).
    pub fn map(file: &File, budget: usize) -> io::Result<MappedFile> {
        let len = file.metadata()?.len();
        let map = if len == 0 {
            None
        } else {
            // SAFETY: the mapping is read-only; this crate never truncates a database file,
            // and other writers only append or write pages that no reader of this mapping
            // follows (copy-on-write). A file shrunk by a foreign process would fault (SIGBUS),
            // which is the documented limit of mapped reads (as for Go's bbolt).
            let m = unsafe { memmap2::MmapOptions::new().map(file)? };
            #[cfg(unix)]
            let _ = m.advise(memmap2::Advice::Random);
            Some(m)
        };
        Ok(MappedFile {
            map,
            touched: std::sync::atomic::AtomicUsize::new(0),
            last_block: std::sync::atomic::AtomicUsize::new(0),
            budget,
        })
    }

    #[inline]
    pub fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }

    /// Records that `n` more bytes were read through the map.
    #[inline]
    pub fn touch(&self, n: usize) {
        if self.budget == 0 {
            return;
        }
        use std::sync::atomic::Ordering::Relaxed;
        let t = self.touched.fetch_add(n, Relaxed) + n;
        if t > self.budget {
            self.touched.store(0, Relaxed);
            self.release();
        }
    }

    /// Records that `s`, a slice of this mapping, was read. Charges every fault-around block
    /// the slice enters, except the one the previous call ended in: a sequential scan is
    /// charged each block once, random reads a whole block each.
    #[inline]
    pub fn touch_slice(&self, s: &[u8]) {
        if self.budget == 0 || s.is_empty() {
            return;
        }
        use std::sync::atomic::Ordering::Relaxed;
        let base = self.bytes().as_ptr() as usize;
        let start = (s.as_ptr() as usize).wrapping_sub(base);
        let (first, last) = (start / FAULT_AROUND, (start + s.len() - 1) / FAULT_AROUND);
        let prev = self.last_block.swap(last + 1, Relaxed);
        let mut blocks = last - first + 1;
        if prev == first + 1 {
            blocks -= 1;
        }
        if blocks > 0 {
            self.touch(blocks * FAULT_AROUND);
        }
    }

    /// Drops every resident page of the mapping.
    pub fn release(&self) {
        self.last_block
            .store(0, std::sync::atomic::Ordering::Relaxed);
        #[cfg(target_os = "linux")]
        if let Some(m) = &self.map {
            // SAFETY: MADV_DONTNEED on a shared, read-only file mapping only discards the
            // page-table entries; later reads fault in the unchanged file contents.
            let _ = unsafe { m.unchecked_advise(memmap2::UncheckedAdvice::DontNeed) };
        }
    }
}
