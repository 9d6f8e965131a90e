//! The batch file: one YAML document naming many restore targets, each with its own backup
//! store (docs/batch.md). Parsing is strict (unknown keys are errors, so a typo never silently
//! drops an option), and [`Batch::load`] checks the whole file before any work starts,
//! reporting every problem at once so a long batch is fixed in one edit, not one per run.
//!
//! * `schema`: the YAML schema; `check`: loading and every check; `values`: values and
//!   identities; `checked`: the resulting [`Batch`]; `problem`: [`Problem`], [`BatchError`].

mod check;
mod checked;
mod problem;
mod schema;
#[cfg(test)]
mod tests;
mod values;

pub use checked::{Batch, Member, MemberTargets, Purpose};
pub use problem::{BatchError, Problem};
pub use values::{normalize, parse_compression, parse_time, store_key};
