//! `etcd-restore serve`: etcd-backup-restore's initialization HTTP API for etcd-wrapper
//! (docs/serve.md). Runs until SIGTERM or SIGINT.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use etcd_restore::metrics::Registry;
use etcd_restore::serve::member::MemberControl;
use etcd_restore::serve::{AppState, ServeOptions, TlsFiles, config::DEFAULT_ETCD_CONF, serve};

use super::etcd_conn::EtcdConnArgs;
use super::initialize::{InitJobArgs, PreparedJob};
use super::server_compat::ServerCompatArgs;

#[derive(clap::Args, Debug)]
#[command(after_help = "Endpoints: /initialization/start?mode=full|sanity, \
/initialization/status, /config, /healthz, /metrics, /snapshot/latest; /snapshot/full and \
/snapshot/delta answer 405 (no snapshotter, as etcdbrctl without one) (docs/serve.md). \
Point etcd-wrapper's --backup-restore-host-port at --listen.")]
pub struct ServeArgs {
    #[command(flatten)]
    job: InitJobArgs,

    /// Address to listen on.
    #[arg(long, value_name = "ADDR:PORT", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,

    /// etcdbrctl's way to say `--listen 0.0.0.0:PORT`.
    #[arg(short = 'p', long, value_name = "PORT", conflicts_with = "listen")]
    server_port: Option<u16>,

    /// PEM certificate for HTTPS (with --tls-key; etcdbrctl's --server-cert).
    #[arg(long, value_name = "FILE", requires = "tls_key", alias = "server-cert")]
    tls_cert: Option<PathBuf>,

    /// PEM private key for HTTPS (with --tls-cert; etcdbrctl's --server-key).
    #[arg(long, value_name = "FILE", requires = "tls_cert", alias = "server-key")]
    tls_key: Option<PathBuf>,

    /// etcd's config file served (rewritten for this pod) at /config.
    #[arg(long, value_name = "FILE", env = "ETCD_CONF", default_value = DEFAULT_ETCD_CONF)]
    etcd_conf: PathBuf,

    /// This pod's name: the member name in /config is `[member-name-prefix-]POD_NAME`.
    #[arg(long, value_name = "NAME", env = "POD_NAME")]
    pod_name: Option<String>,

    /// After SIGTERM: how long open requests and a running initialization may still take.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    shutdown_grace: u64,

    /// etcd-druid's sidecar flags for what this server does not run.
    #[command(flatten)]
    druid: ServerCompatArgs,

    #[command(flatten)]
    etcd: EtcdConnArgs,
}

pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    args.druid.notice();
    let (opts, state) = prepare(&args)?;
    serve(opts, state, shutdown_signal())
        .await
        .context("etcd-restore serve")?;
    Ok(ExitCode::SUCCESS)
}

/// Where and how to listen, and the handlers' state (also used by `etcdbrctl server`).
pub fn prepare(args: &ServeArgs) -> anyhow::Result<(ServeOptions, AppState)> {
    let PreparedJob {
        config: mut job,
        store_prefix,
        ..
    } = args.job.prepare()?;
    let metrics = Arc::new(Registry::new());
    let (local, service) = args.etcd.clients()?;
    let member = Arc::new(MemberControl::new(
        args.etcd_conf.clone(),
        args.pod_name.clone().filter(|s| !s.is_empty()),
        local,
        service,
        Arc::clone(&metrics),
    ));
    job.member = Some(Arc::clone(&member));
    // etcdbrctl promotes from its server loop, once per re-election period.
    tokio::spawn(member.promote_loop(args.etcd.reelection_period));
    let state = AppState::new(
        job,
        metrics,
        args.etcd_conf.clone(),
        args.pod_name.clone().filter(|s| !s.is_empty()),
        store_prefix,
    );
    let listen = match args.server_port {
        Some(port) => SocketAddr::from(([0, 0, 0, 0], port)),
        None => args.listen,
    };
    let opts = ServeOptions {
        listen,
        tls: match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => None,
        },
        shutdown_grace: Duration::from_secs(args.shutdown_grace),
    };
    tracing::info!(
        scheme = if opts.tls.is_some() { "https" } else { "http" },
        listen = %listen,
        data_dir = %args.job.data_dir.display(),
        "serving"
    );
    Ok((opts, state))
}

/// SIGTERM (Kubernetes) or SIGINT (a terminal).
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut t), Ok(mut i)) => {
            tokio::select! {
                _ = t.recv() => {}
                _ = i.recv() => {}
            }
        }
        _ => {
            // Without signal handlers the default action (exit) applies; never resolve.
            std::future::pending::<()>().await;
        }
    }
}
