//! Command-line commands, one file each. Every command takes the shared store flags
//! ([`etcd_restore::snapstore::StoreArgs`]) by flattening them.

mod batch;
mod compact;
mod compactor;
mod db;
mod docgen;
mod duration;
mod etcd_conn;
mod etcdbrctl;
mod hashkv;
mod initialize;
mod ls;
mod metrics;
mod progress;
mod restore;
mod serve;
mod server_compat;
mod validate;
mod wal;

use std::process::ExitCode;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// List the snapshots in a backup store and the restore plan.
    Ls(ls::LsArgs),
    /// Restore a data directory (or one per member) from the backups, without running etcd.
    Restore(Box<restore::RestoreArgs>),
    /// etcd's HashKV of a data directory, computed offline (what `etcdctl endpoint hashkv`
    /// would say).
    Hashkv(hashkv::HashKvArgs),
    /// Fold the backups into one new full snapshot (etcd's compaction + defrag), without etcd.
    Compact(Box<compact::CompactArgs>),
    /// Inspect a bbolt database file: check, dump, stats.
    #[command(subcommand)]
    Db(db::DbCommand),
    /// Inspect etcd's WAL and snap files: verify, dump.
    #[command(subcommand)]
    Wal(wal::WalCommand),
    /// Check a data directory the way etcd-backup-restore does (sanity|full|auto), natively.
    Validate(Box<validate::ValidateArgs>),
    /// Serve etcd-backup-restore's initialization HTTP API for etcd-wrapper: validate, and
    /// restore when needed, before etcd starts.
    Serve(Box<serve::ServeArgs>),
    /// Validate the data directory and restore it when missing, corrupt or stale, then exit
    /// (etcdbrctl initialize; for an init container before etcd starts).
    Initialize(Box<initialize::InitializeArgs>),
    /// The image entrypoint: takes etcdbrctl's command line and runs `compact`, `initialize`
    /// and the initialization API of `server` natively, the rest with the upstream binary.
    Etcdbrctl(Box<etcdbrctl::EtcdbrctlArgs>),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(docgen::CompletionsArgs),
    /// Write man pages for every command into a directory.
    Man(docgen::ManArgs),
}

/// `top` is the whole command line's definition, for the generators that describe it.
pub async fn run(command: Command, top: clap::Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Completions(args) => docgen::completions(&args, top),
        Command::Man(args) => docgen::man(&args, top),
        Command::Ls(args) => ls::run(args).await,
        Command::Initialize(args) => initialize::run(*args).await,
        Command::Restore(args) => restore::run(*args).await,
        Command::Compact(args) => compact::run(*args).await,
        Command::Hashkv(args) => hashkv::run(args),
        Command::Db(cmd) => db::run(cmd),
        Command::Wal(cmd) => wal::run(cmd),
        Command::Validate(args) => validate::run(*args).await,
        Command::Serve(args) => serve::run(*args).await,
        Command::Etcdbrctl(args) => etcdbrctl::run(*args, top).await,
    }
}

/// `--to-time`: RFC 3339 (`2024-05-06T07:08:09Z`) or Unix seconds.
pub fn parse_time(s: &str) -> Result<i64, String> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse::<i64>().map_err(|e| e.to_string());
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp())
        .map_err(|e| format!("{s:?} is neither RFC 3339 nor Unix seconds: {e}"))
}

/// `--unknown-lease-ttl`: Go-style durations (`1h`, `90m`, `1h30m`, `45s`) or plain seconds;
/// at least a second, as etcd's lease TTLs are.
pub fn parse_ttl(s: &str) -> Result<i64, String> {
    let bad = || format!("{s:?} is not a duration like 1h, 30m, 1h30m, 45s or 3600");
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        let n: i64 = s.parse().map_err(|_| bad())?;
        return if n >= 1 { Ok(n) } else { Err(bad()) };
    }
    let (mut total, mut num) = (0i64, String::new());
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let unit = match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return Err(bad()),
        };
        let n: i64 = num.parse().map_err(|_| bad())?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
        num.clear();
    }
    if !num.is_empty() || total < 1 {
        return Err(bad());
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::parse_ttl;

    #[test]
    fn ttl_durations_parse_like_go() {
        assert_eq!(parse_ttl("3600"), Ok(3600));
        assert_eq!(parse_ttl("1h30m"), Ok(5400));
        assert_eq!(parse_ttl("45s"), Ok(45));
        for bad in ["", "0", "0s", "1d", "h", "10 m", "5m3"] {
            assert!(parse_ttl(bad).is_err(), "{bad:?}");
        }
    }
}
