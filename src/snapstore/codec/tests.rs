//! Every codec end to end: round trips, truncation and corruption as errors, and the parallel
//! writer's output against the one-thread reader.

use std::io::{self, Read, Write};

use super::*;
use crate::snapstore::name::Compression;

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
        let e = compress_parallel(c, Some(l), data.as_slice(), Vec::new(), par(2, 4)).unwrap_err();
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
        let e = compress_parallel(c, None, ReadFails(3 << 20), Vec::new(), par(2, 3)).unwrap_err();
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
