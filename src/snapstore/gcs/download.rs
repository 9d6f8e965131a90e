//! Downloads: a requested range resolved against the object's size, and the media stream that
//! resumes on the same generation after a connection that breaks or a body cut short.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use object_store::path::Path;
use object_store::{GetRange, Result};
use reqwest::Method;

use super::client::Inner;
use super::error::{RequestError, generic};
use crate::snapstore::retry::{Attempts, error_chain};

/// Resolves a requested range against the object's size.
pub(super) fn resolve_range(range: Option<&GetRange>, size: u64) -> Result<Range<u64>> {
    let r = match range {
        None => 0..size,
        Some(GetRange::Bounded(r)) => r.start..r.end.min(size),
        Some(GetRange::Offset(o)) => *o..size,
        Some(GetRange::Suffix(n)) => size.saturating_sub(*n)..size,
    };
    if r.start > r.end || (r.start >= size && size > 0 && range.is_some()) {
        return Err(generic(format!(
            "range {range:?} is outside an object of {size} bytes"
        )));
    }
    Ok(r)
}

/// The bytes of `range`, resumed after a connection that breaks or a body cut short.
pub(super) fn media_stream(
    inner: Arc<Inner>,
    path: Path,
    generation: String,
    range: Range<u64>,
    size: u64,
    first: reqwest::Response,
) -> BoxStream<'static, Result<Bytes>> {
    struct State {
        inner: Arc<Inner>,
        path: Path,
        generation: String,
        pos: u64,
        end: u64,
        size: u64,
        resp: Option<reqwest::Response>,
        resumes: usize,
        done: bool,
    }
    let state = State {
        inner,
        path,
        generation,
        pos: range.start,
        end: range.end,
        size,
        resp: Some(first),
        resumes: 0,
        done: false,
    };
    stream::unfold(state, |mut s| async move {
        if s.done {
            return None;
        }
        loop {
            let broken = match s.resp.as_mut() {
                Some(resp) => match resp.chunk().await {
                    Ok(Some(chunk)) => {
                        let room = s.end.saturating_sub(s.pos);
                        let chunk = if (chunk.len() as u64) > room {
                            chunk.slice(..usize::try_from(room).unwrap_or(usize::MAX))
                        } else {
                            chunk
                        };
                        if chunk.is_empty() {
                            continue;
                        }
                        s.pos += chunk.len() as u64;
                        return Some((Ok(chunk), s));
                    }
                    Ok(None) if s.pos >= s.end => return None,
                    Ok(None) => format!(
                        "the answer ended at byte {} of {}",
                        s.pos, s.end
                    ),
                    Err(e) => error_chain(&e),
                },
                None => "no answer".to_string(),
            };
            s.resp = None;
            // Resume from where the body broke, with a fresh retry budget per break but a
            // bound on breaks: a server that always cuts short must not loop forever.
            s.resumes += 1;
            let mut attempts = Attempts::new(&s.inner.retry);
            attempts.tries = s.resumes.saturating_sub(1);
            tracing::debug!(object = %s.path, at = s.pos, error = %broken, "GCS download broke; resuming");
            if !attempts.again().await {
                s.done = true;
                let e = generic(RequestError {
                    method: Method::GET,
                    what: s.path.to_string(),
                    detail: format!("{broken} (resumed {} times)", s.resumes - 1),
                });
                return Some((Err(e), s));
            }
            let rest = s.pos..s.end;
            match s
                .inner
                .media(&s.path, &s.generation, &rest, s.size, &mut attempts)
                .await
            {
                Ok(r) => s.resp = Some(r),
                Err(e) => {
                    s.done = true;
                    return Some((Err(e), s));
                }
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_resolve_against_the_size() {
        assert_eq!(resolve_range(None, 10).unwrap(), 0..10);
        assert_eq!(resolve_range(None, 0).unwrap(), 0..0);
        assert_eq!(
            resolve_range(Some(&GetRange::Bounded(2..5)), 10).unwrap(),
            2..5
        );
        assert_eq!(
            resolve_range(Some(&GetRange::Bounded(2..50)), 10).unwrap(),
            2..10
        );
        assert_eq!(
            resolve_range(Some(&GetRange::Offset(4)), 10).unwrap(),
            4..10
        );
        assert_eq!(
            resolve_range(Some(&GetRange::Suffix(3)), 10).unwrap(),
            7..10
        );
        assert!(resolve_range(Some(&GetRange::Offset(10)), 10).is_err());
    }
}
