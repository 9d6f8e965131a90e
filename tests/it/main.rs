//! The integration tests: one binary with a module per area, so the crate and its dependencies
//! are linked once instead of once per test file. Run one area with its module path as the
//! filter, e.g. `cargo test --test it restore::` or `cargo test --test it compact::lease::`
//! (docs/testing.md).
//!
//! Every test here shares one process with the others, so none may change process-wide state
//! (environment, current directory, signal dispositions, umask, rlimits) or measure the process
//! itself: such changes go on the child's `Command` (or its `pre_exec`), and measurements are
//! taken on the child (`memory.rs`).

mod batch;
mod compact;
mod deploy;
mod etcdbrctl;
mod memory;
mod readme;
mod reliability {
    mod crash;
    mod faults;
    mod fuzz_smoke;
    mod security;
}
mod restore;
mod serve;
mod snapstore;
mod testbed;
mod validate;
