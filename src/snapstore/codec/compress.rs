//! Compression of one stream on the calling thread.

use std::io::{self, BufReader, Read, Write};

use crate::snapstore::name::Compression;

use super::level::{ZSTD_DEFAULT_LEVEL, check_level, flate_level};

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
