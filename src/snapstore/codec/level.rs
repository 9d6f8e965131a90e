//! Compression levels: each codec's range and default, as Go's writers and zstd's library set
//! them.

use std::ops::RangeInclusive;

use thiserror::Error;

use crate::snapstore::name::Compression;

/// Go's `gzip.NewWriter`/`zlib.NewWriter` use `DefaultCompression`, which is zlib's level 6.
pub(super) const FLATE_DEFAULT_LEVEL: i32 = 6;
/// zstd's own default (`ZSTD_CLEVEL_DEFAULT`).
pub(super) const ZSTD_DEFAULT_LEVEL: i32 = 3;

pub(super) fn flate_level(level: Option<i32>) -> flate2::Compression {
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
