//! Streaming decompression of snapshot objects, chosen by name suffix.
//!
//! gzip (multi-member, like Go's reader) and zlib through flate2 on zlib-rs; Go's `compress/lzw`
//! (LSB, literal width 8) through weezl; zstd for our own outputs. Every codec must reach its
//! end marker: a stream that just stops is reported as truncated, never silently accepted.
//!
//! Writing: [`compress_to`] (one stream, the calling thread) and [`compress_parallel`] (gzip and
//! zstd on every core: the input is cut into fixed-size chunks, each compressed on its own as a
//! gzip member or a zstd frame, written in order). A gzip stream of several members is one
//! stream to Go's `compress/gzip` reader (multistream is its default, and etcdbrctl restores
//! through `gzip.NewReader`), to `gzip -d` and to our [`decompress_to`]; zstd decoders read
//! concatenated frames. zlib has no multi-member form (a zlib reader stops after the first
//! stream's Adler-32), and LZW is one code stream: both stay on one thread.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::ops::RangeInclusive;
use std::sync::{Mutex, mpsc};

use thiserror::Error;

use super::name::Compression;

const IO_BUF: usize = 256 * 1024;

/// A decompression failure, naming the object and how far it got.
#[derive(Debug, Error)]
pub enum CodecError {
    /// The compressed bytes are not a valid stream of their codec (includes truncation).
    #[error(
        "{object}: corrupt {codec} stream near compressed byte {compressed_offset} (after {decompressed_offset} decompressed bytes): {detail}"
    )]
    Corrupt {
        object: String,
        codec: Compression,
        compressed_offset: u64,
        decompressed_offset: u64,
        detail: String,
    },
    /// Reading the object failed (network, disk).
    #[error("{object}: reading failed at compressed byte {compressed_offset}: {source}")]
    Source {
        object: String,
        compressed_offset: u64,
        #[source]
        source: io::Error,
    },
    /// Writing the decompressed bytes failed, or the consumer refused them.
    #[error("{object}: writing decompressed byte {decompressed_offset} failed: {source}")]
    Sink {
        object: String,
        decompressed_offset: u64,
        #[source]
        source: io::Error,
    },
}

/// Reader wrapper that counts bytes and remembers whether the source itself failed, so a
/// decoder error can be told apart from a network/disk error.
struct Tracked<R> {
    inner: R,
    read: u64,
    failed: Option<io::ErrorKind>,
}

impl<R: Read> Read for Tracked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.read += n as u64;
                Ok(n)
            }
            Err(e) => {
                self.failed = Some(e.kind());
                Err(e)
            }
        }
    }
}

/// Decompresses `input` into `out`, returning the number of decompressed bytes.
pub fn decompress_to<R: Read, W: Write + ?Sized>(
    compression: Compression,
    input: R,
    object: &str,
    out: &mut W,
) -> Result<u64, CodecError> {
    let mut src = BufReader::with_capacity(
        IO_BUF,
        Tracked {
            inner: input,
            read: 0,
            failed: None,
        },
    );
    let mut written = 0u64;
    let result = match compression {
        Compression::None => pump(&mut src, out, &mut written),
        Compression::Gzip => pump(
            &mut flate2::bufread::MultiGzDecoder::new(&mut src),
            out,
            &mut written,
        ),
        Compression::Zlib => pump(
            &mut flate2::bufread::ZlibDecoder::new(&mut src),
            out,
            &mut written,
        ),
        Compression::Zstd => match zstd::stream::read::Decoder::with_buffer(&mut src) {
            Ok(mut d) => pump(&mut d, out, &mut written),
            Err(e) => Err(Failure::Decode(e.to_string())),
        },
        Compression::Lzw => lzw(&mut src, out, &mut written),
    };
    let tracked = src.get_ref();
    let compressed_offset = tracked.read;
    match result {
        Ok(()) => Ok(written),
        Err(Failure::Write(source)) => Err(CodecError::Sink {
            object: object.into(),
            decompressed_offset: written,
            source,
        }),
        Err(Failure::Read(source)) if tracked.failed.is_some() => Err(CodecError::Source {
            object: object.into(),
            compressed_offset,
            source,
        }),
        Err(Failure::Read(e)) => Err(CodecError::Corrupt {
            object: object.into(),
            codec: compression,
            compressed_offset,
            decompressed_offset: written,
            detail: describe(&e),
        }),
        Err(Failure::Decode(detail)) => Err(CodecError::Corrupt {
            object: object.into(),
            codec: compression,
            compressed_offset,
            decompressed_offset: written,
            detail,
        }),
    }
}

fn describe(e: &io::Error) -> String {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        format!("truncated ({e})")
    } else {
        e.to_string()
    }
}

enum Failure {
    Read(io::Error),
    Write(io::Error),
    Decode(String),
}

fn pump<R: Read + ?Sized, W: Write + ?Sized>(
    r: &mut R,
    w: &mut W,
    written: &mut u64,
) -> Result<(), Failure> {
    let mut buf = vec![0u8; IO_BUF];
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Failure::Read(e)),
        };
        let chunk = buf.get(..n).unwrap_or_default();
        w.write_all(chunk).map_err(Failure::Write)?;
        *written += n as u64;
    }
}

/// Go `compress/lzw` reader semantics: decode until the end code; input that runs out first is
/// `io.ErrUnexpectedEOF`. Bytes after the end code are ignored, as Go does.
fn lzw<R: BufRead + ?Sized, W: Write + ?Sized>(
    r: &mut R,
    w: &mut W,
    written: &mut u64,
) -> Result<(), Failure> {
    let mut decoder = weezl::decode::Decoder::new(weezl::BitOrder::Lsb, 8);
    let mut out = vec![0u8; IO_BUF];
    loop {
        let input = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Failure::Read(e)),
        };
        let at_eof = input.is_empty();
        let res = decoder.decode_bytes(input, &mut out);
        r.consume(res.consumed_in);
        if res.consumed_out > 0 {
            w.write_all(out.get(..res.consumed_out).unwrap_or_default())
                .map_err(Failure::Write)?;
            *written += res.consumed_out as u64;
        }
        match res.status {
            Ok(weezl::LzwStatus::Done) => return Ok(()),
            Ok(weezl::LzwStatus::Ok) => {}
            Ok(weezl::LzwStatus::NoProgress) => {
                if at_eof {
                    return Err(Failure::Decode(
                        "truncated (input ended before the LZW end code)".into(),
                    ));
                }
            }
            Err(e) => return Err(Failure::Decode(format!("LZW: {e}"))),
        }
    }
}

/// Compresses `input` into `out` with the codec's usual settings (gzip/zlib default level 6,
/// LZW LSB width 8, zstd level 3). Used for objects this tool writes and for tests.
pub fn compress_to<R: Read, W: Write>(compression: Compression, input: R, out: W) -> io::Result<W> {
    compress_to_level(compression, None, input, out)
}

/// [`compress_to`] at `level` (None: the codec's default; check it with [`check_level`] first,
/// an out-of-range level is an `InvalidInput` error here).
pub fn compress_to_level<R: Read, W: Write>(
    compression: Compression,
    level: Option<i32>,
    mut input: R,
    out: W,
) -> io::Result<W> {
    let level = check_level(compression, level)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    match compression {
        Compression::None => {
            let mut out = out;
            io::copy(&mut input, &mut out)?;
            Ok(out)
        }
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(out, flate_level(level));
            io::copy(&mut input, &mut e)?;
            e.finish()
        }
        Compression::Zlib => {
            let mut e = flate2::write::ZlibEncoder::new(out, flate_level(level));
            io::copy(&mut input, &mut e)?;
            e.finish()
        }
        Compression::Zstd => {
            let mut e =
                zstd::stream::write::Encoder::new(out, level.unwrap_or(ZSTD_DEFAULT_LEVEL))?;
            // A frame checksum makes corruption an error here instead of silent garbage.
            e.include_checksum(true)?;
            io::copy(&mut input, &mut e)?;
            e.finish()
        }
        Compression::Lzw => {
            let mut out = out;
            let mut enc = weezl::encode::Encoder::new(weezl::BitOrder::Lsb, 8);
            let res = enc.into_stream(&mut out).encode_all(BufReader::new(input));
            res.status?;
            Ok(out)
        }
    }
}

/// Go's `gzip.NewWriter`/`zlib.NewWriter` use `DefaultCompression`, which is zlib's level 6.
const FLATE_DEFAULT_LEVEL: i32 = 6;
/// zstd's own default (`ZSTD_CLEVEL_DEFAULT`).
const ZSTD_DEFAULT_LEVEL: i32 = 3;

fn flate_level(level: Option<i32>) -> flate2::Compression {
    // check_level has put it in 0..=9.
    flate2::Compression::new(level.unwrap_or(FLATE_DEFAULT_LEVEL).clamp(0, 9) as u32)
}

/// A `--compression-level` the codec cannot take.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LevelError {
    #[error("{codec} has no compression levels")]
    NoLevels { codec: Compression },
    #[error("compression level {level} is outside {codec}'s {min}..={max}")]
    OutOfRange {
        codec: Compression,
        level: i32,
        min: i32,
        max: i32,
    },
}

/// The levels a codec accepts: gzip and zlib 0 (stored) ..= 9, zstd its library's range
/// (negative levels are its fast modes); LZW and none have no levels.
pub fn level_range(compression: Compression) -> Option<RangeInclusive<i32>> {
    match compression {
        Compression::Gzip | Compression::Zlib => Some(0..=9),
        Compression::Zstd => Some(zstd::compression_level_range()),
        Compression::Lzw | Compression::None => None,
    }
}

/// The level [`compress_to`] uses when none is given (None for codecs without levels).
pub fn default_level(compression: Compression) -> Option<i32> {
    match compression {
        Compression::Gzip | Compression::Zlib => Some(FLATE_DEFAULT_LEVEL),
        Compression::Zstd => Some(ZSTD_DEFAULT_LEVEL),
        Compression::Lzw | Compression::None => None,
    }
}

/// Checks `level` against the codec's range and returns it.
pub fn check_level(
    compression: Compression,
    level: Option<i32>,
) -> Result<Option<i32>, LevelError> {
    let Some(level) = level else {
        return Ok(None);
    };
    match level_range(compression) {
        None => Err(LevelError::NoLevels { codec: compression }),
        Some(r) if r.contains(&level) => Ok(Some(level)),
        Some(r) => Err(LevelError::OutOfRange {
            codec: compression,
            level,
            min: *r.start(),
            max: *r.end(),
        }),
    }
}

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

/// Decompresses a whole in-memory object.
pub fn decompress_vec(
    compression: Compression,
    data: &[u8],
    object: &str,
) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(data.len().saturating_mul(4).min(1 << 30));
    decompress_to(compression, data, object, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut v = Vec::new();
        for i in 0..50_000u32 {
            v.extend_from_slice(format!("{{\"key\":\"k{i}\",\"v\":{}}},", i % 97).as_bytes());
        }
        v
    }

    #[test]
    fn round_trip_every_codec() {
        let data = sample();
        for c in Compression::ALL {
            let z = compress_to(c, data.as_slice(), Vec::new()).unwrap();
            let back = decompress_vec(c, &z, "obj").unwrap();
            assert!(back == data, "{c}");
            let empty = compress_to(c, &[][..], Vec::new()).unwrap();
            assert!(decompress_vec(c, &empty, "obj").unwrap().is_empty(), "{c}");
        }
    }

    #[test]
    fn multi_member_gzip_is_concatenated() {
        let mut z = compress_to(Compression::Gzip, &b"hello "[..], Vec::new()).unwrap();
        z.extend(compress_to(Compression::Gzip, &b"world"[..], Vec::new()).unwrap());
        assert_eq!(
            decompress_vec(Compression::Gzip, &z, "o").unwrap(),
            b"hello world"
        );
    }

    #[test]
    fn truncation_is_an_error_for_every_codec() {
        let data = sample();
        for c in Compression::ALL {
            if c == Compression::None {
                continue;
            }
            let z = compress_to(c, data.as_slice(), Vec::new()).unwrap();
            for cut in [1, z.len() / 2, z.len() - 1] {
                let err = decompress_vec(c, &z[..cut], "Incr-x").unwrap_err();
                match &err {
                    CodecError::Corrupt { object, codec, .. } => {
                        assert_eq!(object, "Incr-x");
                        assert_eq!(*codec, c);
                    }
                    other => panic!("{c} cut {cut}: {other}"),
                }
            }
        }
    }

    #[test]
    fn flipped_bytes_are_errors_or_detected_downstream() {
        // gzip/zlib/zstd carry checksums: a flipped payload byte must fail here. LZW has no
        // checksum; the SHA-256 inside the object catches it (tested in the fetch tests).
        let data = sample();
        for c in [Compression::Gzip, Compression::Zlib, Compression::Zstd] {
            let z = compress_to(c, data.as_slice(), Vec::new()).unwrap();
            for pos in [z.len() / 3, z.len() / 2, z.len() - 3] {
                let mut bad = z.clone();
                bad[pos] ^= 0x20;
                let res = decompress_vec(c, &bad, "o");
                assert!(
                    res.as_ref().map(|v| v != &data).unwrap_or(true),
                    "{c} flip at {pos} went unnoticed"
                );
                if let Ok(v) = res {
                    panic!("{c} flip at {pos}: decoded {} bytes without error", v.len());
                }
            }
        }
    }

    /// Counts gzip members by walking the stream with a single-member decoder.
    fn gzip_members(z: &[u8]) -> usize {
        let mut rest = z;
        let mut n = 0;
        while !rest.is_empty() {
            let mut d = flate2::bufread::GzDecoder::new(rest);
            io::copy(&mut d, &mut io::sink()).unwrap();
            rest = d.into_inner();
            n += 1;
        }
        n
    }

    fn par(threads: usize, chunks_in_flight: usize) -> Parallelism {
        Parallelism {
            threads,
            chunks_in_flight,
            chunk: 0,
        }
    }

    #[test]
    fn parallel_output_round_trips_and_does_not_depend_on_threads() {
        // 5.5 chunks of gzip, so the last member is short; incompressible and compressible
        // halves so members differ in size and finish out of order.
        let mut data = sample();
        let mut x: u32 = 7;
        while data.len() < GZIP_MEMBER_BYTES * 11 / 2 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            data.push((x >> 16) as u8);
        }
        for c in Compression::ALL {
            let one = compress_parallel(c, None, data.as_slice(), Vec::new(), par(1, 2)).unwrap();
            for p in [par(2, 3), par(4, 10), par(3, 4)] {
                let z = compress_parallel(c, None, data.as_slice(), Vec::new(), p).unwrap();
                assert!(z == one, "{c} with {p:?}: different bytes than one thread");
            }
            assert!(decompress_vec(c, &one, "o").unwrap() == data, "{c}");
        }
        let z = compress_parallel(
            Compression::Gzip,
            None,
            data.as_slice(),
            Vec::new(),
            par(2, 6),
        )
        .unwrap();
        assert_eq!(gzip_members(&z), 6);
        // Single-stream codecs are exactly compress_to's output.
        for c in [Compression::Zlib, Compression::Lzw, Compression::None] {
            let z = compress_parallel(c, None, data.as_slice(), Vec::new(), par(2, 6)).unwrap();
            assert!(
                z == compress_to(c, data.as_slice(), Vec::new()).unwrap(),
                "{c}"
            );
        }
    }

    #[test]
    fn parallel_edges_empty_and_exact_multiples() {
        for c in [Compression::Gzip, Compression::Zstd] {
            let chunk = parallel_chunk(c).unwrap();
            assert_eq!(par(2, 3).chunk_for(c), Some(chunk));
            let empty = compress_parallel(c, None, &[][..], Vec::new(), par(2, 4)).unwrap();
            assert!(
                !empty.is_empty(),
                "{c}: empty input still needs one member/frame"
            );
            assert!(decompress_vec(c, &empty, "o").unwrap().is_empty());
            for len in [1, chunk - 1, chunk, chunk + 1, 2 * chunk] {
                let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
                let z = compress_parallel(c, None, data.as_slice(), Vec::new(), par(2, 3)).unwrap();
                assert!(decompress_vec(c, &z, "o").unwrap() == data, "{c} {len}");
                if c == Compression::Gzip {
                    assert_eq!(gzip_members(&z), len.div_ceil(chunk), "{len}");
                }
            }
        }
    }

    #[test]
    fn parallel_levels_are_used_and_checked() {
        let data = sample();
        let fast = compress_parallel(
            Compression::Gzip,
            Some(1),
            data.as_slice(),
            Vec::new(),
            par(2, 4),
        )
        .unwrap();
        let best = compress_parallel(
            Compression::Gzip,
            Some(9),
            data.as_slice(),
            Vec::new(),
            par(2, 4),
        )
        .unwrap();
        assert!(
            best.len() < fast.len(),
            "level 9 {} vs level 1 {}",
            best.len(),
            fast.len()
        );
        let stored = compress_parallel(
            Compression::Gzip,
            Some(0),
            data.as_slice(),
            Vec::new(),
            par(2, 4),
        )
        .unwrap();
        assert!(stored.len() > data.len());
        assert!(decompress_vec(Compression::Gzip, &stored, "o").unwrap() == data);
        let z19 = compress_parallel(
            Compression::Zstd,
            Some(19),
            data.as_slice(),
            Vec::new(),
            par(2, 4),
        )
        .unwrap();
        assert!(decompress_vec(Compression::Zstd, &z19, "o").unwrap() == data);
        for (c, l) in [
            (Compression::Gzip, 10),
            (Compression::Zlib, -1),
            (Compression::Zstd, 23),
            (Compression::Lzw, 1),
            (Compression::None, 0),
        ] {
            assert!(check_level(c, Some(l)).is_err(), "{c} {l}");
            let e =
                compress_parallel(c, Some(l), data.as_slice(), Vec::new(), par(2, 4)).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{c} {l}");
        }
        assert_eq!(check_level(Compression::Zstd, Some(-5)), Ok(Some(-5)));
        assert_eq!(check_level(Compression::Lzw, None), Ok(None));
    }

    #[test]
    fn parallel_errors_end_the_run_instead_of_hanging() {
        struct FailAfter(usize);
        impl Write for FailAfter {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                if self.0 < b.len() {
                    return Err(io::Error::other("disk full"));
                }
                self.0 -= b.len();
                Ok(b.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        struct ReadFails(usize);
        impl Read for ReadFails {
            fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::other("EIO"));
                }
                let n = b.len().min(self.0);
                b[..n].fill(7);
                self.0 -= n;
                Ok(n)
            }
        }
        let data = vec![1u8; GZIP_MEMBER_BYTES * 20];
        for c in [Compression::Gzip, Compression::Zstd] {
            let e = compress_parallel(c, None, data.as_slice(), FailAfter(100), par(2, 3))
                .err()
                .unwrap();
            assert_eq!(e.to_string(), "disk full", "{c}");
            let e =
                compress_parallel(c, None, ReadFails(3 << 20), Vec::new(), par(2, 3)).unwrap_err();
            assert_eq!(e.to_string(), "EIO", "{c}");
        }
    }

    #[test]
    fn small_chunks_make_many_members() {
        let data = sample();
        let p = Parallelism {
            chunk: 4096,
            ..par(3, 5)
        };
        let z = compress_parallel(Compression::Gzip, None, data.as_slice(), Vec::new(), p).unwrap();
        assert_eq!(gzip_members(&z), data.len().div_ceil(4096));
        assert!(decompress_vec(Compression::Gzip, &z, "o").unwrap() == data);
        let z = compress_parallel(Compression::Zstd, None, data.as_slice(), Vec::new(), p).unwrap();
        assert!(decompress_vec(Compression::Zstd, &z, "o").unwrap() == data);
    }

    #[test]
    fn parallelism_stays_within_its_memory() {
        let p = Parallelism::within(Compression::Gzip, 2, 0, 16 << 20);
        assert_eq!(p, par(2, 6));
        assert!(p.buffer_bytes(Compression::Gzip) <= 16 << 20);
        // Many cores, little memory: fewer workers than cores, never none.
        let p = Parallelism::within(Compression::Gzip, 64, 0, 16 << 20);
        assert_eq!(p, par(7, 8));
        assert!(p.buffer_bytes(Compression::Gzip) <= 17 << 20);
        let p = Parallelism::within(Compression::Zstd, 8, 0, 1 << 20);
        assert_eq!(p, par(1, 2));
        assert!(Parallelism::within(Compression::Gzip, 0, 0, 16 << 20).threads >= 1);
        // Small chunks fit more in flight.
        let p = Parallelism::within(Compression::Zstd, 5, 4096, 16 << 20);
        assert_eq!((p.threads, p.chunks_in_flight, p.chunk), (5, 12, 4096));
        assert_eq!(p.chunk_for(Compression::Zstd), Some(4096));
        assert_eq!(p.chunk_for(Compression::Zlib), None);
    }

    #[test]
    fn source_errors_are_not_reported_as_corruption() {
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("connection reset"))
            }
        }
        for c in Compression::ALL {
            let err = decompress_to(c, Failing, "o", &mut Vec::new()).unwrap_err();
            assert!(matches!(err, CodecError::Source { .. }), "{c}: {err}");
        }
    }
}
