//! `/metrics` beside the upstream server: its exposition, followed by etcd-restore's own
//! families that it does not have. The initialization now runs here, so the families the
//! upstream's initializer would have observed (`etcdbr_validation_duration_seconds`,
//! `etcdbr_restoration_duration_seconds`; v0.43.0 pkg/metrics/metrics.go) and etcd-restore's
//! `etcd_restore_*` come from us; a family both sides have is the upstream's, so no name
//! appears twice in one scrape.
//!
//! The upstream is asked for the plain text format (0.0.4) without compression, whatever the
//! scraper accepts: promhttp would otherwise answer gzip or protobuf, which cannot be appended
//! to. Its answer is read whole; an exposition larger than [`MAX_UPSTREAM_BODY`] is refused.

use std::collections::BTreeSet;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::proxy::Upstream;
use crate::metrics::Registry;

/// promhttp's exposition of etcdbrctl is tens of KiB; this bounds the buffer.
pub const MAX_UPSTREAM_BODY: usize = 16 << 20;

/// The family names an exposition declares (`# TYPE <name> <kind>`).
fn families(text: &str) -> BTreeSet<&str> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect()
}

/// `ours` without the families `upstream` already has. [`Registry::render`] writes each family
/// as one block starting with its `# HELP` line.
pub fn merge(upstream: &str, ours: &str) -> String {
    let have = families(upstream);
    let mut out = String::with_capacity(upstream.len() + ours.len() + 1);
    out.push_str(upstream);
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    let mut keep = true;
    for line in ours.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split_whitespace().next().unwrap_or_default();
            keep = !have.contains(name);
        }
        if keep {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Answers `/metrics`: the upstream's answer, with ours appended when it is a 200.
pub async fn answer(upstream: &Upstream, ours: &Registry, req: Request) -> Response {
    let (mut parts, body) = req.into_parts();
    parts.headers.remove(header::ACCEPT_ENCODING);
    parts.headers.insert(
        header::ACCEPT,
        HeaderValue::from_static("text/plain;version=0.0.4"),
    );
    let answer = upstream.forward(Request::from_parts(parts, body)).await;
    if answer.status() != StatusCode::OK {
        return answer;
    }
    let (parts, body) = answer.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_UPSTREAM_BODY).await {
        Ok(b) => b,
        Err(e) => {
            return (
                StatusCode::BAD_GATEWAY,
                format!("upstream /metrics: {e} (more than {MAX_UPSTREAM_BODY} bytes?)\n"),
            )
                .into_response();
        }
    };
    let text = String::from_utf8_lossy(&bytes);
    let merged = merge(&text, &ours.render());
    let mut r = Response::from_parts(parts, Body::from(merged));
    r.headers_mut().remove(header::CONTENT_LENGTH);
    r
}

#[cfg(test)]
mod tests {
    use super::merge;

    #[test]
    fn our_families_follow_and_shared_names_stay_the_upstreams() {
        let up = "# HELP a_total A.\n# TYPE a_total counter\na_total 3\n\
                  # HELP shared Shared.\n# TYPE shared gauge\nshared 1";
        let ours = "# HELP shared Ours.\n# TYPE shared gauge\nshared 9\n\
                    # HELP ours_total Ours.\n# TYPE ours_total counter\nours_total{x=\"y\"} 2\n";
        let m = merge(up, ours);
        assert_eq!(
            m,
            "# HELP a_total A.\n# TYPE a_total counter\na_total 3\n\
             # HELP shared Shared.\n# TYPE shared gauge\nshared 1\n\
             # HELP ours_total Ours.\n# TYPE ours_total counter\nours_total{x=\"y\"} 2\n"
        );
    }
}
