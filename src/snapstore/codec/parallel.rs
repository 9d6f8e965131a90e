//! Compression on every core: gzip members or zstd frames of fixed-size chunks, compressed on
//! worker threads within a memory bound, written in input order.

use std::io::{self, Read, Write};
use std::sync::{Mutex, mpsc};

use crate::snapstore::name::Compression;

use super::compress::compress_to_level;
use super::level::{ZSTD_DEFAULT_LEVEL, check_level, flate_level};

/// Uncompressed bytes per gzip member: deflate's window is 32 KiB, so cutting the input every
/// 1 MiB costs well under 1 % of ratio, and a member is small enough to keep every core busy.
pub const GZIP_MEMBER_BYTES: usize = 1 << 20;
/// Uncompressed bytes per zstd frame: zstd's window at the default levels is larger than
/// deflate's, so frames are longer to keep the ratio.
pub const ZSTD_FRAME_BYTES: usize = 2 << 20;

/// The chunk [`compress_parallel`] cuts the input into by default, or None when the codec is
/// written on one thread. Fixed per codec, never derived from the machine, so the output bytes
/// are the same on every machine and with any number of threads.
pub fn parallel_chunk(compression: Compression) -> Option<usize> {
    match compression {
        Compression::Gzip => Some(GZIP_MEMBER_BYTES),
        Compression::Zstd => Some(ZSTD_FRAME_BYTES),
        Compression::Zlib | Compression::Lzw | Compression::None => None,
    }
}

/// How [`compress_parallel`] may use the machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parallelism {
    /// Compressing threads.
    pub threads: usize,
    /// Chunks in flight at most (read, queued, being compressed, or waiting to be written in
    /// order); each holds up to two buffers of about one chunk (input and output).
    pub chunks_in_flight: usize,
    /// Uncompressed bytes per member/frame; 0 = [`parallel_chunk`]. Tests make it small to
    /// get many members from a small input.
    pub chunk: usize,
}

impl Parallelism {
    /// `threads` workers (0: one per available core) on chunks of `chunk` bytes (0: the
    /// codec's), with the buffers kept within `memory` bytes: fewer chunks in flight, and no
    /// more workers than can be kept busy.
    pub fn within(
        compression: Compression,
        threads: usize,
        chunk: usize,
        memory: usize,
    ) -> Parallelism {
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            threads
        };
        let fixed = parallel_chunk(compression).unwrap_or(GZIP_MEMBER_BYTES);
        let chunk = if chunk == 0 { fixed } else { chunk };
        // One chunk being read and one being written beside each worker's, twice over so a
        // slow chunk does not stall the others.
        let fit = (memory / (2 * chunk)).max(2);
        let chunks_in_flight = (2 * threads + 2).min(fit);
        Parallelism {
            threads: threads.min(chunks_in_flight - 1).max(1),
            chunks_in_flight,
            chunk: if chunk == fixed { 0 } else { chunk },
        }
    }

    /// The chunk size for `compression` (None: written on one thread).
    pub fn chunk_for(&self, compression: Compression) -> Option<usize> {
        parallel_chunk(compression).map(|c| if self.chunk == 0 { c } else { self.chunk })
    }

    /// The most bytes of buffers [`compress_parallel`] holds with these settings.
    pub fn buffer_bytes(&self, compression: Compression) -> usize {
        let chunk = self.chunk_for(compression).unwrap_or(0);
        // An incompressible chunk grows a little: gzip's stored blocks, zstd's raw blocks.
        self.chunks_in_flight * (2 * chunk + chunk / 64 + 1024)
    }
}

/// Compresses `input` into `out`: gzip and zstd in [`Parallelism::chunk_for`]-sized pieces on
/// `par.threads` threads (one gzip member or zstd frame per piece, written in input order),
/// the other codecs as [`compress_to_level`] does on this thread. `input` is read on the
/// calling thread, in order; `out` is written on another thread, in order. Empty input gives
/// one empty member/frame (a gzip reader refuses a stream with none).
pub fn compress_parallel<R: Read, W: Write + Send>(
    compression: Compression,
    level: Option<i32>,
    mut input: R,
    out: W,
    par: Parallelism,
) -> io::Result<W> {
    let level = check_level(compression, level)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let Some(chunk) = par.chunk_for(compression) else {
        return compress_to_level(compression, level, input, out);
    };
    let slots = par.chunks_in_flight.max(2);
    let threads = par.threads.clamp(1, slots - 1);
    // Buffers circulate: free pairs (input, output) -> reader -> a worker -> the writer -> free.
    // A free pair is the permit to read another chunk, which bounds the memory; the queues
    // are as deep as there are pairs, so nobody but the reader ever waits on a full queue.
    let (free_tx, free_rx) = mpsc::sync_channel::<(Vec<u8>, Vec<u8>)>(slots);
    for _ in 0..slots {
        let _ = free_tx.send((Vec::new(), Vec::new()));
    }
    let (job_tx, job_rx) = mpsc::sync_channel::<Job>(slots);
    let job_rx = Mutex::new(job_rx);
    let (done_tx, done_rx) = mpsc::sync_channel::<Done>(slots);
    std::thread::scope(|s| {
        for _ in 0..threads {
            let (job_rx, done_tx) = (&job_rx, done_tx.clone());
            s.spawn(move || compress_worker(compression, level, job_rx, done_tx));
        }
        drop(done_tx);
        let writer = s.spawn(move || write_in_order(out, done_rx, free_tx));
        let read = read_chunks(&mut input, chunk, &free_rx, &job_tx);
        // No more jobs: the workers finish what they hold and exit, then the writer does.
        drop(job_tx);
        let written = writer
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the compressed-output writer panicked")));
        // A writer error explains a reader that stopped early; a read error stands alone.
        match (read, written) {
            (Err(e), _) => Err(e),
            (Ok(()), r) => r,
        }
    })
}

type Job = (u64, Vec<u8>, Vec<u8>);
type Done = (u64, io::Result<(Vec<u8>, Vec<u8>)>);

/// The calling thread's part: fills free buffers with chunks of `input`, in order.
fn read_chunks<R: Read>(
    input: &mut R,
    chunk: usize,
    free: &mpsc::Receiver<(Vec<u8>, Vec<u8>)>,
    jobs: &mpsc::SyncSender<Job>,
) -> io::Result<()> {
    let mut seq = 0u64;
    loop {
        // No free buffer ever again means the writer stopped (it reports why).
        let Ok((mut data, out)) = free.recv() else {
            return Ok(());
        };
        data.clear();
        // Room for exactly one chunk, so read_to_end fills it without growing it.
        data.reserve_exact(chunk);
        input.by_ref().take(chunk as u64).read_to_end(&mut data)?;
        let last = data.len() < chunk;
        if data.is_empty() && seq > 0 {
            return Ok(());
        }
        if jobs.send((seq, data, out)).is_err() {
            return Ok(());
        }
        seq += 1;
        if last {
            return Ok(());
        }
    }
}

fn compress_worker(
    compression: Compression,
    level: Option<i32>,
    jobs: &Mutex<mpsc::Receiver<Job>>,
    done: mpsc::SyncSender<Done>,
) {
    // One zstd context per worker, reused for every frame (creating one costs more than a
    // small frame).
    let mut zstd = None;
    loop {
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok((seq, data, mut out)) = job else {
            return;
        };
        out.clear();
        // Room for an incompressible chunk, so the buffer never doubles past it.
        out.reserve_exact(data.len() + data.len() / 64 + 1024);
        // A panic must still answer for its chunk: the writer waits for every chunk in order,
        // so a chunk that never arrives would hold every buffer and stall the run for good.
        let compressed =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match compression {
                Compression::Zstd => zstd_frame(&mut zstd, level, &data, &mut out).map(|()| out),
                _ => gzip_member(level, &data, out),
            }))
            .unwrap_or_else(|_| Err(io::Error::other("compressing a chunk panicked")));
        let result = compressed.map(|out| (data, out));
        if done.send((seq, result)).is_err() {
            return;
        }
    }
}

fn gzip_member(level: Option<i32>, data: &[u8], out: Vec<u8>) -> io::Result<Vec<u8>> {
    let mut e = flate2::write::GzEncoder::new(out, flate_level(level));
    e.write_all(data)?;
    e.finish()
}

fn zstd_frame(
    ctx: &mut Option<zstd::bulk::Compressor<'static>>,
    level: Option<i32>,
    data: &[u8],
    out: &mut Vec<u8>,
) -> io::Result<()> {
    let c = match ctx {
        Some(c) => c,
        None => {
            let mut c = zstd::bulk::Compressor::new(level.unwrap_or(ZSTD_DEFAULT_LEVEL))?;
            // A frame checksum makes corruption an error instead of silent garbage.
            c.set_parameter(zstd::stream::raw::CParameter::ChecksumFlag(true))?;
            ctx.insert(c)
        }
    };
    out.reserve(zstd::zstd_safe::compress_bound(data.len()));
    c.compress_to_buffer(data, out)?;
    Ok(())
}

/// Writes finished chunks in input order and hands their buffers back to the reader.
fn write_in_order<W: Write>(
    mut out: W,
    done: mpsc::Receiver<Done>,
    free: mpsc::SyncSender<(Vec<u8>, Vec<u8>)>,
) -> io::Result<W> {
    let mut waiting = std::collections::BTreeMap::new();
    let mut next = 0u64;
    for (seq, result) in done {
        waiting.insert(seq, result?);
        while let Some((data, buf)) = waiting.remove(&next) {
            out.write_all(&buf)?;
            next += 1;
            let _ = free.send((data, buf));
        }
    }
    if !waiting.is_empty() {
        return Err(io::Error::other("a compressed chunk went missing"));
    }
    out.flush()?;
    Ok(out)
}
