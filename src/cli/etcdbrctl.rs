//! `etcd-restore etcdbrctl [--upstream PATH] -- ARGS...`: the image entrypoint that takes
//! etcdbrctl's command line (deploy/Containerfile's ENTRYPOINT) and dispatches it
//! (src/entrypoint, docs/operations.md "Adopting under etcd-druid").

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::FromArgMatches as _;
use etcd_restore::entrypoint::dispatch::{
    DEFAULT_SERVER_PORT, Route, default_upstream_port, has_config_file, route, server_port,
    translate, upstream_server_args,
};
use etcd_restore::entrypoint::{ServerPlan, run_server};

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Dispatch: `compact` and `initialize` run etcd-restore's commands \
(etcdbrctl flags they have no use for are reported and ignored); `server` runs etcd-restore's \
initialization API on --server-port beside the upstream server on --upstream-port, proxying \
every other path to it; anything else (snapshot, copy, restore, --help, ...) execs the upstream \
binary with the arguments and environment unchanged. Exit code: the command's, or for `server` \
the upstream server's (128 + signal when a signal ended it), 1 when etcd-restore's server \
failed."
)]
pub struct EtcdbrctlArgs {
    /// The upstream etcdbrctl binary (in the upstream image: /etcdbrctl).
    #[arg(long, value_name = "PATH", default_value = "/etcdbrctl")]
    upstream: PathBuf,

    /// `server`: the port the upstream server listens on (default: --server-port + 1). It binds
    /// every interface, and peers' servers reach their leader on it (docs/operations.md).
    #[arg(long, value_name = "PORT")]
    upstream_port: Option<u16>,

    /// etcdbrctl's command line: the command and its flags.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ETCDBRCTL ARGS"
    )]
    args: Vec<OsString>,
}

/// `top` is the whole command line's definition: `compact`, `initialize` and `server` are
/// parsed with etcd-restore's own commands.
pub async fn run(args: EtcdbrctlArgs, top: clap::Command) -> anyhow::Result<ExitCode> {
    match route(&args.args) {
        Route::Upstream => Err(exec(&args.upstream, &args.args)),
        Route::Native(name) => {
            let Some(cmd) = parse_ours(&top, name, &args.args[1..])? else {
                return Ok(ExitCode::from(2));
            };
            Box::pin(super::run(cmd, top)).await
        }
        Route::Server => server(args, top).await,
    }
}

/// Replaces this process with the upstream binary; returns only when that fails.
fn exec(path: &std::path::Path, args: &[OsString]) -> anyhow::Error {
    use std::os::unix::process::CommandExt as _;
    let e = std::process::Command::new(path).args(args).exec();
    anyhow::Error::new(e).context(format!(
        "running the upstream etcdbrctl {} (set --upstream to where it is)",
        path.display()
    ))
}

/// etcdbrctl's flags parsed as our command `name`; `None` after a usage error was printed.
fn parse_ours(
    top: &clap::Command,
    name: &str,
    flags: &[OsString],
) -> anyhow::Result<Option<super::Command>> {
    let sub = top
        .find_subcommand(name)
        .with_context(|| format!("etcd-restore has no command {name}"))?;
    let t = translate(flags, sub);
    if !t.dropped.is_empty() {
        // For `serve` they are the upstream server's flags, not ignored ones.
        if name != "serve" {
            eprintln!(
                "notice: etcdbrctl flags `etcd-restore {name}` has no use for, ignored: {}",
                t.dropped.join(" ")
            );
        } else {
            tracing::info!(flags = %t.dropped.join(" "), "left to the upstream server only");
        }
    }
    let argv = [OsString::from("etcd-restore"), OsString::from(name)]
        .into_iter()
        .chain(t.ours);
    let matches = match top.clone().try_get_matches_from(argv) {
        Ok(m) => m,
        Err(e) => {
            let _ = e.print();
            return Ok(None);
        }
    };
    Ok(Some(super::Command::from_arg_matches(&matches)?))
}

async fn server(args: EtcdbrctlArgs, top: clap::Command) -> anyhow::Result<ExitCode> {
    let flags = &args.args[1..];
    if has_config_file(flags) {
        bail!(
            "etcdbrctl server --config-file is not supported by the etcd-restore entrypoint: \
             its port and TLS files would be hidden from it; pass them as flags, or run the \
             upstream image"
        );
    }
    let public = server_port(flags)
        .map_err(anyhow::Error::msg)?
        .unwrap_or(DEFAULT_SERVER_PORT);
    let internal = args
        .upstream_port
        .unwrap_or_else(|| default_upstream_port(public));
    if internal == public {
        bail!("--upstream-port {internal} is --server-port too; choose another");
    }
    let Some(cmd) = parse_ours(&top, "serve", flags)? else {
        return Ok(ExitCode::from(2));
    };
    let super::Command::Serve(serve_args) = cmd else {
        bail!("etcdbrctl server did not parse as etcd-restore serve");
    };
    let (opts, state) = super::serve::prepare(&serve_args)?;
    let mut upstream_args = vec![OsString::from("server")];
    upstream_args.extend(upstream_server_args(flags, internal));
    let code = run_server(ServerPlan {
        upstream: args.upstream,
        upstream_args,
        upstream_port: internal,
        opts,
        state,
    })
    .await?;
    Ok(ExitCode::from(code))
}
