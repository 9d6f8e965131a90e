//! The image entrypoint that makes etcd-restore adoptable under etcd-druid by one line
//! (`spec.backup.image`): every etcdbrctl command line keeps working, and the parts
//! etcd-restore does natively are answered by it (docs/operations.md "Adopting under
//! etcd-druid").
//!
//! | etcdbrctl command | who runs it |
//! |---|---|
//! | `compact`, `initialize` | etcd-restore's command of the same name ([`dispatch`]) |
//! | `server` | both: etcd-restore on `--server-port` answers `/initialization/*` and `/config`, `/healthz` (healthy when both are) and `/metrics` (the upstream's with ours appended, [`metrics`]); the upstream server runs beside it on an internal port for snapshots, GC, leader election, defragmentation and member leases, and every other path is proxied to it ([`proxy`], [`supervise`]) |
//! | anything else | the upstream binary, exec'd with argv and environment untouched |
//!
//! The upstream server never validates or restores: its initializer runs only from its
//! `/initialization/start` handler (etcd-backup-restore v0.43.0 pkg/server/httpAPI.go
//! `serveInitialize`, the only caller of `Initializer.Initialize` besides the `initialize`
//! command), and that path is answered here and never forwarded, in any spelling.

pub mod dispatch;
pub mod metrics;
pub mod proxy;
pub mod supervise;

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;

use crate::serve::init_state::Status;
use crate::serve::{
    AppState, Handle, ServeError, ServeOptions, health_answer, init_routes, serve_app,
    with_security_headers,
};
use proxy::{ProxyError, Upstream};
use supervise::{Event, SuperviseError, Supervised, exit_code};

/// The paths etcd-restore answers and the upstream server must never see.
pub const NATIVE_PATHS: [&str; 3] = ["/initialization/start", "/initialization/status", "/config"];

#[derive(Debug, thiserror::Error)]
pub enum EntrypointError {
    #[error(transparent)]
    Proxy(#[from] ProxyError),
    #[error(transparent)]
    Supervise(#[from] SuperviseError),
}

/// `etcdbrctl server`, split in two.
pub struct ServerPlan {
    /// The upstream etcdbrctl binary.
    pub upstream: PathBuf,
    /// Its arguments: etcdbrctl's, with `--server-port` naming `upstream_port`.
    pub upstream_args: Vec<OsString>,
    pub upstream_port: u16,
    /// Ours: druid's `--server-port` and TLS files.
    pub opts: ServeOptions,
    pub state: AppState,
}

/// Runs both servers until either ends or a signal stops them; the exit code is the upstream
/// process's (128 + signal when a signal ended it), or 1 when ours failed.
pub async fn run_server(plan: ServerPlan) -> Result<u8, EntrypointError> {
    let cert = plan.opts.tls.as_ref().map(|t| t.cert.clone());
    let upstream = Upstream::new(plan.upstream_port, cert.as_deref())?;
    let mut state = plan.state;
    state.tls = plan.opts.tls.is_some();
    let init = Arc::clone(&state.init);
    let app = routes(state, upstream.clone());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut stop_tx = Some(stop_tx);
    let stop = |tx: &mut Option<tokio::sync::oneshot::Sender<()>>| {
        if let Some(tx) = tx.take() {
            let _ = tx.send(());
        }
    };
    let opts = plan.opts;
    let listen = opts.listen;
    let handle = Handle::new();
    let bound = handle.clone();
    let mut server = tokio::spawn(async move {
        serve_app(
            &opts,
            app,
            &init,
            async {
                let _ = stop_rx.await;
            },
            handle,
        )
        .await
    });
    // Our port first: when it cannot be served, the upstream server is never started.
    let listening = tokio::select! {
        a = bound.listening() => a,
        r = &mut server => return Ok(ours_failed(r)),
    };
    if listening.is_none() {
        return Ok(ours_failed(server.await));
    }
    let mut child = Supervised::spawn(&plan.upstream, &plan.upstream_args)?;
    tracing::info!(
        pid = child.pid(),
        upstream = %upstream.base(),
        listen = %listen,
        "upstream etcdbrctl server started; serving the initialization API and proxying the rest"
    );

    enum First {
        Child(Result<Event, SuperviseError>),
        Ours(Result<Result<(), ServeError>, tokio::task::JoinError>),
    }
    let first = tokio::select! {
        ev = child.next() => First::Child(ev),
        r = &mut server => First::Ours(r),
    };
    match first {
        First::Child(ev) => {
            let status = match ev? {
                Event::Exited(status) => {
                    tracing::error!(%status, "the upstream etcdbrctl server exited; stopping");
                    status
                }
                Event::Forwarded(sig) => {
                    tracing::info!(signal = sig, "signal passed on to the upstream server");
                    stop(&mut stop_tx);
                    child.wait().await?
                }
            };
            stop(&mut stop_tx);
            if let Ok(Err(e)) = server.await {
                tracing::warn!(error = %e, "etcd-restore's server");
            }
            Ok(exit_code(status))
        }
        First::Ours(r) => {
            ours_failed(r);
            child.send(libc::SIGTERM);
            let status = child.wait().await?;
            tracing::info!(%status, "the upstream etcdbrctl server stopped");
            Ok(1)
        }
    }
}

/// Reports why our server ended; the exit code then is 1.
fn ours_failed(r: Result<Result<(), ServeError>, tokio::task::JoinError>) -> u8 {
    let why = match r {
        Ok(Ok(())) => "stopped".to_string(),
        Ok(Err(e)) => e.to_string(),
        Err(e) => e.to_string(),
    };
    eprintln!("error: etcd-restore's server: {why}");
    1
}

fn routes(state: AppState, upstream: Upstream) -> Router {
    let tls = state.tls;
    let (st, up) = (state.clone(), upstream.clone());
    let (ours, up_m) = (Arc::clone(&state.metrics), upstream.clone());
    let app = init_routes()
        .with_state(state)
        .route(
            "/metrics",
            any(move |req: Request| {
                let (ours, up) = (Arc::clone(&ours), up_m.clone());
                async move { metrics::answer(&up, &ours, req).await }
            }),
        )
        .route(
            "/healthz",
            any(move || {
                let (st, up) = (st.clone(), up.clone());
                async move {
                    let ours = st.init.peek() != Status::Progress;
                    health_answer(ours && up.healthy().await)
                }
            }),
        )
        .fallback(move |req: Request| {
            let up = upstream.clone();
            async move {
                if is_native(req.uri().path()) {
                    return refused(req.uri().path());
                }
                up.forward(req).await
            }
        });
    with_security_headers(app, tls)
}

/// Whether Go's `ServeMux` would route `raw` (as sent, percent-encoded) to one of the
/// [`NATIVE_PATHS`] handlers: it matches on the decoded path, which axum's router does not.
fn is_native(raw: &str) -> bool {
    let decoded = percent_decode(raw);
    let trimmed = decoded.trim_end_matches('/');
    NATIVE_PATHS.iter().any(|p| {
        let p = p.as_bytes();
        trimmed.as_bytes() == p || collapse_slashes(&decoded) == p
    })
}

fn collapse_slashes(s: &str) -> Vec<u8> {
    let mut out: Vec<u8> = Vec::with_capacity(s.len());
    for &b in s.as_bytes() {
        if !(b == b'/' && out.last() == Some(&b'/')) {
            out.push(b);
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn refused(path: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!(
            "{path}: not forwarded to the upstream server; the initialization API is at {}\n",
            NATIVE_PATHS.join(", ")
        ),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::is_native;

    #[test]
    fn encoded_spellings_of_the_native_paths_are_caught() {
        for p in [
            "/initialization/st%61rt",
            "/initialization%2Fstart",
            "/%63onfig",
            "/config/",
            "//initialization//status",
        ] {
            assert!(is_native(p), "{p}");
        }
        for p in ["/snapshot/full", "/metrics", "/configs", "/initialization"] {
            assert!(!is_native(p), "{p}");
        }
    }
}
