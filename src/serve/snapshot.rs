//! `/snapshot/full` and `/snapshot/delta`: this server takes no snapshots, so it answers them
//! the way etcdbrctl's server does when its snapshotter is not configured
//! (`pkg/server/httpAPI.go` `serveFullSnapshotTrigger` / `serveDeltaSnapshotTrigger` with
//! `h.Snapshotter == nil` and no storage provider): **405 Method Not Allowed** with an empty
//! body, for any method and any query (`final=` is not even parsed on that path). etcd-druid
//! (`GET /snapshot/full` from the compaction controller, `POST /snapshot/{full,delta}` from
//! the on-demand snapshot task) treats any status but 200 as "snapshot not taken".
//!
//! The reason is logged and carried in an `X-Etcd-Restore-Reason` header: etcdbrctl's body is
//! empty, and clients that compare bodies keep seeing exactly that.

use axum::http::{HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

/// The header naming why no snapshot is taken (the body stays empty, like etcdbrctl's).
pub const REASON_HEADER: &str = "x-etcd-restore-reason";

const REASON: &str = "etcd-restore serve takes no snapshots (restore and validation only); run etcdbrctl's snapshotter for backups";

/// Both endpoints' answer.
pub async fn not_configured(method: Method, uri: Uri) -> Response {
    tracing::warn!(%method, path = %uri.path(), "ignoring an out-of-schedule snapshot request: no snapshotter here");
    (
        StatusCode::METHOD_NOT_ALLOWED,
        [(
            HeaderName::from_static(REASON_HEADER),
            HeaderValue::from_static(REASON),
        )],
    )
        .into_response()
}
