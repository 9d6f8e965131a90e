//! Decompression: every codec must reach its end marker; a failure names the object and how far
//! it got, and tells a corrupt stream from a source that failed.

use std::io::{self, BufRead, BufReader, Read, Write};

use thiserror::Error;

use crate::snapstore::name::Compression;

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
