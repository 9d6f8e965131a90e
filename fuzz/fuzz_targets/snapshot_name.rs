#![no_main]

use libfuzzer_sys::fuzz_target;

// Placeholder until the target is written; see docs/testing.md.
fuzz_target!(|data: &[u8]| {
    let _ = data;
});
