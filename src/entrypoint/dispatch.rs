//! Which etcdbrctl command lines etcd-restore answers itself, and how their flags are split
//! between etcd-restore and the upstream binary.
//!
//! The image's ENTRYPOINT hands us etcdbrctl's whole command line (etcd-druid sets only
//! `args`: `internal/component/statefulset/builder.go` `getBackupRestoreContainerCommandArgs`,
//! `internal/controller/compaction/reconciler.go` `getCompactionJobArgs`,
//! `internal/controller/etcdcopybackupstask/reconciler.go` `createJobArgs`). etcdbrctl's
//! commands are cobra commands named by the first argument (etcd-backup-restore v0.43.0
//! `cmd/root.go`); their flags are pflag flags (`--name=value`, `--name value`, `-p 8080`).

use std::ffi::{OsStr, OsString};

/// Where a command line goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `compact` and `initialize`: run by etcd-restore's command of the same name.
    Native(&'static str),
    /// `server`: etcd-restore's initialization API beside the upstream server
    /// ([`super::run_server`]).
    Server,
    /// Everything else (`snapshot`, `copy`, `restore`, `--help`, `--version`, unknown
    /// commands): the upstream binary, with argv and environment untouched.
    Upstream,
}

/// The route of etcdbrctl's arguments (without argv\[0\]). A help request always goes to
/// the upstream binary: its help describes the flags etcd-druid passes.
pub fn route(args: &[OsString]) -> Route {
    let asks_help = args
        .iter()
        .any(|a| a == "-h" || a == "--help" || a == "--help=true");
    if asks_help {
        return Route::Upstream;
    }
    match args.first().and_then(|a| a.to_str()) {
        Some("compact") => Route::Native("compact"),
        Some("initialize") => Route::Native("initialize"),
        Some("server") => Route::Server,
        _ => Route::Upstream,
    }
}

/// etcdbrctl's flags split for one of our commands.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Translated {
    /// What our command is given, in the original order.
    pub ours: Vec<OsString>,
    /// etcdbrctl flags our command has no use for (they configure what etcd-restore does not
    /// do, e.g. the embedded etcd's limits or the snapshot schedule), for a notice.
    pub dropped: Vec<String>,
}

/// How our command takes one flag.
enum Takes {
    /// A switch (`--strip-leases`): etcdbrctl's `--x=true` becomes `--x`, `--x=false` nothing.
    Switch,
    Value,
}

fn lookup_long(cmd: &clap::Command, name: &str) -> Option<Takes> {
    cmd.get_arguments()
        .find(|a| {
            a.get_long() == Some(name) || a.get_all_aliases().is_some_and(|al| al.contains(&name))
        })
        .map(takes)
}

fn lookup_short(cmd: &clap::Command, c: char) -> Option<Takes> {
    cmd.get_arguments()
        .find(|a| {
            a.get_short() == Some(c) || a.get_all_short_aliases().is_some_and(|al| al.contains(&c))
        })
        .map(takes)
}

fn takes(a: &clap::Arg) -> Takes {
    if a.get_num_args().is_some_and(|n| n.max_values() == 0)
        || matches!(
            a.get_action(),
            clap::ArgAction::SetTrue | clap::ArgAction::SetFalse | clap::ArgAction::Count
        )
    {
        Takes::Switch
    } else {
        Takes::Value
    }
}

/// Splits etcdbrctl's flags (the arguments after the command name) into those `cmd` (one of
/// our subcommands) accepts and those it does not. etcdbrctl's commands take no positional
/// arguments, so a word after a flag without `=` is that flag's value.
pub fn translate(args: &[OsString], cmd: &clap::Command) -> Translated {
    let mut out = Translated::default();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        let Some(text) = arg.to_str() else {
            out.ours.push(arg.clone());
            continue;
        };
        let (known, name, inline_value) = if let Some(long) = text.strip_prefix("--") {
            let (name, value) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (long, None),
            };
            (lookup_long(cmd, name), format!("--{name}"), value)
        } else if let Some(short) = text.strip_prefix('-').filter(|s| !s.is_empty()) {
            let mut chars = short.chars();
            let c = chars.next().unwrap_or('-');
            let rest = chars.as_str();
            let value = rest
                .strip_prefix('=')
                .or((!rest.is_empty()).then_some(rest));
            (lookup_short(cmd, c), format!("-{c}"), value)
        } else {
            out.ours.push(arg.clone());
            continue;
        };
        let next_is_value = inline_value.is_none()
            && args
                .get(i)
                .and_then(|n| n.to_str())
                .is_some_and(|n| !n.starts_with('-'));
        match known {
            Some(Takes::Switch) => match inline_value {
                Some("false") => {}
                _ => out.ours.push(OsString::from(&name)),
            },
            Some(Takes::Value) => {
                out.ours.push(arg.clone());
                if next_is_value {
                    out.ours.push(args[i].clone());
                    i += 1;
                }
            }
            None => {
                let mut shown = text.to_string();
                if next_is_value {
                    shown = format!("{shown} {}", args[i].to_string_lossy());
                    i += 1;
                }
                out.dropped.push(shown);
            }
        }
    }
    out
}

/// etcdbrctl's `--server-port`/`-p` (pkg/server/init.go `addFlags`), default 8080.
pub const DEFAULT_SERVER_PORT: u16 = 8080;

/// The upstream server's port when `--upstream-port` is not given: the next one (the previous
/// one for 65535). Every pod of a cluster derives the same, which the upstream's leader
/// delegation needs (it targets the leader at its own port).
pub fn default_upstream_port(public: u16) -> u16 {
    public.checked_add(1).unwrap_or(public - 1)
}

/// The value of `--server-port`/`-p` in etcdbrctl's `server` arguments (the last one wins, as
/// with pflag), or `None` when absent.
pub fn server_port(args: &[OsString]) -> Result<Option<u16>, String> {
    let mut port = None;
    let mut i = 0;
    while i < args.len() {
        if let Some((value, used)) = port_value(args, i) {
            port = Some(
                value
                    .parse::<u16>()
                    .map_err(|e| format!("--server-port {value:?}: {e}"))?,
            );
            i += used;
        } else {
            i += 1;
        }
    }
    Ok(port)
}

/// At `args[i]`: the server port's value and how many arguments it spans.
fn port_value(args: &[OsString], i: usize) -> Option<(String, usize)> {
    let text = args[i].to_str()?;
    for prefix in ["--server-port", "-p"] {
        let Some(rest) = text.strip_prefix(prefix) else {
            continue;
        };
        if rest.is_empty() {
            let next = args.get(i + 1).and_then(|n| n.to_str())?;
            return Some((next.to_string(), 2));
        }
        if let Some(v) = rest.strip_prefix('=') {
            return Some((v.to_string(), 1));
        }
        if prefix == "-p" {
            return Some((rest.to_string(), 1));
        }
    }
    None
}

/// The upstream server's arguments: etcdbrctl's own, unchanged and in order, except that
/// `--server-port` names the internal port.
pub fn upstream_server_args(args: &[OsString], port: u16) -> Vec<OsString> {
    let mut out = Vec::with_capacity(args.len() + 1);
    let mut i = 0;
    while i < args.len() {
        match port_value(args, i) {
            Some((_, used)) => i += used,
            None => {
                out.push(args[i].clone());
                i += 1;
            }
        }
    }
    out.push(OsString::from(format!("--server-port={port}")));
    out
}

/// Whether `args` carries `--config-file`: etcdbrctl then reads its flags from a file this
/// dispatcher cannot see into (pkg/server/init.go `loadConfigFromFile`).
pub fn has_config_file(args: &[OsString]) -> bool {
    args.iter().any(|a| {
        let a: &OsStr = a;
        a == "--config-file" || a.to_str().is_some_and(|s| s.starts_with("--config-file="))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    fn cmd() -> clap::Command {
        clap::Command::new("t")
            .arg(clap::Arg::new("data_dir").long("data-dir").short('d'))
            .arg(
                clap::Arg::new("port")
                    .long("server-port")
                    .short('p')
                    .alias("port-alias"),
            )
            .arg(
                clap::Arg::new("strip")
                    .long("strip-leases")
                    .action(clap::ArgAction::SetTrue),
            )
    }

    #[test]
    fn routes_by_first_argument_and_help_goes_upstream() {
        assert_eq!(route(&os(&["compact", "--x"])), Route::Native("compact"));
        assert_eq!(route(&os(&["initialize"])), Route::Native("initialize"));
        assert_eq!(route(&os(&["server", "-p", "1"])), Route::Server);
        for up in [
            &["snapshot"][..],
            &["copy"],
            &["restore"],
            &["--help"],
            &["-v"],
            &[],
            &["nonsense"],
            &["server", "--help"],
            &["compact", "-h"],
        ] {
            assert_eq!(route(&os(up)), Route::Upstream, "{up:?}");
        }
    }

    #[test]
    fn translate_keeps_known_flags_and_drops_the_rest_with_their_values() {
        let t = translate(
            &os(&[
                "--data-dir=/a",
                "--schedule",
                "*/5 * * * *",
                "-d",
                "/b",
                "--use-etcd-wrapper=true",
                "--strip-leases=true",
                "--strip-leases=false",
                "-p8080",
                "--port-alias=9",
                "--compress-snapshots",
            ]),
            &cmd(),
        );
        assert_eq!(
            t.ours,
            os(&[
                "--data-dir=/a",
                "-d",
                "/b",
                "--strip-leases",
                "-p8080",
                "--port-alias=9"
            ])
        );
        assert_eq!(
            t.dropped,
            vec![
                "--schedule */5 * * * *".to_string(),
                "--use-etcd-wrapper=true".into(),
                "--compress-snapshots".into()
            ]
        );
    }

    #[test]
    fn server_port_is_replaced_in_every_spelling() {
        for (args, port) in [
            (&["--server-port=8080", "--x=1"][..], Some(8080)),
            (&["--server-port", "9"], Some(9)),
            (&["-p", "7", "--x"], Some(7)),
            (&["-p=6"], Some(6)),
            (&["-p5", "--server-port=4"], Some(4)),
            (&["--x=1"], None),
        ] {
            let args = os(args);
            assert_eq!(server_port(&args), Ok(port), "{args:?}");
            let up = upstream_server_args(&args, 18080);
            assert_eq!(up.last(), Some(&OsString::from("--server-port=18080")));
            assert_eq!(
                server_port(&up),
                Ok(Some(18080)),
                "{up:?} has another port left"
            );
            assert_eq!(
                up.iter().filter(|a| a.to_str() == Some("--x=1")).count(),
                args.iter().filter(|a| a.to_str() == Some("--x=1")).count()
            );
        }
        assert!(server_port(&os(&["--server-port=http"])).is_err());
        assert_eq!(default_upstream_port(8080), 8081);
        assert_eq!(default_upstream_port(65535), 65534);
    }
}
