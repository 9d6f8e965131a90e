#![no_main]
//! cargo-fuzz entry point; the body lives in `fuzz/bodies/snap_reader.rs` so that the test suite can
//! replay the corpus without cargo-fuzz.

#[path = "../bodies/snap_reader.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));
