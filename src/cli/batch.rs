//! `--batch FILE` for restore, compact and validate: the flags and the report printing they
//! share. The work itself is in [`etcd_restore::batch`].

use std::path::PathBuf;
use std::process::ExitCode;

use etcd_restore::batch::{Batch, BatchError, BatchReport, Purpose, Schedule, Status};
use etcd_restore::snapstore::StoreArgs;

use super::metrics::{MetricsArgs, RunMetrics};

/// Batch exit codes: 0 every member succeeded, 1 a member failed or was skipped, 2 the batch
/// file is unusable (nothing ran).
pub const EXIT_MEMBER_FAILED: u8 = 1;
pub const EXIT_BAD_BATCH: u8 = 2;

const HEADING: &str = "Batch (docs/batch.md)";

#[derive(clap::Args, Debug, Clone)]
pub struct BatchArgs {
    /// Run for every member of this YAML batch file (aliases, their own store prefixes, data
    /// dirs or member sets). The store, data-dir, member and point-in-time flags come from the
    /// file then. Exit 0 when every member succeeded, 1 when one failed, 2 when the file is
    /// invalid (every problem is listed; nothing runs).
    #[arg(long, value_name = "FILE", help_heading = HEADING, conflicts_with_all = ["store", "storage_provider", "store_prefix"])]
    pub batch: Option<PathBuf>,

    /// Members run at a time when the file does not set `maintainOrder: true` (default:
    /// `defaults.parallel`, else the number of CPUs).
    #[arg(long, value_name = "N", help_heading = HEADING, requires = "batch", value_parser = clap::value_parser!(u32).range(1..))]
    pub parallel: Option<u32>,

    /// With `maintainOrder: true`: run the remaining members after one fails (default: stop
    /// and mark them skipped).
    #[arg(long, help_heading = HEADING, requires = "batch")]
    pub continue_on_error: bool,
}

impl BatchArgs {
    /// clap lets `requires = "batch"` pass when a flag that conflicts with --batch is given, so
    /// a single-target run checks it here.
    pub fn check_single(&self) -> anyhow::Result<()> {
        if self.batch.is_none() && (self.parallel.is_some() || self.continue_on_error) {
            anyhow::bail!("--parallel and --continue-on-error need --batch FILE");
        }
        Ok(())
    }

    /// Loads and checks the batch file; prints every problem and returns the exit code when
    /// it is unusable.
    pub fn load(
        &self,
        path: &std::path::Path,
        purpose: Purpose,
        store: &StoreArgs,
    ) -> Result<(Batch, Schedule), ExitCode> {
        match Batch::load(path, purpose, store) {
            Ok(b) => {
                let schedule = Schedule::for_batch(
                    &b,
                    self.parallel.map(|n| n as usize),
                    self.continue_on_error,
                );
                Ok((b, schedule))
            }
            Err(e) => {
                eprintln!("error: {e}");
                if let BatchError::Invalid { .. } = e {
                    eprintln!("hint: fix the problems above and run again (schema: docs/batch.md)");
                }
                Err(ExitCode::from(EXIT_BAD_BATCH))
            }
        }
    }
}

/// Prints the report (table, or JSON with `json`), exports its metrics (`run` was started
/// before the batch) and turns it into the exit code.
pub async fn finish(
    report: &BatchReport,
    json: bool,
    metrics: &MetricsArgs,
    run: RunMetrics,
) -> anyhow::Result<ExitCode> {
    if metrics.wanted() {
        record(report, &run);
        // One Pushgateway group per batch file, so batches never replace each other's metrics
        // nor those of single runs.
        let group = format!("batch:{}", report.summary.batch_file.display());
        metrics.export(&run, &group, "").await;
    }
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        print!("{}", report.to_table());
    }
    Ok(if report.all_succeeded() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_MEMBER_FAILED)
    })
}

/// The batch as a whole (the run metrics every command exports) and one series per member, so
/// an alert can name the alias that failed.
fn record(report: &BatchReport, run: &RunMetrics) {
    let command = report.summary.command.as_str();
    run.finish(report.all_succeeded(), None);
    for m in &report.members {
        let labels = [("command", command), ("alias", m.alias.as_str())];
        run.registry.set(
            "etcd_restore_batch_member_succeeded",
            "1 when the batch member succeeded, 0 when it failed or was skipped.",
            &labels,
            if m.status == Status::Succeeded {
                1.0
            } else {
                0.0
            },
        );
        run.registry.set(
            "etcd_restore_batch_member_duration_seconds",
            "Wall time of the batch member's run.",
            &labels,
            m.seconds,
        );
    }
    for status in [Status::Succeeded, Status::Failed, Status::Skipped] {
        let n = report.members.iter().filter(|m| m.status == status).count();
        run.registry.set(
            "etcd_restore_batch_members",
            "Members of the last batch run, by outcome.",
            &[("command", command), ("status", status.as_str())],
            n as f64,
        );
    }
}
