//! Progress of a long job (restore, compact), published as plain numbers.
//!
//! The library only stores counters here — cheap atomics, no terminal code — so the same job
//! can run under a progress bar (the CLI draws one when stderr is a terminal), under the HTTP
//! server, or in a test. Logs (tracing) are written independently of this.

use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU64, Ordering};

/// What the job is doing now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Starting,
    /// Downloading and decompressing the base full snapshot.
    Base,
    /// Applying delta snapshots.
    Deltas,
    /// Checking the result (base records against the deltas, the database structure).
    Verifying,
    /// Writing the output (member files, a compacted database, an upload).
    Writing,
    Done,
}

impl Phase {
    const ALL: [Phase; 6] = [
        Phase::Starting,
        Phase::Base,
        Phase::Deltas,
        Phase::Verifying,
        Phase::Writing,
        Phase::Done,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Base => "downloading the base snapshot",
            Phase::Deltas => "applying deltas",
            Phase::Verifying => "verifying",
            Phase::Writing => "writing",
            Phase::Done => "done",
        }
    }
}

/// Counters shared between a job and whoever shows its progress.
#[derive(Debug, Default)]
pub struct Progress {
    phase: AtomicU8,
    base_bytes: AtomicU64,
    base_total: AtomicU64,
    deltas_done: AtomicU64,
    deltas_total: AtomicU64,
    revision: AtomicI64,
}

/// One consistent-enough reading of [`Progress`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub phase: Phase,
    /// Compressed bytes of the base object read so far, and its size (0 = unknown).
    pub base_bytes: u64,
    pub base_total: u64,
    pub deltas_done: u64,
    pub deltas_total: u64,
    /// The highest revision applied so far.
    pub revision: i64,
}

impl Progress {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set_phase(&self, phase: Phase) {
        let i = Phase::ALL.iter().position(|p| *p == phase).unwrap_or(0);
        self.phase.store(i as u8, Ordering::Relaxed);
    }

    pub fn set_base_total(&self, bytes: u64) {
        self.base_total.store(bytes, Ordering::Relaxed);
    }

    pub fn add_base_bytes(&self, bytes: u64) {
        self.base_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn set_deltas_total(&self, n: u64) {
        self.deltas_total.store(n, Ordering::Relaxed);
    }

    pub fn delta_done(&self, revision: i64) {
        self.deltas_done.fetch_add(1, Ordering::Relaxed);
        self.set_revision(revision);
    }

    pub fn set_revision(&self, revision: i64) {
        self.revision.fetch_max(revision, Ordering::Relaxed);
    }

    pub fn read(&self) -> Snapshot {
        let phase = Phase::ALL
            .get(self.phase.load(Ordering::Relaxed) as usize)
            .copied()
            .unwrap_or(Phase::Starting);
        Snapshot {
            phase,
            base_bytes: self.base_bytes.load(Ordering::Relaxed),
            base_total: self.base_total.load(Ordering::Relaxed),
            deltas_done: self.deltas_done.load(Ordering::Relaxed),
            deltas_total: self.deltas_total.load(Ordering::Relaxed),
            revision: self.revision.load(Ordering::Relaxed),
        }
    }
}

/// A `Read` that adds what passes through it to [`Progress::add_base_bytes`].
pub(crate) struct CountingReader<R> {
    pub inner: R,
    pub progress: std::sync::Arc<Progress>,
}

impl<R: std::io::Read> std::io::Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.add_base_bytes(n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_phases_round_trip() {
        let p = Progress::new();
        assert_eq!(p.read().phase, Phase::Starting);
        for phase in Phase::ALL {
            p.set_phase(phase);
            assert_eq!(p.read().phase, phase);
        }
        p.set_deltas_total(3);
        p.delta_done(10);
        p.delta_done(7);
        let s = p.read();
        assert_eq!((s.deltas_done, s.deltas_total, s.revision), (2, 3, 10));
        let mut r = CountingReader {
            inner: &b"hello world"[..],
            progress: std::sync::Arc::new(Progress::new()),
        };
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut r, &mut out).unwrap();
        assert_eq!(r.progress.read().base_bytes, 11);
    }
}
