//! Opening and creating database files, choosing the meta, handing out transactions.

use std::fs::OpenOptions as FsOpenOptions;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::file::{FileStorage, MappedFile, Storage};
use crate::freelist::Freelist;
use crate::meta::{self, Meta};
use crate::page::{self, FREELIST_FLAG, LEAF_FLAG};
use crate::tx::{Current, ReadTx, Shared, TxConfig, WriteTx, WriterState};

/// How pages freed by write transactions are handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FreeSpace {
    /// Like bbolt: load the free set (from the freelist page, or by walking every tree when
    /// the file has none) at the first write transaction and reuse free pages.
    #[default]
    Reuse,
    /// Allocate only at the end of the file and never walk the tree. Commits write
    /// `freelist = NOFREELIST`, which is valid: bbolt (and etcd) rebuild the free set of such
    /// files when they open them. For appending to big files with little memory.
    AppendOnly,
}

/// Options for [`Db::open`].
#[derive(Debug, Clone)]
pub struct OpenOptions {
    pub read_only: bool,
    /// Create the file (4-page initial image, like Go's `DB.init`) when it is missing or
    /// empty.
    pub create: bool,
    /// Page size of a new file.
    pub page_size: u32,
    /// Write an array freelist page at every commit (bbolt's default). `false` writes
    /// `NOFREELIST` like etcd on Linux (`NoFreelistSync`). Ignored with
    /// [`FreeSpace::AppendOnly`].
    pub sync_freelist: bool,
    pub free_space: FreeSpace,
    /// Skip fdatasync (tests and throwaway files only: a crash can corrupt the file).
    pub no_sync: bool,
    /// Bytes of mapped pages a reader may touch before they are dropped from resident memory
    /// (0 = never drop).
    pub mapped_budget: usize,
    /// Take a `flock` (shared for read-only, exclusive otherwise) like bbolt does.
    pub lock: bool,
    /// How long to wait for the lock before failing with [`Error::Locked`]. A short wait
    /// also covers locks held for a moment by a child process that inherited the descriptor
    /// between fork and exec.
    pub lock_timeout: std::time::Duration,
    /// Bytes of a finished write transaction's buffers (its write-combining buffer, then its
    /// node-heap chunks) kept for the next one, which then need not map and fault in fresh
    /// memory: much of a small commit's cost. They stay resident between transactions, so
    /// 0 (free them) unless many transactions follow each other.
    pub keep_buffers: usize,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            read_only: false,
            create: false,
            page_size: 4096,
            sync_freelist: false,
            free_space: FreeSpace::Reuse,
            no_sync: false,
            mapped_budget: 8 << 20,
            lock: true,
            lock_timeout: std::time::Duration::from_secs(2),
            keep_buffers: 0,
        }
    }
}

impl OpenOptions {
    pub fn read_only() -> Self {
        OpenOptions {
            read_only: true,
            ..Default::default()
        }
    }
}

/// An open bbolt database file.
pub struct Db {
    shared: Shared,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("path", &self.shared.path)
            .field("page_size", &self.shared.ps)
            .finish()
    }
}

fn io_err<'p>(
    path: &'p Path,
    op: &'static str,
    offset: u64,
) -> impl FnOnce(io::Error) -> Error + 'p {
    move |source| Error::Io {
        path: path.to_path_buf(),
        op,
        offset,
        source,
    }
}

/// The 4-page image of a new database: two metas, an empty freelist, an empty root leaf.
pub fn initial_image(ps: u32) -> Vec<u8> {
    let p = ps as usize;
    let mut buf = Vec::with_capacity(4 * p);
    for txid in 0..2u64 {
        buf.extend_from_slice(&Meta::new(ps, 3, 2, 4, txid).encode_page(txid, p));
    }
    let mut fl = vec![0u8; p];
    page::put_header(&mut fl, 2, FREELIST_FLAG, 0, 0);
    buf.extend_from_slice(&fl);
    let mut leaf = vec![0u8; p];
    page::put_header(&mut leaf, 3, LEAF_FLAG, 0, 0);
    buf.extend_from_slice(&leaf);
    buf
}

impl Db {
    pub fn open(path: impl AsRef<Path>, opts: OpenOptions) -> Result<Db> {
        Db::open_with(path, opts, |s| Arc::new(s))
    }

    /// Like [`open`](Self::open), with every write going through `wrap(file)` (for fault
    /// injection in tests).
    pub fn open_with(
        path: impl AsRef<Path>,
        opts: OpenOptions,
        wrap: impl FnOnce(FileStorage) -> Arc<dyn Storage>,
    ) -> Result<Db> {
        let path = path.as_ref().to_path_buf();
        let file = FsOpenOptions::new()
            .read(true)
            .write(!opts.read_only)
            .create(opts.create && !opts.read_only)
            .truncate(false)
            .open(&path)
            .map_err(io_err(&path, "open", 0))?;
        if opts.lock {
            let start = std::time::Instant::now();
            loop {
                let r = if opts.read_only {
                    file.try_lock_shared()
                } else {
                    file.try_lock()
                };
                match r {
                    Ok(()) => break,
                    Err(std::fs::TryLockError::WouldBlock) => {
                        if start.elapsed() >= opts.lock_timeout {
                            return Err(Error::Locked { path });
                        }
                        std::thread::sleep(std::time::Duration::from_millis(10));
                    }
                    Err(std::fs::TryLockError::Error(e)) => {
                        return Err(io_err(&path, "flock", 0)(e));
                    }
                }
            }
        }
        let map_file = file.try_clone().map_err(io_err(&path, "dup", 0))?;
        let storage = wrap(FileStorage::new(file));
        let len = storage.len().map_err(io_err(&path, "stat", 0))?;
        if len == 0 && opts.create && !opts.read_only {
            if !meta::valid_page_size(opts.page_size) {
                return Err(Error::InvalidArgument(format!(
                    "page size {} is not a power of two in [512, 65536]",
                    opts.page_size
                )));
            }
            let img = initial_image(opts.page_size);
            storage
                .write_at(&img, 0)
                .map_err(io_err(&path, "write", 0))?;
            if !opts.no_sync {
                storage.sync_data().map_err(io_err(&path, "fdatasync", 0))?;
            }
        }
        let map =
            MappedFile::map(&map_file, opts.mapped_budget).map_err(io_err(&path, "mmap", 0))?;
        let (ps, m0, m1) = meta::load(map.bytes());
        let flen = map.bytes().len() as u64;
        if flen < 2 * u64::from(ps) {
            return Err(Error::TooSmall { path, len: flen });
        }
        let meta = meta::choose(m0, m1).map_err(|(meta0, meta1)| Error::NoValidMeta {
            path: path.clone(),
            meta0,
            meta1,
        })?;
        let cfg = TxConfig {
            read_only: opts.read_only,
            sync_freelist: opts.sync_freelist && opts.free_space == FreeSpace::Reuse,
            append_only: opts.free_space == FreeSpace::AppendOnly,
            no_sync: opts.no_sync,
            mapped_budget: opts.mapped_budget,
            keep_buffers: opts.keep_buffers,
        };
        Ok(Db {
            shared: Shared {
                path,
                storage,
                map_file,
                ps: ps as usize,
                cfg,
                current: Mutex::new(Current {
                    meta,
                    map: Arc::new(map),
                }),
                readers: Mutex::new(Default::default()),
                writer: Mutex::new(WriterState::default()),
            },
        })
    }

    /// Opens (creating if needed) a database for writing with default options.
    pub fn create(path: impl AsRef<Path>) -> Result<Db> {
        Db::open(
            path,
            OpenOptions {
                create: true,
                ..Default::default()
            },
        )
    }

    pub fn begin_read(&self) -> ReadTx<'_> {
        ReadTx::begin(&self.shared)
    }

    /// Starts the write transaction; blocks while another one in this process is open.
    pub fn begin_write(&self) -> Result<WriteTx<'_>> {
        WriteTx::begin(&self.shared)
    }

    /// Runs `f` in a write transaction and commits when it returns `Ok`.
    pub fn update<T>(&self, f: impl FnOnce(&mut WriteTx<'_>) -> Result<T>) -> Result<T> {
        let mut tx = self.begin_write()?;
        let out = f(&mut tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// The current (newest valid) meta.
    pub fn meta(&self) -> Meta {
        self.shared.current().0
    }

    pub fn page_size(&self) -> usize {
        self.shared.ps
    }

    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Number of free pages as the writer sees them (loads the free set if needed).
    pub fn free_page_count(&self) -> Result<usize> {
        let (meta, map) = self.shared.current();
        let w = self.shared.writer.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(fl) = &w.freelist {
            return Ok(fl.count());
        }
        drop(w);
        let fl = if meta.has_freelist() {
            let (ids, _) =
                Freelist::read_page(map.bytes(), self.shared.ps, meta.freelist, meta.pgid)?;
            Freelist::from_ids(ids.into_iter(), meta.pgid, meta.freelist)?
        } else {
            crate::freelist::rebuild(map.bytes(), self.shared.ps, &meta, Some(&map))?
        };
        Ok(fl.count())
    }
}
