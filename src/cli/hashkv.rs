//! `etcd-restore hashkv`: etcd's `HashKV` of a data directory, computed offline — what
//! `etcdctl endpoint hashkv` would report once etcd runs on it.

use std::path::PathBuf;
use std::process::ExitCode;

use etcd_restore::backend::hash_kv_file;
use etcd_restore::datadir::Layout;

#[derive(clap::Args, Debug)]
pub struct HashKvArgs {
    /// The etcd data directory (its member/snap/db is read, never written).
    #[arg(short = 'd', long, value_name = "DIR")]
    data_dir: PathBuf,

    /// The revision to hash up to (0 = the current revision).
    #[arg(long, value_name = "REVISION", default_value_t = 0)]
    rev: i64,

    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

pub fn run(args: HashKvArgs) -> anyhow::Result<ExitCode> {
    let h = hash_kv_file(&Layout::new(&args.data_dir).db(), args.rev)?;
    if args.json {
        println!("{}", serde_json::to_string(&h)?);
    } else {
        println!(
            "hash {} (revision {}, compact revision {}, current revision {})",
            h.hash, h.hash_revision, h.compact_revision, h.current_revision
        );
    }
    Ok(ExitCode::SUCCESS)
}
