#![no_main]
//! cargo-fuzz entry point; the body lives in `fuzz/bodies/wal_decoder.rs` so that the test suite can
//! replay the corpus without cargo-fuzz.

#[path = "../bodies/wal_decoder.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));
