#![no_main]
//! cargo-fuzz entry point; the body lives in `fuzz/bodies/snapshot_name.rs` so that the test suite can
//! replay the corpus without cargo-fuzz.

#[path = "../bodies/snapshot_name.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));
