//! `etcd-restore db check|dump|stats FILE`: the bbolt engine on any bbolt file.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use bbolt::check::{CheckOptions, check_file};
use bbolt::{Db, OpenOptions};
use serde_json::json;

#[derive(clap::Subcommand, Debug)]
pub enum DbCommand {
    /// Check the file's structure like `bbolt check` (and more). Exit 0 when clean, 3 with
    /// findings.
    Check {
        /// A bbolt file (e.g. member/snap/db).
        file: PathBuf,
        /// Machine-readable report.
        #[arg(long)]
        json: bool,
    },
    /// Every bucket, key and value as JSON lines (base64), in the Go oracle's format.
    Dump { file: PathBuf },
    /// Page, bucket and key counts; etcd's dbSize and dbSizeInUse.
    Stats {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

/// Exit code of `db check` (and of validate) when the file is damaged.
pub const EXIT_CORRUPT: u8 = 3;

pub fn run(cmd: DbCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        DbCommand::Check { file, json } => {
            let r = check_file(&file, &CheckOptions::default())
                .with_context(|| format!("checking {}", file.display()))?;
            if json {
                let findings: Vec<_> = r
                    .findings
                    .iter()
                    .map(|f| json!({"page": f.page, "kind": f.kind.as_str(), "message": f.message}))
                    .collect();
                let out = json!({
                    "file": file,
                    "clean": r.is_clean(),
                    "findings": findings,
                    "suppressed": r.suppressed,
                    "page_size": r.page_size,
                    "file_len": r.file_len,
                    "txid": r.meta.as_ref().map(|m| m.txid),
                    "pages_visited": r.pages_visited,
                    "buckets": r.buckets,
                    "keys": r.keys,
                });
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                for f in &r.findings {
                    println!("{f}");
                }
                if r.is_clean() {
                    println!(
                        "OK ({} pages, {} buckets, {} keys)",
                        r.pages_visited, r.buckets, r.keys
                    );
                } else {
                    println!("{} errors found", r.findings.len() as u64 + r.suppressed);
                }
            }
            Ok(if r.is_clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_CORRUPT)
            })
        }
        DbCommand::Dump { file } => {
            let db = Db::open(&file, OpenOptions::read_only())
                .with_context(|| format!("opening {}", file.display()))?;
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            bbolt::dump::write_dump(&db, &mut out)
                .with_context(|| format!("dumping {}", file.display()))?;
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        DbCommand::Stats { file, json } => {
            let db = Db::open(&file, OpenOptions::read_only())
                .with_context(|| format!("opening {}", file.display()))?;
            let tx = db.begin_read();
            let s =
                bbolt::stats::stats(&tx).with_context(|| format!("reading {}", file.display()))?;
            let buckets: Vec<_> = s
                .top_level
                .iter()
                .map(|b| {
                    json!({
                        "name": String::from_utf8_lossy(&b.name),
                        "inline": b.inline, "keys": b.keys, "nested_buckets": b.nested_buckets,
                        "pages": b.pages, "depth": b.depth,
                        "key_bytes": b.key_bytes, "value_bytes": b.value_bytes,
                    })
                })
                .collect();
            if json {
                let out = json!({
                    "file": file, "page_size": s.page_size, "txid": s.txid, "hwm": s.hwm,
                    "file_len": s.file_len, "db_size": s.size(), "db_size_in_use": s.size_in_use(),
                    "freelist_page": s.freelist_page, "freelist_pages": s.freelist_pages,
                    "free_pages": s.free_pages, "branch_pages": s.branch_pages,
                    "branch_overflow": s.branch_overflow, "leaf_pages": s.leaf_pages,
                    "leaf_overflow": s.leaf_overflow, "buckets": s.buckets,
                    "inline_buckets": s.inline_buckets, "keys": s.keys,
                    "key_bytes": s.key_bytes, "value_bytes": s.value_bytes,
                    "top_level": buckets,
                });
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                println!("page size      {}", s.page_size);
                println!("txid           {}", s.txid);
                println!(
                    "db size        {} ({} pages; file {} bytes)",
                    s.size(),
                    s.hwm,
                    s.file_len
                );
                println!(
                    "db size in use {} ({} free pages)",
                    s.size_in_use(),
                    s.free_pages
                );
                println!(
                    "pages          {} branch (+{} overflow), {} leaf (+{} overflow)",
                    s.branch_pages, s.branch_overflow, s.leaf_pages, s.leaf_overflow
                );
                println!("buckets        {} ({} inline)", s.buckets, s.inline_buckets);
                println!(
                    "keys           {} ({} key bytes, {} value bytes)",
                    s.keys, s.key_bytes, s.value_bytes
                );
                for b in &s.top_level {
                    println!(
                        "  {:<16} {:>10} keys {:>8} pages depth {}{}",
                        String::from_utf8_lossy(&b.name),
                        b.keys,
                        b.pages,
                        b.depth,
                        if b.inline { " (inline)" } else { "" }
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
