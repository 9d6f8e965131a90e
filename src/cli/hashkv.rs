//! `etcd-restore hashkv`: etcd's `HashKV` of a data directory, computed offline — what
//! `etcdctl endpoint hashkv` would report once etcd runs on it. etcd first applies what its
//! WAL holds past the database's `consistent_index` (`etcd_restore::wal_ahead`): a directory
//! whose WAL runs ahead is refused (exit 3), since the hash of its database is not the one
//! etcd will report.

use std::path::PathBuf;
use std::process::ExitCode;

use etcd_restore::backend::hash_kv_file;
use etcd_restore::datadir::Layout;
use etcd_restore::wal_ahead::{WalAhead, wal_ahead};

/// The database's hash is not what etcd will report: its WAL holds changes past it.
const EXIT_WAL_AHEAD: u8 = 3;

#[derive(clap::Args, Debug)]
pub struct HashKvArgs {
    /// The etcd data directory (its member/snap/db is read, never written).
    #[arg(short = 'd', long, value_name = "DIR")]
    data_dir: PathBuf,

    /// The WAL directory, when etcd runs with --wal-dir (default: <data-dir>/member/wal). Its
    /// entries past the database's consistent index are what etcd applies when it starts.
    #[arg(long, value_name = "DIR")]
    wal_dir: Option<PathBuf>,

    /// Hash the database as it is, even when the WAL holds changes etcd would apply first
    /// (still reported, exit 0).
    #[arg(long)]
    ignore_wal: bool,

    /// The revision to hash up to (0 = the current revision).
    #[arg(long, value_name = "REVISION", default_value_t = 0)]
    rev: i64,

    /// Machine-readable output: {hash, compact_revision, hash_revision, current_revision,
    /// wal}, where wal is null (no WAL directory) or {wal_dir, consistent_index, wal_commit,
    /// wal_last_index, committed_changes, uncommitted_changes, in_step}; refused: {error, wal}.
    #[arg(long)]
    json: bool,
}

#[derive(serde::Serialize)]
struct WalReport<'a> {
    #[serde(flatten)]
    ahead: &'a WalAhead,
    in_step: bool,
}

pub fn run(args: HashKvArgs) -> anyhow::Result<ExitCode> {
    let layout = Layout::new(&args.data_dir).with_wal_dir(args.wal_dir.clone());
    if let Some(w) = &args.wal_dir
        && !w.is_dir()
    {
        anyhow::bail!("--wal-dir {}: no such directory", w.display());
    }
    let ahead = wal_ahead(&layout)?;
    let wal = ahead.as_ref().map(|a| WalReport {
        ahead: a,
        in_step: a.in_step(),
    });
    if let Some(a) = ahead.as_ref().filter(|a| !a.in_step()) {
        let uncommitted = if a.uncommitted_changes > 0 {
            format!(
                " and {} uncommitted one(s), which a one-member cluster applies too",
                a.uncommitted_changes
            )
        } else {
            String::new()
        };
        let why = format!(
            "the WAL in {} holds {} committed change(s){uncommitted} past the database's consistent index {} (WAL commit {}): etcd applies them when it starts, so its HashKV will differ from this database's",
            a.wal_dir.display(),
            a.committed_changes,
            a.consistent_index,
            a.wal_commit,
        );
        if !args.ignore_wal {
            if args.json {
                println!("{}", serde_json::json!({ "error": why, "wal": wal }));
            }
            eprintln!(
                "error: {why}. Start etcd on the directory and ask it (etcdctl endpoint hashkv), or hash after it ran; --ignore-wal hashes the database as it is"
            );
            return Ok(ExitCode::from(EXIT_WAL_AHEAD));
        }
        eprintln!("warning: {why}");
    }
    if ahead.is_none() {
        eprintln!(
            "warning: no WAL at {}: this is the database's hash; if etcd runs with --wal-dir, pass the same --wal-dir to check what etcd applies first",
            layout.wal_dir().display()
        );
    }
    let h = hash_kv_file(&layout.db(), args.rev)?;
    if args.json {
        let mut v = serde_json::to_value(h)?;
        v["wal"] = serde_json::to_value(&wal)?;
        println!("{v}");
    } else {
        println!(
            "hash {} (revision {}, compact revision {}, current revision {})",
            h.hash, h.hash_revision, h.compact_revision, h.current_revision
        );
    }
    Ok(ExitCode::SUCCESS)
}
