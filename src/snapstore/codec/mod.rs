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
//!
//! * `decompress`: [`decompress_to`] and [`CodecError`]; `compress`: [`compress_to`];
//! * `parallel`: [`compress_parallel`]; `level`: each codec's levels.

mod compress;
mod decompress;
mod level;
mod parallel;
#[cfg(test)]
mod tests;

pub use compress::{compress_to, compress_to_level};
pub use decompress::{CodecError, decompress_to, decompress_vec};
pub use level::{LevelError, check_level, default_level, level_range};
pub use parallel::{
    GZIP_MEMBER_BYTES, Parallelism, ZSTD_FRAME_BYTES, compress_parallel, parallel_chunk,
};
