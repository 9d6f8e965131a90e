//! A multipart upload as etcdbrctl does it on GCS, through `compose`.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use object_store::path::Path;
use object_store::{Error, MultipartUpload, PutPayload, PutResult, Result, UploadPart};

use super::client::{Inner, MAX_COMPOSE};

/// A multipart upload as etcdbrctl does it on GCS: parts are objects `<name>/<%010d>`,
/// composed into `<name>` at the end and then deleted.
#[derive(Debug)]
pub(super) struct ComposeUpload {
    pub(super) inner: Arc<Inner>,
    pub(super) dest: Path,
    pub(super) parts: usize,
}

impl ComposeUpload {
    fn part_name(&self, n: usize) -> String {
        format!("{}/{:010}", self.dest.as_ref(), n)
    }

    async fn delete_parts(&self, names: &[String]) {
        for n in names {
            if let Ok(p) = Path::parse(n)
                && let Err(e) = self.inner.delete(&p).await
                && !matches!(e, Error::NotFound { .. })
            {
                tracing::warn!(object = %n, error = %e, "could not remove an upload part");
            }
        }
    }
}

#[async_trait]
impl MultipartUpload for ComposeUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        self.parts += 1;
        let name = self.part_name(self.parts);
        let inner = self.inner.clone();
        Box::pin(async move {
            let path = Path::parse(&name).map_err(|source| Error::InvalidPath { source })?;
            inner
                .upload(&path, Bytes::from(data), None)
                .await
                .map(|_| ())
        })
    }

    async fn complete(&mut self) -> Result<PutResult> {
        if self.parts == 0 {
            let r = self.inner.upload(&self.dest, Bytes::new(), None).await?;
            return Ok(r.put_result());
        }
        let parts: Vec<String> = (1..=self.parts).map(|n| self.part_name(n)).collect();
        // Rounds of at most MAX_COMPOSE sources; intermediate objects are named after the
        // round and are deleted with the parts.
        let mut level = parts.clone();
        let mut made = Vec::new();
        let mut round = 0;
        let result = loop {
            if level.len() <= MAX_COMPOSE {
                break self.inner.compose(&level, &self.dest).await;
            }
            round += 1;
            let mut next = Vec::new();
            for (i, group) in level.chunks(MAX_COMPOSE).enumerate() {
                let name = format!("{}/c{round}-{i:06}", self.dest.as_ref());
                let path = Path::parse(&name).map_err(|source| Error::InvalidPath { source })?;
                if let Err(e) = self.inner.compose(group, &path).await {
                    self.delete_parts(&made).await;
                    self.delete_parts(&parts).await;
                    return Err(e);
                }
                made.push(name.clone());
                next.push(name);
            }
            level = next;
        };
        self.delete_parts(&made).await;
        self.delete_parts(&parts).await;
        result.map(|r| r.put_result())
    }

    async fn abort(&mut self) -> Result<()> {
        let parts: Vec<String> = (1..=self.parts).map(|n| self.part_name(n)).collect();
        self.delete_parts(&parts).await;
        Ok(())
    }
}
