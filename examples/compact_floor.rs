//! The I/O and codec floor of `etcd-restore compact` on a local store (docs/performance.md,
//! "Compaction: before, after and the floor"): only the bytes the job cannot avoid moving,
//! with the same codec code and the same parallelism, and none of the database work.
//!
//! 1. read and decompress the base (one thread) and the deltas (another thread, at the same
//!    time), checking every object's sha256 trailer; the base's database is written to a file,
//!    the deltas' JSON goes nowhere;
//! 2. read a database of the output's size (OUTPUT_DB: the compacted database of a real run,
//!    e.g. from `bboltoracle verify-snapshot OBJECT OUTPUT_DB`), hash it, and compress it plus
//!    its trailer on every core into the store directory (a local store's upload is a file
//!    write) — what `compact`'s pack and upload steps must do at the least.
//!
//! ```sh
//! cargo run --release --example compact_floor -- STORE_DIR OUTPUT_DB WORK_DIR [THREADS]
//! ```

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use etcd_restore::snapstore::codec::{Parallelism, compress_parallel, decompress_to};
use etcd_restore::snapstore::{Compression, Kind, parse_snapshot_name};
use sha2::{Digest, Sha256};

/// Hashes everything but the last 32 bytes written through it and keeps those apart: the
/// snapshot trailer.
struct Trailer<W> {
    out: W,
    hasher: Sha256,
    tail: Vec<u8>,
}

impl<W: Write> Write for Trailer<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tail.extend_from_slice(buf);
        if self.tail.len() > 32 {
            let keep = self.tail.len() - 32;
            self.hasher.update(&self.tail[..keep]);
            self.out.write_all(&self.tail[..keep])?;
            self.tail.drain(..keep);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Decompresses one object into `out`, checking its trailer; returns the object's size.
fn read_object<W: Write>(path: &Path, c: Compression, out: W) -> u64 {
    let f = File::open(path).unwrap();
    let size = f.metadata().unwrap().len();
    let mut t = Trailer {
        out,
        hasher: Sha256::new(),
        tail: Vec::with_capacity(1 << 20),
    };
    decompress_to(c, f, &path.display().to_string(), &mut t).unwrap();
    t.flush().unwrap();
    let sum: [u8; 32] = t.hasher.finalize().into();
    assert_eq!(t.tail, sum, "{}: trailer", path.display());
    size
}

struct Hashed<W> {
    out: W,
    hasher: Sha256,
}

impl<W: Write> Write for Hashed<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, store, output_db, work, rest @ ..] = args.as_slice() else {
        eprintln!("usage: compact_floor STORE_DIR OUTPUT_DB WORK_DIR [THREADS]");
        std::process::exit(2);
    };
    let threads: usize = rest.first().map_or(0, |t| t.parse().unwrap());
    let (store, work) = (PathBuf::from(store), PathBuf::from(work));
    let mut objects: Vec<_> = std::fs::read_dir(store.join("v2"))
        .unwrap()
        .filter_map(|e| {
            let e = e.unwrap();
            let name = parse_snapshot_name(e.file_name().to_str()?).ok()?;
            Some((name, e.path()))
        })
        .collect();
    objects.sort_by_key(|(n, _)| (n.last_revision, n.created_on));
    // The newest full snapshot and the deltas after it, as the plan picks them.
    let base_at = objects
        .iter()
        .rposition(|(n, _)| n.kind == Kind::Full)
        .expect("a full snapshot");
    let (base, deltas) = (&objects[base_at], &objects[base_at + 1..]);
    let t0 = Instant::now();
    let (base_bytes, delta_bytes) = std::thread::scope(|s| {
        let b = s.spawn(|| {
            let db = File::create(work.join("floor-base.db")).unwrap();
            read_object(
                &base.1,
                base.0.compression,
                BufWriter::with_capacity(1 << 20, db),
            )
        });
        let d = s.spawn(|| {
            deltas
                .iter()
                .map(|(n, p)| read_object(p, n.compression, io::sink()))
                .sum::<u64>()
        });
        (b.join().unwrap(), d.join().unwrap())
    });
    let t_inputs = t0.elapsed().as_secs_f64();

    let t1 = Instant::now();
    let c = Compression::Gzip;
    let par = Parallelism::within(c, threads, 0, 16 << 20);
    let mut input = File::open(output_db).unwrap();
    let mut db_hasher = Sha256::new();
    let mut db_bytes = 0u64;
    let mut trailer_sent = false;
    // The database, then its sha256, hashed on the way as compact's pack does.
    let reader = std::iter::from_fn(|| {
        let mut buf = vec![0u8; 1 << 20];
        let n = input.read(&mut buf).unwrap();
        if n > 0 {
            db_hasher.update(&buf[..n]);
            db_bytes += n as u64;
            buf.truncate(n);
            return Some(buf);
        }
        if trailer_sent {
            return None;
        }
        trailer_sent = true;
        Some(std::mem::take(&mut db_hasher).finalize().to_vec())
    });
    let object = store.join("v2").join(".floor-object.gz");
    let out = Hashed {
        out: File::create(&object).unwrap(),
        hasher: Sha256::new(),
    };
    let out = compress_parallel(c, None, IterRead::new(reader), out, par).unwrap();
    let object_bytes = std::fs::metadata(&object).unwrap().len();
    let _ = out.hasher.finalize();
    let t_output = t1.elapsed().as_secs_f64();
    std::fs::remove_file(&object).unwrap();
    let _ = std::fs::remove_file(work.join("floor-base.db"));
    println!(
        "inputs {:.2} s (base {} + {} deltas {} bytes), output {:.2} s (db {} -> {} bytes, {} threads), total {:.2} s",
        t_inputs,
        base_bytes,
        deltas.len(),
        delta_bytes,
        t_output,
        db_bytes,
        object_bytes,
        par.threads,
        t0.elapsed().as_secs_f64()
    );
}

/// A `Read` over an iterator of buffers.
struct IterRead<I> {
    it: I,
    cur: Vec<u8>,
    pos: usize,
}

impl<I> IterRead<I> {
    fn new(it: I) -> Self {
        IterRead {
            it,
            cur: Vec::new(),
            pos: 0,
        }
    }
}

impl<I: Iterator<Item = Vec<u8>>> Read for IterRead<I> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            match self.it.next() {
                Some(b) => {
                    self.cur = b;
                    self.pos = 0;
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
