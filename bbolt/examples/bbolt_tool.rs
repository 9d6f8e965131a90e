//! Developer tool: `cargo run -p bbolt --example bbolt_tool -- dump|check|stats FILE`.

use std::io::Write;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: bbolt_tool dump|check|stats FILE");
        std::process::exit(2);
    }
    let opts = bbolt::OpenOptions::read_only();
    let code = match args[1].as_str() {
        "dump" => match bbolt::Db::open(&args[2], opts) {
            Ok(db) => {
                let stdout = std::io::stdout();
                let mut w = std::io::BufWriter::new(stdout.lock());
                match bbolt::dump::write_dump(&db, &mut w).and_then(|()| {
                    w.flush()
                        .map_err(|e| bbolt::Error::InvalidArgument(e.to_string()))
                }) {
                    Ok(()) => 0,
                    Err(e) => {
                        eprintln!("{e}");
                        1
                    }
                }
            }
            Err(e) => {
                eprintln!("{e}");
                2
            }
        },
        "append" => append(&args[2]),
        "seeds" => seeds(&args[2]),
        "replay" => replay(&args[2]),
        "restore-sim" => restore_sim(&args[2]),
        "gen" => {
            let n: u64 = std::env::var("KEYS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(3_300_000);
            let t = std::time::Instant::now();
            bbolt_gen(&args[2], n);
            eprintln!("generated {n} keys in {:.1}s", t.elapsed().as_secs_f64());
            0
        }
        "check" => {
            let t = std::time::Instant::now();
            match bbolt::check::check_file(args[2].as_ref(), &Default::default()) {
                Ok(r) => {
                    let secs = t.elapsed().as_secs_f64();
                    for f in &r.findings {
                        println!("{f}");
                    }
                    eprintln!(
                        "{} findings, {} pages visited, {:.3}s, {:.0} MB/s",
                        r.findings.len(),
                        r.pages_visited,
                        secs,
                        r.file_len as f64 / secs / 1e6
                    );
                    i32::from(!r.is_clean())
                }
                Err(e) => {
                    eprintln!("{e}");
                    2
                }
            }
        }
        _ => {
            eprintln!("unknown command");
            2
        }
    };
    std::process::exit(code);
}

/// Appends 1M revision keys with 300-byte values in 64 MiB batches to a new file.
fn append(path: &str) -> i32 {
    let _ = std::fs::remove_file(path);
    let db = bbolt::Db::open(
        path,
        bbolt::OpenOptions {
            create: true,
            free_space: bbolt::FreeSpace::AppendOnly,
            no_sync: std::env::var("NO_SYNC").is_ok(),
            ..Default::default()
        },
    )
    .unwrap();
    let value = vec![b'v'; 300];
    let t = std::time::Instant::now();
    let n = 1_000_000u64;
    let mut rev = 0u64;
    while rev < n {
        let mut tx = db.begin_write().unwrap();
        let mut b = tx.create_bucket_if_not_exists(b"key").unwrap();
        b.set_fill_percent(0.9);
        let mut k = [0u8; 17];
        k[8] = b'_';
        let mut i = 0;
        while rev < n && i < 100_000 {
            k[..8].copy_from_slice(&rev.to_be_bytes());
            b.put(&k, &value).unwrap();
            rev += 1;
            i += 1;
        }
        tx.commit().unwrap();
    }
    let secs = t.elapsed().as_secs_f64();
    eprintln!("{n} keys in {secs:.3}s = {:.0} keys/s", n as f64 / secs);
    0
}

/// An etcd-like database: `key` bucket with 17-byte revision keys and ~300-byte
/// KeyValue-shaped values written in increasing order with fill 0.9, plus small buckets.
fn bbolt_gen(path: &str, n: u64) {
    let _ = std::fs::remove_file(path);
    let db = bbolt::Db::open(
        path,
        bbolt::OpenOptions {
            create: true,
            free_space: bbolt::FreeSpace::AppendOnly,
            no_sync: true,
            ..Default::default()
        },
    )
    .unwrap();
    db.update(|tx| {
        for b in [
            &b"alarm"[..],
            b"auth",
            b"authRoles",
            b"authUsers",
            b"cluster",
            b"lease",
            b"members",
            b"members_removed",
            b"meta",
        ] {
            tx.create_bucket(b)?;
        }
        Ok(())
    })
    .unwrap();
    let mut rev = 2u64;
    while rev < n + 2 {
        let mut tx = db.begin_write().unwrap();
        let mut b = tx.create_bucket_if_not_exists(b"key").unwrap();
        b.set_fill_percent(0.9);
        for _ in 0..100_000 {
            if rev >= n + 2 {
                break;
            }
            let mut k = [0u8; 17];
            k[..8].copy_from_slice(&rev.to_be_bytes());
            k[8] = b'_';
            let key = format!("/registry/pods/default/pod-{:08}", rev % 50_000);
            let mut v = Vec::with_capacity(320);
            v.push(0x0a);
            v.push(key.len() as u8);
            v.extend_from_slice(key.as_bytes());
            v.extend_from_slice(&[0x10, 0x02, 0x18, 0x04, 0x20, 0x01, 0x2a, 0xc8, 0x02]);
            v.extend(std::iter::repeat_n((rev % 251) as u8, 0x148));
            b.put(&k, &v).unwrap();
            rev += 1;
        }
        tx.commit().unwrap();
    }
}

/// What restore does to a base database: append revisions to `key` (and bump `meta`) in
/// bounded commits, never walking the tree. KEYS (200000) and BATCH (20000) from the env.
fn restore_sim(path: &str) -> i32 {
    let env = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let (n, batch) = (env("KEYS", 200_000), env("BATCH", 20_000));
    let db = bbolt::Db::open(
        path,
        bbolt::OpenOptions {
            free_space: bbolt::FreeSpace::AppendOnly,
            ..Default::default()
        },
    )
    .unwrap();
    let last = {
        let tx = db.begin_read();
        let b = tx.bucket(b"key").unwrap().unwrap();
        let e = b.cursor().last().unwrap().unwrap();
        u64::from_be_bytes(e.key[..8].try_into().unwrap())
    };
    let t = std::time::Instant::now();
    let value = vec![b'r'; 300];
    let mut done = 0;
    while done < n {
        let mut tx = db.begin_write().unwrap();
        let mut b = tx.bucket_mut(b"key").unwrap().unwrap();
        b.set_fill_percent(0.9);
        let mut k = [0u8; 17];
        k[8] = b'_';
        for _ in 0..batch.min(n - done) {
            k[..8].copy_from_slice(&(last + 1 + done).to_be_bytes());
            b.put(&k, &value).unwrap();
            done += 1;
        }
        let mut m = tx.bucket_mut(b"meta").unwrap().unwrap();
        m.put(b"consistent_index", &done.to_be_bytes()).unwrap();
        tx.commit().unwrap();
    }
    let secs = t.elapsed().as_secs_f64();
    eprintln!(
        "appended {n} keys in {secs:.2}s = {:.0} keys/s",
        n as f64 / secs
    );
    0
}

/// Small databases (512- and 1024-byte pages) as a fuzzing seed corpus in DIR.
fn seeds(dir: &str) -> i32 {
    std::fs::create_dir_all(dir).unwrap();
    for (i, (ps, sync)) in [(512u32, false), (512, true), (1024, false), (1024, true)]
        .into_iter()
        .enumerate()
    {
        let path = std::path::Path::new(dir).join(format!("seed-{i}.db"));
        let _ = std::fs::remove_file(&path);
        let db = bbolt::Db::open(
            &path,
            bbolt::OpenOptions {
                create: true,
                page_size: ps,
                sync_freelist: sync,
                no_sync: true,
                ..Default::default()
            },
        )
        .unwrap();
        db.update(|tx| {
            let mut k = tx.create_bucket(b"key")?;
            for j in 0..60u32 {
                k.put(&j.to_be_bytes(), &vec![b'v'; (j % 40) as usize])?;
            }
            k.create_bucket(b"nested")?.put(b"a", b"b")?;
            let mut m = tx.create_bucket(b"meta")?;
            m.put(b"big", &[1u8; 1500])?;
            tx.create_bucket(b"tiny")?.put(b"x", b"y")?;
            Ok(())
        })
        .unwrap();
        db.update(|tx| {
            let mut k = tx.bucket_mut(b"key")?.unwrap();
            for j in (0..60u32).step_by(3) {
                k.delete(&j.to_be_bytes())?;
            }
            Ok(())
        })
        .unwrap();
    }
    let path = std::path::Path::new(dir).join("seed-bulk.db");
    let _ = std::fs::remove_file(&path);
    let mut l = bbolt::bulk::BulkLoader::create(
        &path,
        bbolt::bulk::BulkOptions {
            page_size: 512,
            no_sync: true,
            ..Default::default()
        },
    )
    .unwrap();
    l.begin_bucket(b"key").unwrap();
    for j in 0..80u32 {
        l.put(&j.to_be_bytes(), b"value").unwrap();
    }
    l.end_bucket().unwrap();
    l.finish().unwrap();
    0
}

/// Times checker + readers over every file in DIR (fuzz corpus triage); prints the slowest.
fn replay(dir: &str) -> i32 {
    let mut times = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let data = std::fs::read(e.path()).unwrap();
        let t = std::time::Instant::now();
        let r = bbolt::check::check_bytes(
            &data,
            &bbolt::check::CheckOptions {
                max_findings: 64,
                mapped_budget: 0,
            },
        );
        let t1 = t.elapsed();
        if let Ok(tx) = bbolt::ReadTx::from_bytes(&data) {
            let _ = bbolt::dump::write_dump_tx(&tx, &mut std::io::sink());
            let _ = bbolt::stats::stats(&tx);
        }
        times.push((t.elapsed(), t1, r.findings.len(), e.path()));
    }
    times.sort();
    for (all, chk, n, p) in times.iter().rev().take(5) {
        println!("{all:?} (check {chk:?}, {n} findings) {}", p.display());
    }
    println!(
        "{} files, total {:?}",
        times.len(),
        times.iter().map(|t| t.0).sum::<std::time::Duration>()
    );
    0
}
