//! testkit: test-only helpers shared by the workspace's tests and benches. See docs/testing.md.

pub mod objstore;
