//! `etcd-restore serve`: etcd-backup-restore's initialization HTTP API, the part etcd-wrapper
//! uses before it starts etcd (docs/serve.md):
//!
//! | path | answer |
//! |---|---|
//! | `/initialization/start?mode=full\|sanity` | starts an initialization when none runs; always 200 |
//! | `/initialization/status` | 200, `New` / `Progress` / `Successful` / `Failed` (read-once) |
//! | `/config` | etcd's config file rewritten for this pod ([`config`]); 500 with the reason |
//! | `/healthz` | 503 `{"health":false}` while initializing, else 200 `{"health":true}` |
//! | `/metrics` | Prometheus text ([`metrics`]) |
//! | `/snapshot/latest` | the store's latest full snapshot and the deltas after it (etcdbrctl JSON) |
//! | `/snapshot/full`, `/snapshot/delta` | 405, empty body: no snapshotter here ([`snapshot`]) |
//!
//! Like etcdbrctl, every handler answers any method.

pub mod config;
pub mod init;
pub mod init_state;
pub mod member;
pub mod snapshot;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
pub use axum_server::Handle;

use crate::metrics::Registry;
use crate::snapstore::{Store, latest};
use init::{InitConfig, initialize, parse_mode};
use init_state::{InitState, Status};

/// Everything the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub init: Arc<InitState>,
    pub job: Arc<InitConfig>,
    pub metrics: Arc<Registry>,
    /// etcd's config file (`$ETCD_CONF` or [`config::DEFAULT_ETCD_CONF`]).
    pub etcd_conf: PathBuf,
    /// `$POD_NAME`.
    pub pod_name: Option<String>,
    /// What precedes `v2/` in object keys, for `/snapshot/latest`'s `prefix` field.
    pub store_prefix: String,
    /// Adds etcdbrctl's HSTS and CSP headers.
    pub tls: bool,
}

impl AppState {
    pub fn new(
        job: InitConfig,
        metrics: Arc<Registry>,
        etcd_conf: PathBuf,
        pod_name: Option<String>,
        store_prefix: String,
    ) -> Self {
        AppState {
            init: InitState::new(Arc::clone(&metrics)),
            job: Arc::new(job),
            metrics,
            etcd_conf,
            pod_name,
            store_prefix,
            tls: false,
        }
    }
}

/// Certificate and key files (PEM) for HTTPS.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    pub tls: Option<TlsFiles>,
    /// How long open requests and a running initialization get after the shutdown signal.
    pub shutdown_grace: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("loading TLS certificate {} and key {}: {source}", cert.display(), key.display())]
    Tls {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("serving on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// The routes.
pub fn router(state: AppState) -> Router {
    let tls = state.tls;
    let app = init_routes()
        .route("/healthz", any(healthz))
        .route("/metrics", any(metrics_text))
        .route("/snapshot/latest", any(snapshot_latest))
        .route("/snapshot/full", any(snapshot::not_configured))
        .route("/snapshot/delta", any(snapshot::not_configured))
        .with_state(state);
    with_security_headers(app, tls)
}

/// The initialization API etcd-wrapper uses before etcd starts (`/initialization/start`,
/// `/initialization/status`, `/config`): what etcd-restore answers itself when it runs beside
/// the upstream server (src/entrypoint).
pub fn init_routes() -> Router<AppState> {
    Router::new()
        .route("/initialization/start", any(start))
        .route("/initialization/status", any(status))
        .route("/config", any(config))
}

/// etcdbrctl's HSTS and CSP headers on every answer when serving HTTPS
/// (pkg/server/httpAPI.go `checkAndSetSecurityHeaders`).
pub fn with_security_headers(app: Router, tls: bool) -> Router {
    app.layer(axum::middleware::map_response(
        move |mut r: Response| async move {
            if tls {
                let h = r.headers_mut();
                h.insert(
                    header::STRICT_TRANSPORT_SECURITY,
                    HeaderValue::from_static("max-age=31536000"),
                );
                h.insert(
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static("default-src 'self'"),
                );
            }
            r
        },
    ))
}

/// Serves until `shutdown` completes, then stops accepting, gives open requests and a running
/// initialization `shutdown_grace`, and returns.
pub async fn serve(
    opts: ServeOptions,
    mut state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    state.tls = opts.tls.is_some();
    let init = Arc::clone(&state.init);
    serve_app(&opts, router(state), &init, shutdown, Handle::new()).await
}

/// [`serve`] with another set of routes; `init` is the initialization the shutdown waits for,
/// `handle` tells when the port is bound (`listening`).
pub async fn serve_app(
    opts: &ServeOptions,
    app: Router,
    init: &InitState,
    shutdown: impl Future<Output = ()> + Send + 'static,
    handle: Handle<SocketAddr>,
) -> Result<(), ServeError> {
    let h = handle.clone();
    let grace = opts.shutdown_grace;
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down");
        h.graceful_shutdown(Some(grace));
    });
    let addr = opts.listen;
    let served = match &opts.tls {
        None => {
            axum_server::bind(addr)
                .handle(handle)
                .serve(app.into_make_service())
                .await
        }
        Some(t) => {
            let rustls = axum_server::tls_rustls::RustlsConfig::from_pem_file(&t.cert, &t.key)
                .await
                .map_err(|source| ServeError::Tls {
                    cert: t.cert.clone(),
                    key: t.key.clone(),
                    source,
                })?;
            axum_server::bind_rustls(addr, rustls)
                .handle(handle)
                .serve(app.into_make_service())
                .await
        }
    };
    served.map_err(|source| ServeError::Listen { addr, source })?;
    if init.shutdown(grace).await {
        tracing::warn!(
            "a running initialization was abandoned at shutdown; the data directory was not replaced"
        );
    }
    Ok(())
}

async fn start(State(st): State<AppState>, RawQuery(q): RawQuery) -> StatusCode {
    // Parsed by hand: a malformed query must still answer 200 (and mean `full`).
    let mode = parse_mode(
        q.as_deref()
            .unwrap_or_default()
            .split('&')
            .find_map(|kv| kv.strip_prefix("mode=")),
    );
    let job = Arc::clone(&st.job);
    let metrics = Arc::clone(&st.metrics);
    if st
        .init
        .start(async move { initialize(&job, mode, &metrics).await })
    {
        tracing::info!(?mode, "initialization started");
    }
    StatusCode::OK
}

async fn status(State(st): State<AppState>) -> Response {
    let s = st.init.take_status();
    if s == Status::Failed
        && let Some(e) = st.init.last_error()
    {
        tracing::warn!(error = %e, "reported Failed");
    }
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        s.as_str(),
    )
        .into_response()
}

async fn healthz(State(st): State<AppState>) -> Response {
    health_answer(st.init.peek() != Status::Progress)
}

/// `/healthz`'s answer, as etcdbrctl writes it (pkg/server/httpAPI.go `serveHealthz`).
pub fn health_answer(healthy: bool) -> Response {
    let code = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        if healthy {
            r#"{"health":true}"#
        } else {
            r#"{"health":false}"#
        },
    )
        .into_response()
}

async fn metrics_text(State(st): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        st.metrics.render(),
    )
        .into_response()
}

fn plain_error(code: StatusCode, msg: String) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        msg + "\n",
    )
        .into_response()
}

async fn config(State(st): State<AppState>) -> Response {
    let path = st.etcd_conf.clone();
    let pod = st.pod_name.clone();
    let view = match &st.job.member {
        Some(m) => m.cluster_view().await,
        None => config::ClusterView::default(),
    };
    let r = tokio::task::spawn_blocking(move || config::load_for_pod(&path, pod.as_deref(), &view))
        .await;
    match r {
        Ok(Ok(yaml)) => ([(header::CONTENT_TYPE, "application/yaml")], yaml).into_response(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot serve the etcd config");
            plain_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
        Err(e) => plain_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn snapshot_latest(State(st): State<AppState>) -> Response {
    let Some(store) = st.job.store.as_ref() else {
        return plain_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "no backup store configured (--store)".into(),
        );
    };
    match list_latest(store, &st.store_prefix).await {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot list the store");
            plain_error(StatusCode::INTERNAL_SERVER_ERROR, e)
        }
    }
}

async fn list_latest(store: &Store, prefix: &str) -> Result<String, String> {
    let listing = store
        .list_snapshots()
        .await
        .map_err(|e| format!("listing {}: {e}", store.describe()))?;
    serde_json::to_string(&latest(&listing, prefix)).map_err(|e| e.to_string())
}
