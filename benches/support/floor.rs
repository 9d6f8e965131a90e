//! The I/O and codec floor of `etcd-restore restore` and `compact` on a local store: only the
//! bytes a job cannot avoid moving, with the same codec code and the same parallelism, and none
//! of the database work. The speed bench runs these as child roles of its own binary
//! (`--floor-restore`, `--floor-compact`) so that `/usr/bin/time -v` measures them alone.
//!
//! Both start the same way: read and decompress the newest full snapshot (one thread) and the
//! deltas after it (another thread, at the same time), checking every object's sha256 trailer;
//! the deltas' JSON goes nowhere. Then:
//!
//! * restore: the base's database is written to a file, which then grows to the size of the
//!   restored database (the records the deltas add must be written too) and is fsynced;
//! * compact: a database of the output's size (OUTPUT_DB, the compacted database of a real run)
//!   is read, hashed and compressed, plus its trailer, on every core into the store directory
//!   (a local store's upload is a file write), and the object is fsynced.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use etcd_restore::snapstore::codec::{Parallelism, compress_parallel, decompress_to};
use etcd_restore::snapstore::{Compression, Kind, SnapshotName, parse_snapshot_name};
use sha2::{Digest, Sha256};

type R<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Runs a floor role when the bench binary was re-executed as one; `None` when `args` name
/// none. Prints one JSON line: the phases' seconds and byte counts.
pub fn role(args: &[String]) -> Option<R<()>> {
    let rest = args.get(2..).unwrap_or_default();
    Some(match args.get(1).map(String::as_str)? {
        "--floor-restore" => restore_role(rest),
        "--floor-compact" => compact_role(rest),
        _ => return None,
    })
}

/// `--floor-restore STORE OUTPUT_BYTES WORK`
fn restore_role(args: &[String]) -> R<()> {
    let [store, output_bytes, work] = args else {
        return Err("usage: --floor-restore STORE_DIR OUTPUT_BYTES WORK_DIR".into());
    };
    let output_bytes: u64 = output_bytes.parse()?;
    let (base, deltas) = newest_chain(Path::new(store))?;
    let db_path = Path::new(work).join("floor-restore.db");
    let t0 = Instant::now();
    let (base_db_bytes, delta_json_bytes) = std::thread::scope(|s| -> R<(u64, u64)> {
        let b = s.spawn(|| -> R<u64> {
            let mut db = BufWriter::with_capacity(1 << 20, File::create(&db_path)?);
            let n = read_object(&base.1, base.0.compression, &mut db)?;
            // The records the deltas add to the database.
            let zeros = vec![0u8; 1 << 20];
            let mut left = output_bytes.saturating_sub(n);
            while left > 0 {
                let k = left.min(zeros.len() as u64) as usize;
                db.write_all(&zeros[..k])?;
                left -= k as u64;
            }
            let f = db.into_inner().map_err(|e| e.into_error())?;
            f.sync_all()?;
            Ok(n)
        });
        let d = deltas_json(&deltas)?;
        Ok((b.join().map_err(|_| "base thread panicked")??, d))
    })?;
    let seconds = t0.elapsed().as_secs_f64();
    std::fs::remove_file(&db_path)?;
    println!(
        "{}",
        serde_json::json!({
            "seconds": seconds,
            "base_db_bytes": base_db_bytes,
            "output_bytes": output_bytes.max(base_db_bytes),
            "deltas": deltas.len(),
            "delta_json_bytes": delta_json_bytes,
        })
    );
    Ok(())
}

/// `--floor-compact STORE OUTPUT_DB WORK [THREADS]`
fn compact_role(args: &[String]) -> R<()> {
    let [store, output_db, work, rest @ ..] = args else {
        return Err("usage: --floor-compact STORE_DIR OUTPUT_DB WORK_DIR [THREADS]".into());
    };
    let threads: usize = match rest.first() {
        Some(t) => t.parse()?,
        None => 0,
    };
    let store = PathBuf::from(store);
    let (base, deltas) = newest_chain(&store)?;
    let t0 = Instant::now();
    let (base_db_bytes, delta_json_bytes) = std::thread::scope(|s| -> R<(u64, u64)> {
        let b = s.spawn(|| read_object(&base.1, base.0.compression, &mut io::sink()));
        let d = deltas_json(&deltas)?;
        Ok((b.join().map_err(|_| "base thread panicked")??, d))
    })?;
    let t_inputs = t0.elapsed().as_secs_f64();

    let t1 = Instant::now();
    let c = Compression::Gzip;
    let par = Parallelism::within(c, threads, 0, 16 << 20);
    let mut input = File::open(output_db)?;
    let mut db_hasher = Sha256::new();
    let mut db_bytes = 0u64;
    let mut trailer_sent = false;
    let mut read_error = None;
    // The database, then its sha256, hashed on the way as compact's pack does.
    let reader = std::iter::from_fn(|| {
        let mut buf = vec![0u8; 1 << 20];
        match input.read(&mut buf) {
            Ok(0) => {}
            Ok(n) => {
                db_hasher.update(&buf[..n]);
                db_bytes += n as u64;
                buf.truncate(n);
                return Some(buf);
            }
            Err(e) => {
                read_error = Some(e);
                return None;
            }
        }
        if trailer_sent {
            return None;
        }
        trailer_sent = true;
        Some(std::mem::take(&mut db_hasher).finalize().to_vec())
    });
    let object = Path::new(work).join("floor-object.gz");
    let out = Hashed {
        out: File::create(&object)?,
        hasher: Sha256::new(),
    };
    let out = compress_parallel(c, None, IterRead::new(reader), out, par)?;
    out.out.sync_all()?;
    let _ = out.hasher.finalize();
    if let Some(e) = read_error {
        return Err(e.into());
    }
    let object_bytes = std::fs::metadata(&object)?.len();
    let t_output = t1.elapsed().as_secs_f64();
    std::fs::remove_file(&object)?;
    println!(
        "{}",
        serde_json::json!({
            "seconds": t0.elapsed().as_secs_f64(),
            "seconds_inputs": t_inputs,
            "seconds_output": t_output,
            "base_db_bytes": base_db_bytes,
            "deltas": deltas.len(),
            "delta_json_bytes": delta_json_bytes,
            "output_db_bytes": db_bytes,
            "object_bytes": object_bytes,
            "threads": par.threads,
        })
    );
    Ok(())
}

/// A snapshot object of a local store: its parsed name and its file.
type Object = (SnapshotName, PathBuf);

/// The newest full snapshot of a local store's `v2/` and the deltas after it, as the plan
/// picks them.
fn newest_chain(store: &Path) -> R<(Object, Vec<Object>)> {
    let mut objects = Vec::new();
    for e in std::fs::read_dir(store.join("v2"))? {
        let e = e?;
        let Some(name) = e
            .file_name()
            .to_str()
            .and_then(|n| parse_snapshot_name(n).ok())
        else {
            continue;
        };
        objects.push((name, e.path()));
    }
    objects.sort_by_key(|(n, _)| (n.last_revision, n.created_on));
    let base_at = objects
        .iter()
        .rposition(|(n, _)| n.kind == Kind::Full)
        .ok_or("no full snapshot in the store")?;
    let deltas = objects.split_off(base_at + 1);
    let base = objects.pop().ok_or("no full snapshot in the store")?;
    Ok((base, deltas))
}

fn deltas_json(deltas: &[Object]) -> R<u64> {
    let mut n = 0;
    for (s, p) in deltas {
        n += read_object(p, s.compression, &mut io::sink())?;
    }
    Ok(n)
}

/// Hashes everything but the last 32 bytes written through it and keeps those apart: the
/// snapshot trailer.
struct Trailer<W> {
    out: W,
    hasher: Sha256,
    tail: Vec<u8>,
    written: u64,
}

impl<W: Write> Write for Trailer<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tail.extend_from_slice(buf);
        if self.tail.len() > 32 {
            let keep = self.tail.len() - 32;
            self.hasher.update(&self.tail[..keep]);
            self.out.write_all(&self.tail[..keep])?;
            self.written += keep as u64;
            self.tail.drain(..keep);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Decompresses one object into `out`, checking its trailer; returns the bytes before it.
fn read_object<W: Write>(path: &Path, c: Compression, out: W) -> R<u64> {
    let f = File::open(path)?;
    let mut t = Trailer {
        out,
        hasher: Sha256::new(),
        tail: Vec::with_capacity(1 << 20),
        written: 0,
    };
    decompress_to(c, f, &path.display().to_string(), &mut t)?;
    t.flush()?;
    let sum: [u8; 32] = t.hasher.finalize().into();
    if t.tail != sum {
        return Err(format!("{}: sha256 trailer mismatch", path.display()).into());
    }
    Ok(t.written)
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
