//! bbolt: see docs/architecture.md
