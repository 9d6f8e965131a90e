//! The terminal side of [`etcd_restore::progress`]: a progress bar on stderr while a restore or
//! compaction runs, drawn only when stderr is a terminal (logs and `--json` stay clean).

use std::io::IsTerminal as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use etcd_restore::progress::{Phase, Progress};
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};

/// Draws until dropped.
pub struct ProgressUi {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ProgressUi {
    /// `None` when stderr is not a terminal.
    pub fn start(progress: &Arc<Progress>, what: &'static str) -> Option<ProgressUi> {
        if !std::io::stderr().is_terminal() {
            return None;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (progress, stop) = (progress.clone(), stop.clone());
            std::thread::Builder::new()
                .name("progress".into())
                .spawn(move || draw(&progress, &stop, what))
                .ok()?
        };
        Some(ProgressUi {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for ProgressUi {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn draw(progress: &Progress, stop: &AtomicBool, what: &str) {
    let bar = ProgressBar::new(0);
    let style =
        ProgressStyle::with_template("{prefix} {spinner} [{elapsed_precise}] {wide_bar} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_prefix(what.to_string());
    while !stop.load(Ordering::Relaxed) {
        let s = progress.read();
        match s.phase {
            Phase::Base => {
                bar.set_length(s.base_total.max(1));
                bar.set_position(s.base_bytes);
                bar.set_message(format!(
                    "{}: {} / {}",
                    s.phase.as_str(),
                    HumanBytes(s.base_bytes),
                    HumanBytes(s.base_total)
                ));
            }
            Phase::Deltas => {
                bar.set_length(s.deltas_total.max(1));
                bar.set_position(s.deltas_done);
                bar.set_message(format!(
                    "{}: {} / {} (revision {})",
                    s.phase.as_str(),
                    s.deltas_done,
                    s.deltas_total,
                    s.revision
                ));
            }
            other => {
                bar.set_message(format!("{} (revision {})", other.as_str(), s.revision));
            }
        }
        bar.tick();
        std::thread::sleep(Duration::from_millis(100));
    }
    bar.finish_and_clear();
}
