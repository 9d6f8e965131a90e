//! One compaction of a store at a time: a lock object `v2/.etcd-restore-compact.lock`, created
//! with the store's create-only put (S3 and Azure `If-None-Match: *`, GCS
//! `ifGenerationMatch=0`, a hard link on the file store — all atomic: of two creators exactly
//! one succeeds). Its body names the owner (a random token, host and pid) and an expiry; the
//! holder renews it every third of the TTL, so a killed job's lock lapses after at most one TTL
//! (at once when the holder ran on the same host and its pid is gone) and the next run takes
//! it over (delete, then create-only again: of two runs taking over at once, one creates and
//! the other finds a live lock).
//!
//! The holder checks that the lock is still its own right before publishing the snapshot; a
//! lock lost to a takeover (the holder could not renew it for a whole TTL) ends the run with
//! nothing published. While it holds the lock a run may remove stale temporary uploads: no
//! other run's upload can be in flight.
//!
//! In an S3 bucket with an Object Lock default retention every write of the lock would be a
//! version kept for that whole period (days, years). Each is written instead with its own
//! GOVERNANCE retention ending [`DEFAULT_LOCK_RETENTION_SLACK`] after the lock's expiry (a
//! request SigV4 accepts is at most 15 minutes off the server's clock, so that date is still
//! ahead of the server's), and the next holder deletes the old versions and delete markers
//! whose retention has ended.
//!
//! The name starts with a dot and has no snapshot fields, so neither this tool's listing nor
//! etcdbrctl's (`ParseSnapshot` fails, the object is skipped) nor its garbage collector ever
//! takes it for a snapshot.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use object_store::ObjectStoreExt as _;

use super::CompactError;
use crate::snapstore::{Store, StoreError};

/// The lock object, below the store prefix.
pub const LOCK_OBJECT: &str = "v2/.etcd-restore-compact.lock";
/// Default lifetime of an unrenewed lock.
pub const DEFAULT_LOCK_TTL: Duration = Duration::from_secs(60);
/// How long after its expiry a lock version stays retained in an object-locked S3 bucket.
pub const DEFAULT_LOCK_RETENTION_SLACK: Duration = Duration::from_secs(15 * 60);
/// A lock body is a few hundred bytes; anything larger is not ours.
const MAX_LOCK_BYTES: usize = 64 << 10;

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct LockBody {
    owner: String,
    host: String,
    pid: u32,
    acquired_unix_ms: i64,
    expires_unix_ms: i64,
}

/// What the run's report says about the lock.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LockReport {
    pub object: String,
    pub owner: String,
    pub acquired_unix_ms: i64,
    /// Set when released (after publishing or failing).
    pub released_unix_ms: Option<i64>,
    /// A lapsed lock of an earlier run was replaced.
    pub took_over: Option<String>,
    /// Object-locked S3 bucket: old versions and delete markers of the lock removed when it
    /// was taken, and those still retained.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_versions_removed: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_versions_retained: Option<u64>,
}

/// A held lock; renewed in the background until [`StoreLock::release`].
pub struct StoreLock {
    store: Store,
    body: LockBody,
    lost: Arc<AtomicBool>,
    renewer: tokio::task::JoinHandle<()>,
    pub report: LockReport,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn describe(b: &LockBody) -> String {
    let expires = chrono::DateTime::from_timestamp_millis(b.expires_unix_ms)
        .map(|t| t.to_rfc3339())
        .unwrap_or_default();
    format!(
        "{} (pid {} on {}), expires {expires}",
        b.owner, b.pid, b.host
    )
}

async fn read(store: &Store) -> Result<Option<LockBody>, StoreError> {
    let failed = |source| StoreError::Object {
        object: LOCK_OBJECT.into(),
        op: "get",
        source,
    };
    let path = store.object_path(LOCK_OBJECT)?;
    let res = match store.object_store().get(&path).await {
        Ok(r) => r,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(failed(e)),
    };
    let buf = if res.meta.size as usize > MAX_LOCK_BYTES {
        Bytes::new()
    } else {
        res.bytes().await.map_err(failed)?
    };
    // An unreadable body is treated as lapsed (a torn write of a crashed run, or garbage).
    Ok(Some(serde_json::from_slice(&buf).unwrap_or(LockBody {
        owner: "unreadable".into(),
        host: String::new(),
        pid: 0,
        acquired_unix_ms: 0,
        expires_unix_ms: 0,
    })))
}

/// The retention a lock version gets in an object-locked S3 bucket (Unix seconds).
fn retain_until(b: &LockBody, slack: Duration) -> i64 {
    let slack = i64::try_from(slack.as_secs()).unwrap_or(i64::MAX / 2);
    b.expires_unix_ms.div_euclid(1000) + 1 + slack
}

fn encode(b: &LockBody) -> Bytes {
    Bytes::from(serde_json::to_vec_pretty(b).expect("JSON"))
}

impl StoreLock {
    /// Takes the store's compaction lock, or fails with [`CompactError::Locked`] naming the
    /// holder.
    pub async fn acquire(
        store: &Store,
        ttl: Duration,
        retention_slack: Duration,
    ) -> Result<StoreLock, CompactError> {
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2);
        let mut took_over = None;
        for _ in 0..2 {
            let t = now_ms();
            let body = LockBody {
                owner: format!("{:032x}", rand_token()),
                host: hostname(),
                pid: std::process::id(),
                acquired_unix_ms: t,
                expires_unix_ms: t + ttl_ms,
            };
            let keep = Some(retain_until(&body, retention_slack));
            match store.put_create(LOCK_OBJECT, encode(&body), keep).await {
                Ok(()) => {
                    // Stores without a create-only put fall back to check-then-put; reading
                    // our own body back catches the lost race there.
                    match read(store).await? {
                        Some(b) if b.owner == body.owner => {}
                        Some(b) => {
                            return Err(CompactError::Locked {
                                object: LOCK_OBJECT.into(),
                                holder: describe(&b),
                            });
                        }
                        None => {
                            return Err(CompactError::LockLost {
                                object: LOCK_OBJECT.into(),
                                detail: "removed right after it was created".into(),
                            });
                        }
                    }
                    let mut lock = Self::start(store, body, ttl, retention_slack, took_over);
                    lock.purge_old_versions().await;
                    return Ok(lock);
                }
                Err(StoreError::AlreadyExists { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            match read(store).await? {
                // Released in between: try again.
                None => continue,
                Some(b) if b.expires_unix_ms > now_ms() && !holder_is_dead(&b) => {
                    return Err(CompactError::Locked {
                        object: LOCK_OBJECT.into(),
                        holder: describe(&b),
                    });
                }
                Some(b) => {
                    tracing::warn!(holder = %describe(&b), "taking over a lapsed compaction lock (its run is gone or stalled)");
                    took_over = Some(describe(&b));
                    store.delete(LOCK_OBJECT).await?;
                }
            }
        }
        let holder = read(store)
            .await?
            .map(|b| describe(&b))
            .unwrap_or_else(|| "another run".into());
        Err(CompactError::Locked {
            object: LOCK_OBJECT.into(),
            holder,
        })
    }

    fn start(
        store: &Store,
        body: LockBody,
        ttl: Duration,
        retention_slack: Duration,
        took_over: Option<String>,
    ) -> Self {
        let lost = Arc::new(AtomicBool::new(false));
        let (s, mut b, l) = (store.clone(), body.clone(), Arc::clone(&lost));
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2);
        let renewer = tokio::spawn(async move {
            loop {
                tokio::time::sleep(ttl / 3).await;
                match read(&s).await {
                    Ok(Some(cur)) if cur.owner == b.owner => {
                        b.expires_unix_ms = now_ms() + ttl_ms;
                        let keep = Some(retain_until(&b, retention_slack));
                        if let Err(e) = s.put_replace(LOCK_OBJECT, encode(&b), keep).await {
                            tracing::warn!(error = %e, "could not renew the compaction lock; retrying");
                        }
                    }
                    Ok(_) => {
                        tracing::error!(
                            "the compaction lock was taken over; this run will not publish"
                        );
                        l.store(true, Ordering::SeqCst);
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "could not read the compaction lock; retrying");
                    }
                }
            }
        });
        let report = LockReport {
            object: LOCK_OBJECT.into(),
            owner: body.owner.clone(),
            acquired_unix_ms: body.acquired_unix_ms,
            released_unix_ms: None,
            took_over,
            old_versions_removed: None,
            old_versions_retained: None,
        };
        StoreLock {
            store: store.clone(),
            body,
            lost,
            renewer,
            report,
        }
    }

    /// Object-locked S3 bucket: the versions and delete markers earlier runs' locks left
    /// whose retention has ended. A failure only costs leftovers: a warning.
    async fn purge_old_versions(&mut self) {
        match self.store.purge_old_versions(LOCK_OBJECT).await {
            None => {}
            Some(Ok((removed, retained))) => {
                tracing::info!(removed, retained, "old versions of the compaction lock");
                self.report.old_versions_removed = Some(removed);
                self.report.old_versions_retained = Some(retained);
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "could not remove old versions of the compaction lock (needs s3:ListBucketVersions and s3:DeleteObjectVersion); the next run tries again");
            }
        }
    }

    /// Fails unless the lock is still this run's (read from the store, not remembered).
    pub async fn check(&self) -> Result<(), CompactError> {
        let lost = |detail: String| CompactError::LockLost {
            object: LOCK_OBJECT.into(),
            detail,
        };
        if self.lost.load(Ordering::SeqCst) {
            return Err(lost("taken over while this run could not renew it".into()));
        }
        match read(&self.store).await? {
            Some(b) if b.owner == self.body.owner => Ok(()),
            Some(b) => Err(lost(format!("now held by {}", describe(&b)))),
            None => Err(lost("the lock object is gone".into())),
        }
    }

    /// Stops renewing and removes the lock if it is still this run's.
    pub async fn release(mut self) -> LockReport {
        self.renewer.abort();
        if let Ok(Some(b)) = read(&self.store).await
            && b.owner == self.body.owner
            && let Err(e) = self.store.delete(LOCK_OBJECT).await
        {
            tracing::warn!(error = %e, "could not remove the compaction lock; it lapses by itself");
        }
        self.report.released_unix_ms = Some(now_ms());
        self.report
    }
}

/// 128 random bits from the OS (the owner token only has to differ between runs).
fn rand_token() -> u128 {
    let mut b = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut b);
    }
    u128::from_le_bytes(b) ^ u128::from(std::process::id()) ^ (now_ms() as u128) << 64
}

/// The holder ran on this machine (same host name) and its process is gone: a killed run on
/// the same node (or a test) need not wait for the TTL. A reused pid only delays the takeover.
fn holder_is_dead(b: &LockBody) -> bool {
    b.pid != 0
        && !b.host.is_empty()
        && b.host == hostname()
        && b.pid != std::process::id()
        && !std::path::Path::new("/proc")
            .join(b.pid.to_string())
            .exists()
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local_store(dir: &std::path::Path) -> Store {
        let fs = object_store::local::LocalFileSystem::new_with_prefix(dir).unwrap();
        Store::from_object_store(Arc::new(fs), "", "test store")
    }

    #[tokio::test]
    async fn a_renewed_lock_outlives_its_ttl_and_a_stalled_one_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("v2")).unwrap();
        let store = local_store(dir.path());
        let ttl = Duration::from_millis(300);
        let a = StoreLock::acquire(&store, ttl, DEFAULT_LOCK_RETENTION_SLACK)
            .await
            .unwrap();
        // Three TTLs later it is still held: the holder renewed it.
        tokio::time::sleep(ttl * 3).await;
        assert!(matches!(
            StoreLock::acquire(&store, ttl, DEFAULT_LOCK_RETENTION_SLACK).await,
            Err(CompactError::Locked { .. })
        ));
        a.check().await.unwrap();
        // A holder that stops renewing (stalled) loses it after the TTL.
        a.renewer.abort();
        tokio::time::sleep(ttl + Duration::from_millis(100)).await;
        let b = StoreLock::acquire(&store, ttl, DEFAULT_LOCK_RETENTION_SLACK)
            .await
            .unwrap();
        assert!(b.report.took_over.is_some());
        assert!(matches!(
            a.check().await,
            Err(CompactError::LockLost { .. })
        ));
        // Releasing a lost lock leaves the new holder's alone.
        a.release().await;
        b.check().await.unwrap();
        b.release().await;
        assert!(read(&store).await.unwrap().is_none());
    }
}
