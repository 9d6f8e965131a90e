//! Many targets from one configuration: a YAML batch file lists members (alias, own store
//! prefix, data dir or member set, point in time); restore, compact and validate run them in
//! parallel or in listed order and report per member. See docs/batch.md.
//!
//! * [`config`]: the schema, defaults merge and every check before any work;
//! * [`run`]: the scheduler (bounded parallel, or ordered with stop/continue);
//! * [`jobs`]: what each command does for one member;
//! * [`report`]: per-member status and the summary (table and JSON).

pub mod config;
pub mod jobs;
pub mod report;
pub mod run;

pub use config::{Batch, BatchError, Member, MemberTargets, Problem, Purpose};
pub use jobs::{
    CompactSettings, RestoreSettings, SharedReplay, ValidateSettings, compact_batch, restore_batch,
    validate_batch,
};
pub use report::{BatchReport, MemberReport, Status, Summary};
pub use run::{Done, Failure, Schedule};
