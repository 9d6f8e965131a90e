//! etcd-restore: the binary edge. Parses the command line, sets up logging once, runs the
//! command on a tokio runtime and turns errors into an exit code.

mod cli;

use std::io::IsTerminal as _;
use std::process::ExitCode;

use clap::{CommandFactory as _, Parser};
use tracing_subscriber::EnvFilter;

#[derive(Parser, Debug)]
#[command(
    name = "etcd-restore",
    version,
    about = "Restore, compact and validate etcd data directories from etcd-backup-restore backups, without running etcd"
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    /// More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides it.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,

    #[command(subcommand)]
    command: cli::Command,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
}

fn init_logging(format: LogFormat, verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // Colours only for a person at a terminal: escape codes in a pod's log or a CI capture
    // are noise, and NO_COLOR (no-color.org) turns them off everywhere.
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    // A second initialisation (tests calling main twice) is harmless; ignore it.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// glibc raises its mmap threshold to the size of each large block freed (up to 32 MiB), after
/// which multi-MiB buffers (decompressed deltas, write buffers) come from per-thread arenas
/// that keep their pages after `free`: restore's peak RSS grew from ~50 to ~75 MiB that way.
/// A fixed 1 MiB threshold returns such blocks to the kernel when they are freed. Each thread
/// that allocates may also get an arena of its own, whose freed pages stay resident until its
/// top is trimmed: two arenas and a 1 MiB trim threshold keep that retention small.
fn bound_malloc_retention() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 20);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

fn main() -> ExitCode {
    // Behave like other Unix tools when the reader of stdout goes away (`db dump | head`):
    // end quietly instead of failing on EPIPE.
    // SAFETY: called before any other thread exists; SIG_DFL is a valid disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    bound_malloc_retention();
    let cli = Cli::parse();
    // In etcdbrctl's place, log what etcdbrctl logs by default (logrus at info).
    let verbose = match cli.command {
        cli::Command::Etcdbrctl(_) => cli.verbose.max(1),
        _ => cli.verbose,
    };
    init_logging(cli.log_format, verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(cli::run(cli.command, Cli::command())) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", etcd_restore::show::causes(e.chain()));
            ExitCode::from(1)
        }
    }
}
