//! Running a batch's members: at most N at a time, or one after the other in listed order.
//!
//! Every member runs in its own task, so a member that fails (or panics) ends only its own
//! task; what it wrote lives in its own staging directory, which is dropped (restore) or its
//! own temp directory (compact). The report lists members in the file's order whatever order
//! they finished in.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Semaphore;

use super::config::{Batch, Member};
use super::report::{BatchReport, MemberReport, Status, Summary};

/// How members are scheduled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// Up to this many members at once; all run, whatever the others do.
    Parallel(usize),
    /// Listed order, one at a time; after a failure the rest are skipped unless told otherwise.
    Ordered { continue_on_error: bool },
}

impl Schedule {
    /// `maintainOrder` picks the kind; `--parallel` overrides `defaults.parallel`, which
    /// defaults to the number of CPUs.
    pub fn for_batch(batch: &Batch, parallel: Option<usize>, continue_on_error: bool) -> Schedule {
        if batch.maintain_order {
            return Schedule::Ordered { continue_on_error };
        }
        let n = parallel.or(batch.parallel).unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        });
        Schedule::Parallel(n.max(1))
    }

    /// How many members may run at once (each gets that share of the memory budget).
    pub fn concurrency(&self) -> usize {
        match self {
            Schedule::Parallel(n) => (*n).max(1),
            Schedule::Ordered { .. } => 1,
        }
    }
}

/// A member's job finished.
#[derive(Debug)]
pub struct Done {
    pub summary: String,
    pub detail: Option<serde_json::Value>,
}

/// A member's job failed; `detail` keeps whatever report it got to.
#[derive(Debug)]
pub struct Failure {
    pub error: String,
    pub summary: String,
    pub detail: Option<serde_json::Value>,
}

impl Failure {
    pub fn new(error: impl std::fmt::Display) -> Failure {
        Failure {
            error: error.to_string(),
            summary: String::new(),
            detail: None,
        }
    }
}

/// Runs `job` for every member of `batch` as `schedule` says.
pub async fn run<F, Fut>(batch: &Batch, schedule: Schedule, job: F) -> BatchReport
where
    F: Fn(Member) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Done, Failure>> + Send + 'static,
{
    let t0 = Instant::now();
    let job = Arc::new(job);
    let mut reports = Vec::with_capacity(batch.members.len());
    match schedule {
        Schedule::Parallel(n) => {
            let permits = Arc::new(Semaphore::new(n.max(1)));
            let mut handles = Vec::with_capacity(batch.members.len());
            for m in &batch.members {
                // Start in listed order; a member starts when an earlier one frees its slot.
                let permit = permits.clone().acquire_owned().await;
                let (job, member) = (job.clone(), m.clone());
                handles.push(tokio::spawn(async move {
                    let _permit = permit;
                    timed(job(member)).await
                }));
            }
            for (m, h) in batch.members.iter().zip(handles) {
                reports.push(member_report(m, joined(h.await)));
            }
        }
        Schedule::Ordered { continue_on_error } => {
            let mut failed: Option<String> = None;
            for m in &batch.members {
                if let Some(first) = &failed {
                    reports.push(skipped(m, first));
                    continue;
                }
                let member = m.clone();
                let job = job.clone();
                let outcome = joined(tokio::spawn(async move { timed(job(member)).await }).await);
                let report = member_report(m, outcome);
                if report.status == Status::Failed && !continue_on_error {
                    failed = Some(m.alias.clone());
                }
                reports.push(report);
            }
        }
    }
    let count = |s| reports.iter().filter(|r| r.status == s).count();
    let summary = Summary {
        command: batch.purpose,
        batch_file: batch.path.clone(),
        maintain_order: batch.maintain_order,
        parallel: match schedule {
            Schedule::Parallel(n) => n.min(batch.members.len().max(1)),
            Schedule::Ordered { .. } => 1,
        },
        members: reports.len(),
        succeeded: count(Status::Succeeded),
        failed: count(Status::Failed),
        skipped: count(Status::Skipped),
        seconds: t0.elapsed().as_secs_f64(),
        member_seconds: reports.iter().map(|r| r.seconds).sum(),
    };
    BatchReport {
        summary,
        members: reports,
    }
}

type Timed = (Result<Done, Failure>, f64);

async fn timed<Fut: Future<Output = Result<Done, Failure>>>(f: Fut) -> Timed {
    let t = Instant::now();
    let r = f.await;
    (r, t.elapsed().as_secs_f64())
}

fn joined(r: Result<Timed, tokio::task::JoinError>) -> Timed {
    match r {
        Ok(t) => t,
        Err(e) => {
            let why = if e.is_panic() {
                "the member's task panicked (a bug: please report it with the log)"
            } else {
                "the member's task was cancelled"
            };
            (Err(Failure::new(why)), 0.0)
        }
    }
}

fn member_report(m: &Member, (outcome, seconds): Timed) -> MemberReport {
    let (status, summary, error, detail) = match outcome {
        Ok(d) => (Status::Succeeded, d.summary, None, d.detail),
        Err(f) => (Status::Failed, f.summary, Some(f.error), f.detail),
    };
    MemberReport {
        alias: m.alias.clone(),
        store: m.store_key.clone(),
        data_dirs: m.targets.dirs(),
        status,
        summary,
        error,
        seconds,
        detail,
    }
}

fn skipped(m: &Member, first_failure: &str) -> MemberReport {
    MemberReport {
        alias: m.alias.clone(),
        store: m.store_key.clone(),
        data_dirs: m.targets.dirs(),
        status: Status::Skipped,
        summary: format!(
            "not run: {first_failure} failed before it (--continue-on-error runs the rest)"
        ),
        error: None,
        seconds: 0.0,
        detail: None,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::batch::config::Purpose;
    use crate::snapstore::StoreArgs;

    fn batch(n: usize, maintain_order: bool) -> Batch {
        let mut text =
            format!("defaults: {{store: /s}}\nmaintainOrder: {maintain_order}\nmembers:\n");
        for i in 0..n {
            text.push_str(&format!("- {{alias: m{i}, prefix: m{i}}}\n"));
        }
        Batch::parse(
            &text,
            Path::new("b.yaml"),
            Path::new("/"),
            Purpose::Compact,
            &StoreArgs::default(),
        )
        .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn parallel_runs_every_member_and_never_more_than_n_at_once() {
        let b = batch(7, false);
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let (r, p) = (running.clone(), peak.clone());
        let report = run(&b, Schedule::Parallel(3), move |m| {
            let (r, p) = (r.clone(), p.clone());
            async move {
                let now = r.fetch_add(1, Ordering::SeqCst) + 1;
                p.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(30)).await;
                r.fetch_sub(1, Ordering::SeqCst);
                if m.alias == "m2" {
                    panic!("a bug in one member");
                }
                if m.alias == "m4" {
                    return Err(Failure::new("m4 failed"));
                }
                Ok(Done {
                    summary: m.alias.clone(),
                    detail: None,
                })
            }
        })
        .await;
        assert_eq!(peak.load(Ordering::SeqCst), 3);
        let statuses: Vec<Status> = report.members.iter().map(|m| m.status).collect();
        use Status::*;
        assert_eq!(
            statuses,
            [
                Succeeded, Succeeded, Failed, Succeeded, Failed, Succeeded, Succeeded
            ]
        );
        assert_eq!(report.summary.failed, 2);
        assert_eq!(report.summary.parallel, 3);
        assert!(report.to_table().contains("m4: failed: m4 failed"));
    }

    #[tokio::test]
    async fn ordered_stops_at_the_first_failure_unless_told_to_continue() {
        let b = batch(4, true);
        for (continue_on_error, want) in [
            (false, ["m0", "m1"].as_slice()),
            (true, ["m0", "m1", "m2", "m3"].as_slice()),
        ] {
            let order = Arc::new(std::sync::Mutex::new(Vec::new()));
            let o = order.clone();
            let report = run(&b, Schedule::Ordered { continue_on_error }, move |m| {
                let o = o.clone();
                async move {
                    o.lock().unwrap().push(m.alias.clone());
                    if m.alias == "m1" {
                        Err(Failure::new("broken"))
                    } else {
                        Ok(Done {
                            summary: String::new(),
                            detail: None,
                        })
                    }
                }
            })
            .await;
            assert_eq!(*order.lock().unwrap(), want);
            assert_eq!(report.summary.skipped, 4 - want.len());
            assert!(!report.all_succeeded());
        }
    }
}
