//! The state machine behind `/initialization/start|status`, which runs the job of
//! [`super::init`] in its own task.
//!
//! States (etcdbrctl's strings, which etcd-wrapper compares): `New` → `start` → `Progress` →
//! `Successful` | `Failed`; reading `Successful` or `Failed` through [`InitState::take_status`]
//! resets to `New`, so the next `start` runs again (etcd-wrapper's retry loop).

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::metrics::Registry;

use super::init::{InitError, Outcome};

/// Where an initialization is (etcdbrctl's status strings).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    New,
    Progress,
    Successful,
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::New => "New",
            Status::Progress => "Progress",
            Status::Successful => "Successful",
            Status::Failed => "Failed",
        }
    }
    const ALL: [Status; 4] = [
        Status::New,
        Status::Progress,
        Status::Successful,
        Status::Failed,
    ];
}

const STATUS: &str = "etcd_restore_initialization_status";
const STATUS_HELP: &str = "1 for the current initialization status, 0 for the others.";

struct Inner {
    status: Status,
    task: Option<JoinHandle<()>>,
    /// The job itself (the task above only records its result).
    job: Option<tokio::task::AbortHandle>,
    last_error: Option<String>,
}

/// The shared state machine; cheap to query from many concurrent requests.
pub struct InitState {
    inner: Mutex<Inner>,
    metrics: Arc<Registry>,
}

impl InitState {
    pub fn new(metrics: Arc<Registry>) -> Arc<Self> {
        let s = Arc::new(InitState {
            inner: Mutex::new(Inner {
                status: Status::New,
                task: None,
                job: None,
                last_error: None,
            }),
            metrics,
        });
        s.publish(Status::New);
        s
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn publish(&self, now: Status) {
        for s in Status::ALL {
            self.metrics.set(
                STATUS,
                STATUS_HELP,
                &[("status", s.as_str())],
                if s == now { 1.0 } else { 0.0 },
            );
        }
    }

    /// Starts `job` when the state is `New` (→ `Progress`); otherwise does nothing. Returns
    /// whether it started. Must be called inside a tokio runtime.
    pub fn start<F>(self: &Arc<Self>, job: F) -> bool
    where
        F: Future<Output = Result<Outcome, InitError>> + Send + 'static,
    {
        let mut g = self.lock();
        if g.status != Status::New {
            return false;
        }
        g.status = Status::Progress;
        self.publish(Status::Progress);
        let me = Arc::clone(self);
        // A panic inside the job must still end in `Failed`, so the job runs in its own task.
        let job = tokio::spawn(job);
        g.job = Some(job.abort_handle());
        g.task = Some(tokio::spawn(async move {
            let result = match job.await {
                Ok(r) => r,
                Err(e) => Err(InitError::Task(e.to_string())),
            };
            let mut g = me.lock();
            g.status = match &result {
                Ok(outcome) => {
                    tracing::info!(?outcome, "initialization successful");
                    g.last_error = None;
                    Status::Successful
                }
                Err(e) => {
                    tracing::error!(error = %e, "initialization failed");
                    g.last_error = Some(e.to_string());
                    Status::Failed
                }
            };
            me.publish(g.status);
        }));
        true
    }

    /// The status; reading `Successful` or `Failed` resets it to `New` (etcdbrctl's
    /// read-once semantics).
    pub fn take_status(&self) -> Status {
        let mut g = self.lock();
        let s = g.status;
        if matches!(s, Status::Successful | Status::Failed) {
            g.status = Status::New;
            g.task = None;
            g.job = None;
            self.publish(Status::New);
        }
        s
    }

    /// The status without side effects.
    pub fn peek(&self) -> Status {
        self.lock().status
    }

    /// The error of the last failed initialization (cleared by a successful one).
    pub fn last_error(&self) -> Option<String> {
        self.lock().last_error.clone()
    }

    /// Waits up to `grace` for a running initialization, then abandons it (the data directory
    /// is only ever replaced by an atomic rename, so an abandoned restore leaves at most a
    /// hidden staging directory that the next run removes). Returns whether one was cut off.
    pub async fn shutdown(&self, grace: Duration) -> bool {
        let (task, job) = {
            let mut g = self.lock();
            (g.task.take(), g.job.take())
        };
        let Some(mut task) = task else { return false };
        if task.is_finished() {
            return false;
        }
        match tokio::time::timeout(grace, &mut task).await {
            Ok(_) => false,
            Err(_) => {
                if let Some(job) = job {
                    job.abort();
                }
                task.abort();
                true
            }
        }
    }
}
