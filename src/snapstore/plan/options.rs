//! The point in time a plan is restricted to.

/// Restrict the plan to a point in time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlanOptions {
    /// Stop at this revision: no full snapshot past it, no delta starting after it; the last
    /// delta is applied only up to it.
    pub to_revision: Option<i64>,
    /// Only snapshots created at or before this Unix second.
    pub to_time: Option<i64>,
}

pub(super) fn scope(o: &PlanOptions) -> String {
    match (o.to_revision, o.to_time) {
        (None, None) => String::new(),
        (Some(r), None) => format!(" at or below revision {r}"),
        (None, Some(t)) => format!(" created at or before Unix time {t}"),
        (Some(r), Some(t)) => {
            format!(" at or below revision {r} and created at or before Unix time {t}")
        }
    }
}
