//! SIGKILL at a chosen moment: the crash tests (`tests/it/reliability/crash.rs`, `tests/it/compact.rs`) time an
//! un-killed run first and spread their kills over that time, so the kills land inside the
//! run rather than before it starts or after it ends.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Runs `cmd` to the end; returns its wall time and output.
pub fn time_it(mut cmd: Command) -> (Duration, Output) {
    let t = Instant::now();
    let out = cmd.output().expect("run the command");
    (t.elapsed(), out)
}

/// Runs `cmd` and SIGKILLs it after `delay` unless it ended before. Returns whether it
/// finished on its own, and its output then.
pub fn run_and_kill(mut cmd: Command, delay: Duration) -> (bool, Option<Output>) {
    let mut child = cmd.spawn().expect("spawn the command");
    let start = Instant::now();
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            let out = child.wait_with_output().expect("output");
            return (true, Some(out));
        }
        if start.elapsed() >= delay {
            // std's kill() sends SIGKILL.
            let _ = child.kill();
            let _ = child.wait();
            return (false, None);
        }
        std::thread::sleep(Duration::from_millis(1).min(delay.saturating_sub(start.elapsed())));
    }
}
