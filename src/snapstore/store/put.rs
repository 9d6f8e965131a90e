//! Writing objects: create-only and replacing puts, multipart uploads from a file checked
//! against what was packed, and the checksummed writes of an object-locked bucket.

use super::*;

impl Store {
    /// Writes a small object only if it does not exist yet (If-None-Match on cloud stores).
    /// `retain_until` (Unix seconds): in an S3 bucket with an Object Lock default retention,
    /// keep this version only until then (GOVERNANCE) instead of the default period.
    pub async fn put_create(
        &self,
        relative: &str,
        data: Bytes,
        retain_until: Option<i64>,
    ) -> Result<(), StoreError> {
        self.put_small(relative, data, PutMode::Create, retain_until)
            .await
    }

    /// Writes a small object, replacing what is there ([`Store::put_create`]'s `retain_until`).
    pub async fn put_replace(
        &self,
        relative: &str,
        data: Bytes,
        retain_until: Option<i64>,
    ) -> Result<(), StoreError> {
        self.put_small(relative, data, PutMode::Overwrite, retain_until)
            .await
    }

    /// In an S3 bucket with Object Lock, deletes the old versions and delete markers of an
    /// object whose retention has ended (never its current version): (deleted, still
    /// retained). `None` elsewhere.
    pub async fn purge_old_versions(
        &self,
        relative: &str,
    ) -> Option<Result<(u64, u64), StoreError>> {
        let key = match self.object_path(relative) {
            Ok(p) => p.to_string(),
            Err(e) => return Some(Err(e)),
        };
        let res = self.locked.as_ref()?.purge(&key).await?;
        Some(res.map_err(|detail| StoreError::Setup {
            store: self.describe.clone(),
            detail: format!("removing old versions of {relative}: {detail}"),
        }))
    }

    async fn put_small(
        &self,
        relative: &str,
        data: Bytes,
        mode: PutMode,
        retain_until: Option<i64>,
    ) -> Result<(), StoreError> {
        let path = self.object_path(relative)?;
        let opts = PutOptions {
            mode,
            ..PutOptions::default()
        };
        let payload = PutPayload::from_bytes(data);
        let locked = match &self.locked {
            Some(l) => {
                l.put(&path, payload.clone(), opts.clone(), retain_until)
                    .await
            }
            None => None,
        };
        let result = match locked {
            Some(r) => r,
            None => self.inner.put_opts(&path, payload, opts).await,
        };
        match result {
            Ok(_) => Ok(()),
            Err(object_store::Error::AlreadyExists { .. }) => Err(StoreError::AlreadyExists {
                object: relative.to_string(),
            }),
            Err(source) => Err(StoreError::Object {
                object: relative.to_string(),
                op: "put",
                source,
            }),
        }
    }

    /// Uploads a local file in parts (`part_size`, `concurrency` parts in flight) to a new
    /// object. Multipart uploads cannot be conditional everywhere, so existence is checked
    /// first; the window between check and completion is the caller's to avoid (names carry
    /// a creation second and a revision).
    pub async fn put_multipart_file(
        &self,
        relative: &str,
        file: &std::path::Path,
        part_size: u64,
        concurrency: usize,
    ) -> Result<u64, StoreError> {
        self.put_multipart(relative, file, part_size, concurrency, None)
            .await
    }

    /// [`Store::put_multipart_file`] that hashes the bytes as it sends them and completes the
    /// upload only if they are `expected` (size and sha256); otherwise it aborts the upload
    /// and fails with [`StoreError::Unexpected`]. Proves the object is the bytes the caller
    /// produced without downloading it again.
    pub async fn put_multipart_file_expecting(
        &self,
        relative: &str,
        file: &std::path::Path,
        part_size: u64,
        concurrency: usize,
        expected: &Expected,
    ) -> Result<u64, StoreError> {
        self.put_multipart(relative, file, part_size, concurrency, Some(expected))
            .await
    }

    async fn put_multipart(
        &self,
        relative: &str,
        file: &std::path::Path,
        part_size: u64,
        concurrency: usize,
        expected: Option<&Expected>,
    ) -> Result<u64, StoreError> {
        use sha2::Digest;
        use tokio::io::AsyncReadExt;
        if self.exists(relative).await? {
            return Err(StoreError::AlreadyExists {
                object: relative.to_string(),
            });
        }
        let path = self.object_path(relative)?;
        let io_err = |source| StoreError::Io {
            object: relative.to_string(),
            source,
        };
        let mut f = tokio::fs::File::open(file).await.map_err(io_err)?;
        // GCS composes the parts into one object (crate::snapstore::gcs), which holds at most 1024
        // components: a file that would need more gets larger parts.
        let part_size = match self.config.as_ref().map(|c| &c.backend) {
            Some(Backend::Gcs(_)) => {
                let len = f.metadata().await.map_err(io_err)?.len();
                part_size.max(len.div_ceil(crate::snapstore::gcs::MAX_COMPONENTS))
            }
            _ => part_size,
        };
        let locked = match &self.locked {
            Some(l) => l.put_multipart(&path).await,
            None => None,
        };
        let upload = match locked {
            Some(u) => u,
            None => self.inner.put_multipart(&path).await,
        }
        .map_err(|source| StoreError::Object {
            object: relative.to_string(),
            op: "put_multipart",
            source,
        })?;
        let part = usize::try_from(part_size).unwrap_or(usize::MAX).max(1);
        let mut writer = WriteMultipart::new_with_chunk_size(upload, part);
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        let mut hasher = sha2::Sha256::new();
        let result: Result<(), StoreError> = async {
            loop {
                let n = f.read(&mut buf).await.map_err(io_err)?;
                if n == 0 {
                    break;
                }
                writer
                    .wait_for_capacity(concurrency.max(1))
                    .await
                    .map_err(|source| StoreError::Object {
                        object: relative.to_string(),
                        op: "put_multipart",
                        source,
                    })?;
                let data = buf.get(..n).unwrap_or_default();
                if expected.is_some() {
                    hasher.update(data);
                }
                writer.write(data);
                total += n as u64;
            }
            if let Some(want) = expected {
                let sha256: [u8; 32] = hasher.finalize().into();
                if total != want.bytes || sha256 != want.sha256 {
                    return Err(StoreError::Unexpected {
                        object: relative.to_string(),
                        bytes: total,
                        sha256,
                    });
                }
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            let _ = writer.abort().await;
            return Err(e);
        }
        writer.finish().await.map_err(|source| StoreError::Object {
            object: relative.to_string(),
            op: "complete multipart upload",
            source,
        })?;
        Ok(total)
    }
}
