//! testkit: see docs/testing.md
