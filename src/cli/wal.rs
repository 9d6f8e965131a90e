//! `etcd-restore wal verify|dump DATA_DIR`: etcd's WAL and snap files.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use etcd_restore::datadir::Layout;
use wal::OsFs;

#[derive(clap::Subcommand, Debug)]
pub enum WalCommand {
    /// Verify the WAL CRC chain and the snap files of a data directory. Exit 0 when intact,
    /// 4 when only a torn tail needs repair (etcd repairs it at start-up), 3 when corrupt.
    Verify {
        /// The etcd data directory.
        data_dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Every WAL record, one line each, with its segment and offset.
    Dump { data_dir: PathBuf },
}

pub fn run(cmd: WalCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        WalCommand::Verify { data_dir, json } => {
            let r = wal::verify_data_dir(&OsFs, &data_dir)
                .with_context(|| format!("verifying {}", data_dir.display()))?;
            if json {
                println!("{}", r.to_json());
            } else {
                print!("{}", r.to_text());
            }
            Ok(if r.is_ok() {
                ExitCode::SUCCESS
            } else if r.is_usable() {
                ExitCode::from(4)
            } else {
                ExitCode::from(super::db::EXIT_CORRUPT)
            })
        }
        WalCommand::Dump { data_dir } => {
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let end = wal::dump::dump(&OsFs, &Layout::new(&data_dir).wal_dir(), &mut out);
            use std::io::Write as _;
            out.flush()?;
            end.with_context(|| format!("reading the WAL of {}", data_dir.display()))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
