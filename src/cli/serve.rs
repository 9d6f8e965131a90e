//! `etcd-restore serve`: etcd-backup-restore's initialization HTTP API for etcd-wrapper
//! (docs/serve.md). Runs until SIGTERM or SIGINT.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use etcd_restore::metrics::Registry;
use etcd_restore::replay::ReplayOptions;
use etcd_restore::serve::init::InitConfig;
use etcd_restore::serve::{AppState, ServeOptions, TlsFiles, config::DEFAULT_ETCD_CONF, serve};
use etcd_restore::snapstore::{Backend, FetchArgs, Store, StoreArgs};

use super::restore::MemberArgs;

#[derive(clap::Args, Debug)]
#[command(after_help = "Endpoints: /initialization/start?mode=full|sanity, \
/initialization/status, /config, /healthz, /metrics, /snapshot/latest (docs/serve.md). \
Point etcd-wrapper's --backup-restore-host-port at --listen.")]
pub struct ServeArgs {
    /// The etcd data directory to validate and, when needed, restore.
    #[arg(short = 'd', long, value_name = "DIR", default_value = "default.etcd")]
    data_dir: PathBuf,

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

    /// The namespace `<data-dir>/../safe_guard` must name (written when missing); a
    /// mismatch fails initialization without touching the data directory.
    #[arg(long, value_name = "NAME", env = "POD_NAMESPACE")]
    namespace: Option<String>,

    /// How long to wait for another process's lock on the database (a running etcd) before
    /// failing the initialization.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    lock_timeout: u64,

    /// After SIGTERM: how long open requests and a running initialization may still take.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    shutdown_grace: u64,

    /// Which etcdutl/etcdctl output a restore reproduces byte for byte: 3.5 (also read by
    /// 3.4) or 3.4.
    #[arg(long, value_name = "VERSION", default_value = "3.5", value_parser = ["3.4", "3.5"])]
    etcd_version: String,

    /// Remove the lease from every restored key, like etcdbrctl (see `restore --help`).
    #[arg(long)]
    strip_leases: bool,

    /// Keep lease IDs the base snapshot does not know (see `restore --help`).
    #[arg(long, conflicts_with = "strip_leases")]
    keep_unknown_leases: bool,

    #[command(flatten)]
    member: MemberArgs,

    #[command(flatten)]
    store: StoreArgs,

    #[command(flatten)]
    fetch: FetchArgs,
}

pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let (store, store_prefix, temp_dir) =
        if args.store.store.is_none() && args.store.storage_provider.is_none() {
            (
                None,
                String::new(),
                args.store.snapstore_temp_directory.clone(),
            )
        } else {
            let config = args.store.resolve()?;
            let store = Store::open(&config)?;
            let prefix = match &config.backend {
                Backend::Local { root } => root.display().to_string(),
                _ => config.prefix.clone(),
            };
            (Some(store), prefix, config.temp_dir.clone())
        };
    let mut replay = ReplayOptions::new(temp_dir);
    replay.verify_hash = !args.fetch.skip_hash_check;
    replay.max_fetchers = args.fetch.max_fetchers as usize;
    replay.strip_leases = args.strip_leases;
    replay.keep_unknown_leases = args.keep_unknown_leases;
    let job = InitConfig {
        data_dir: args.data_dir.clone(),
        store,
        namespace: args.namespace.clone().filter(|s| !s.is_empty()),
        members: args.member.flags(),
        replay,
        flavor: if args.etcd_version == "3.4" {
            wal::RestoreFlavor::V3_4
        } else {
            wal::RestoreFlavor::V3_5
        },
        lock_timeout: Duration::from_secs(args.lock_timeout),
    };
    let state = AppState::new(
        job,
        Arc::new(Registry::new()),
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
        data_dir = %args.data_dir.display(),
        "serving"
    );
    serve(opts, state, shutdown_signal())
        .await
        .context("etcd-restore serve")?;
    Ok(ExitCode::SUCCESS)
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
