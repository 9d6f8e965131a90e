//! One test run alone in a child process of its own test binary.
//!
//! The root crate's integration tests share one process (`tests/it/`), so a test that has to
//! change process-wide state for code it calls in-process (an environment variable the library
//! reads) cannot do it there without racing every other test. It runs itself again instead:
//!
//! ```ignore
//! if !testkit::alone::in_own_process() {
//!     return; // the child ran the body and passed
//! }
//! unsafe { std::env::set_var(...) } // alone in this process now
//! ```

use std::process::Command;

/// Names the test the child process is to run the body of.
const MARKER: &str = "TESTKIT_ALONE";

/// In the test binary's own run: runs the calling test again in a child process, alone
/// (`--exact`, one test thread), asserts that it ran and passed, and returns `false`: the caller
/// returns. In that child: returns `true`; the caller runs its body and may change
/// process-wide state.
pub fn in_own_process() -> bool {
    let test = crate::deps::current_test();
    assert!(
        test != "<test>",
        "alone::in_own_process must be called on the test's own thread"
    );
    if std::env::var_os(MARKER).is_some_and(|v| v == test.as_str()) {
        return true;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = Command::new(&exe)
        .args(["--exact", &test, "--test-threads=1", "--nocapture"])
        .env(MARKER, &test)
        .output()
        .unwrap_or_else(|e| panic!("{test}: cannot run {} again: {e}", exe.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    // A filter that matched nothing would also exit 0: the child must have run exactly this test.
    assert!(
        out.status.success() && stdout.contains("test result: ok. 1 passed;"),
        "{test}, run alone in a child process: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    false
}
