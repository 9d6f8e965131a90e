#![no_main]
//! cargo-fuzz entry point; the body lives in `fuzz/bodies/bbolt_open_check.rs` so that the test suite can
//! replay the corpus without cargo-fuzz.

#[path = "../bodies/bbolt_open_check.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));
