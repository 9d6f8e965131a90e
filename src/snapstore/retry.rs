//! Retries for the requests this tool sends itself (the GCS JSON API client, and the S3 and
//! Azure listing calls object_store has no API for): the same policy as
//! [`super::store::retry_config`], i.e. what object_store applies to its own requests.

use std::future::Future;
use std::time::{Duration, Instant};

use bytes::Bytes;
use object_store::RetryConfig;
use reqwest::StatusCode;

/// Answers worth another try: timeouts, throttling, server errors.
pub(crate) fn retryable(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
}

/// A small source of jitter for the backoff (no need for a random number generator).
fn jitter(limit: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let ms = limit.as_millis().max(1) as u64;
    Duration::from_millis(u64::from(nanos) % ms)
}

/// Retry bookkeeping for one request: exponential backoff with jitter, bounded in tries and
/// time.
pub(crate) struct Attempts<'a> {
    config: &'a RetryConfig,
    started: Instant,
    pub(crate) tries: usize,
}

impl<'a> Attempts<'a> {
    pub(crate) fn new(config: &'a RetryConfig) -> Self {
        Attempts {
            config,
            started: Instant::now(),
            tries: 0,
        }
    }

    /// Sleeps before the next try; false when no try is left.
    pub(crate) async fn again(&mut self) -> bool {
        if self.tries >= self.config.max_retries {
            return false;
        }
        let b = &self.config.backoff;
        let exp = b.base.powi(i32::try_from(self.tries).unwrap_or(i32::MAX));
        let delay = b.init_backoff.mul_f64(exp.min(1e6)).min(b.max_backoff);
        let delay = delay / 2 + jitter(delay / 2 + Duration::from_millis(1));
        if self.started.elapsed() + delay > self.config.retry_timeout {
            return false;
        }
        self.tries += 1;
        tokio::time::sleep(delay).await;
        true
    }
}

/// `std::error::Error` plus its sources on one line, each cause once ([`crate::show::causes`];
/// reqwest's top-level message alone says little: "error sending request").
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    crate::show::error(e)
}

/// Sends a request, rebuilt (and signed again) for every try, until an answer that is not
/// retryable arrives whole; returns its status, headers and body. `Err` says why the last
/// try failed.
pub(crate) async fn call<F, Fut>(
    retry: &RetryConfig,
    what: &str,
    build: F,
) -> Result<(StatusCode, reqwest::header::HeaderMap, Bytes), String>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<reqwest::RequestBuilder, String>>,
{
    let mut attempts = Attempts::new(retry);
    loop {
        let detail = match build().await?.send().await {
            Ok(resp) if !retryable(resp.status()) => {
                let status = resp.status();
                let headers = resp.headers().clone();
                match resp.bytes().await {
                    Ok(body) => return Ok((status, headers, body)),
                    Err(e) => format!("reading the answer: {}", error_chain(&e)),
                }
            }
            Ok(resp) => {
                let status = resp.status();
                let body = resp.text().await.unwrap_or_default();
                format!(
                    "HTTP {status}: {}",
                    body.chars().take(300).collect::<String>()
                )
            }
            Err(e) => error_chain(&e),
        };
        tracing::debug!(request = what, error = %detail, "request failed; retrying");
        if !attempts.again().await {
            return Err(format!(
                "{what}: {detail} (after {} retries)",
                attempts.tries
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer: {0}")]
    struct Repeats(#[source] Inner);
    #[derive(Debug, thiserror::Error)]
    #[error("connection refused")]
    struct Inner;
    #[derive(Debug, thiserror::Error)]
    #[error("error sending request")]
    struct Terse(#[source] Inner);

    #[test]
    fn each_cause_is_printed_once() {
        assert_eq!(error_chain(&Repeats(Inner)), "outer: connection refused");
        assert_eq!(
            error_chain(&Terse(Inner)),
            "error sending request: connection refused"
        );
    }
}
