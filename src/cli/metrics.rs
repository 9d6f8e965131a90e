//! `--metrics-file` and `--pushgateway`: the metrics of one run (restore, compact, validate,
//! initialize), exported when it ends — also when it fails, because a failed CronJob is exactly
//! what an alert should see.
//!
//! Names shared with etcd-backup-restore (`etcdbr_*`) keep its meaning and labels, so existing
//! dashboards keep working; the rest are `etcd_restore_*` (docs/operations.md lists them).

use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use etcd_restore::metrics::Registry;

#[derive(clap::Args, Debug, Default, Clone)]
pub struct MetricsArgs {
    /// Write the run's metrics (Prometheus text format) to this file when it ends, also when
    /// it fails; the file is replaced atomically (for node-exporter's textfile collector).
    #[arg(long, value_name = "FILE")]
    pub metrics_file: Option<PathBuf>,

    /// Push the run's metrics to this Prometheus Pushgateway when it ends
    /// (e.g. http://pushgateway:9091); grouped by job="etcd-restore", command and store, so
    /// runs for different stores never replace each other's metrics.
    #[arg(long, value_name = "URL")]
    pub pushgateway: Option<String>,
}

/// One run's metrics, recorded as it goes.
pub struct RunMetrics {
    command: &'static str,
    started: Instant,
    pub registry: Registry,
}

impl RunMetrics {
    pub fn start(command: &'static str) -> Self {
        Self {
            command,
            started: Instant::now(),
            registry: Registry::new(),
        }
    }

    pub fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// The outcome every command reports the same way.
    pub fn finish(&self, succeeded: bool, revision: Option<i64>) {
        let c = self.command;
        let ok = if succeeded { "true" } else { "false" };
        self.registry.set(
            "etcd_restore_run_duration_seconds",
            "Wall time of the last run of the command.",
            &[("command", c), ("succeeded", ok)],
            self.elapsed(),
        );
        if succeeded {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0);
            self.registry.set(
                "etcd_restore_run_last_success_timestamp_seconds",
                "Unix time the command last succeeded.",
                &[("command", c)],
                now,
            );
        }
        if let Some(rev) = revision {
            self.registry.set(
                "etcd_restore_revision",
                "The etcd revision the run restored, compacted to, or found in the data directory.",
                &[("command", c)],
                rev as f64,
            );
        }
    }
}

impl MetricsArgs {
    pub fn wanted(&self) -> bool {
        self.metrics_file.is_some() || self.pushgateway.is_some()
    }

    /// Writes/pushes `run`'s metrics plus `extra` (more exposition text). A failure to export
    /// is reported on stderr but does not change the run's exit code: the job itself did (or
    /// did not) do its work either way.
    pub async fn export(&self, run: &RunMetrics, store: &str, extra: &str) {
        if !self.wanted() {
            return;
        }
        let mut text = run.registry.render();
        text.push_str(extra);
        if let Some(path) = &self.metrics_file
            && let Err(e) = write_atomically(path, text.as_bytes())
        {
            eprintln!("warning: writing metrics to {}: {e}", path.display());
        }
        if let Some(url) = &self.pushgateway
            && let Err(e) = etcd_restore::pushgateway::push(url, run.command, store, text).await
        {
            eprintln!("warning: {e}");
        }
    }
}

/// A textfile collector must never read a half-written file: write beside it, then rename.
fn write_atomically(path: &std::path::Path, data: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    // Readable by a collector running as another user (the temp file starts as 0600).
    tmp.as_file()
        .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
    std::io::Write::write_all(&mut tmp, data)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
