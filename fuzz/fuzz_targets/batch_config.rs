#![no_main]
//! cargo-fuzz entry point; the body lives in `fuzz/bodies/batch_config.rs` so that the test suite can
//! replay the corpus without cargo-fuzz.

#[path = "../bodies/batch_config.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));
