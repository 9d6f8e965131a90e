//! What a batch run did: one status per member and a summary, as a table or JSON.

use std::fmt::Write as _;
use std::path::PathBuf;

use super::config::Purpose;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Succeeded,
    Failed,
    /// Not run: an earlier member failed and the batch keeps its order.
    Skipped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
        }
    }
}

/// One member's outcome.
#[derive(Clone, Debug, serde::Serialize)]
pub struct MemberReport {
    pub alias: String,
    pub store: String,
    pub data_dirs: Vec<PathBuf>,
    pub status: Status,
    /// One line for the table: what was done (revision, object, verdict, ...).
    pub summary: String,
    pub error: Option<String>,
    pub seconds: f64,
    /// The command's own report for this member (as `--json` of the single command prints it).
    pub detail: Option<serde_json::Value>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Summary {
    pub command: Purpose,
    pub batch_file: PathBuf,
    pub maintain_order: bool,
    /// Members run at a time (1 when the order is kept).
    pub parallel: usize,
    pub members: usize,
    pub succeeded: usize,
    pub failed: usize,
    pub skipped: usize,
    /// Wall time of the whole batch.
    pub seconds: f64,
    /// Sum of the members' times (compare with `seconds` for the gain of running in parallel).
    pub member_seconds: f64,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct BatchReport {
    pub summary: Summary,
    pub members: Vec<MemberReport>,
}

impl BatchReport {
    pub fn all_succeeded(&self) -> bool {
        self.summary.failed == 0 && self.summary.skipped == 0
    }

    /// A fixed-width table (one row per member) followed by the summary and each error.
    pub fn to_table(&self) -> String {
        let s = &self.summary;
        let mut out = String::new();
        let headers = ["ALIAS", "STATUS", "SECONDS", "STORE", "RESULT"];
        let rows: Vec<[String; 5]> = self
            .members
            .iter()
            .map(|m| {
                [
                    m.alias.clone(),
                    m.status.as_str().to_string(),
                    format!("{:.2}", m.seconds),
                    m.store.clone(),
                    m.summary.clone(),
                ]
            })
            .collect();
        let mut widths = headers.map(str::len);
        for r in &rows {
            for (w, cell) in widths.iter_mut().zip(r) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let mut l = String::new();
            for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
                if i + 1 == cells.len() {
                    l.push_str(cell);
                } else {
                    let _ = write!(l, "{cell:<w$}  ");
                }
            }
            l.trim_end().to_string()
        };
        let _ = writeln!(out, "{}", line(&headers.map(String::from)));
        for r in &rows {
            let _ = writeln!(out, "{}", line(r));
        }
        let _ = writeln!(
            out,
            "{} of {} member(s) succeeded, {} failed, {} skipped; {} {} in {:.2}s ({:.2}s of member time, {})",
            s.succeeded,
            s.members,
            s.failed,
            s.skipped,
            s.command.as_str(),
            s.batch_file.display(),
            s.seconds,
            s.member_seconds,
            if s.maintain_order {
                "in listed order".to_string()
            } else {
                format!("{} at a time", s.parallel)
            }
        );
        for m in &self.members {
            if let Some(e) = &m.error {
                let _ = writeln!(out, "{}: {}: {e}", m.alias, m.status.as_str());
            }
        }
        out
    }
}
