//! The applier's per-key state, bounded in memory.
//!
//! Checking every event against its key's history needs one entry per distinct key the deltas
//! touch, and a Kubernetes cluster writes many keys once (every Event object is new). The
//! entries live in a hash map until they take `budget` bytes; then the map is written, in key
//! order, into a scratch bbolt file in the spool directory and emptied, and later lookups that
//! miss the map read that file. Small restores never create it; large ones trade a B+tree
//! lookup per miss for memory that does not grow with the number of keys.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bbolt::{Db, FreeSpace, OpenOptions};

/// Bytes an entry costs beyond its key: the boxed key's pointer and allocation, the state,
/// and the map's own slot (measured on x86-64: ~120 B for a 0-byte key).
const ENTRY_OVERHEAD: usize = 128;
/// The scratch file's only bucket.
const BUCKET: &[u8] = b"keys";
/// Bytes of the scratch file's mapped pages kept resident.
const SPILL_MAPPED_BUDGET: usize = 2 << 20;
/// Entries per scratch-file transaction.
const FLUSH_ENTRIES: usize = 8192;

/// Whether a key is live at some point of its history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    Live { create: i64, version: i64 },
    Absent,
}

impl Liveness {
    pub fn describe(self) -> String {
        match self {
            Liveness::Live { create, version } => {
                format!("a live key (create_revision {create}, version {version})")
            }
            Liveness::Absent => "no live key".to_string(),
        }
    }
}

/// What the applier knows about one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyState {
    /// After the last event applied.
    pub now: Liveness,
    /// What the first delta event of this key implies about the base.
    pub base_expect: Option<Liveness>,
    /// What the base holds, filled in by the base scan.
    pub base_found: Option<Liveness>,
    /// The lease the key's current record carries (0 = none, or not live).
    pub lease: i64,
}

/// 1 flag byte per liveness slot plus two i64 each, and the lease.
const ENCODED_LEN: usize = 3 * 17 + 8;

fn put_liveness(out: &mut [u8], l: Option<Liveness>) {
    let (tag, c, v) = match l {
        None => (0u8, 0, 0),
        Some(Liveness::Absent) => (1, 0, 0),
        Some(Liveness::Live { create, version }) => (2, create, version),
    };
    out[0] = tag;
    out[1..9].copy_from_slice(&c.to_le_bytes());
    out[9..17].copy_from_slice(&v.to_le_bytes());
}

fn get_liveness(b: &[u8]) -> Option<Option<Liveness>> {
    let tag = *b.first()?;
    let c = i64::from_le_bytes(b.get(1..9)?.try_into().ok()?);
    let v = i64::from_le_bytes(b.get(9..17)?.try_into().ok()?);
    match tag {
        0 => Some(None),
        1 => Some(Some(Liveness::Absent)),
        2 => Some(Some(Liveness::Live {
            create: c,
            version: v,
        })),
        _ => None,
    }
}

impl KeyState {
    fn encode(&self) -> [u8; ENCODED_LEN] {
        let mut out = [0u8; ENCODED_LEN];
        put_liveness(&mut out[0..17], Some(self.now));
        put_liveness(&mut out[17..34], self.base_expect);
        put_liveness(&mut out[34..51], self.base_found);
        out[51..59].copy_from_slice(&self.lease.to_le_bytes());
        out
    }

    fn decode(b: &[u8]) -> Option<KeyState> {
        Some(KeyState {
            now: get_liveness(b.get(0..17)?)??,
            base_expect: get_liveness(b.get(17..34)?)?,
            base_found: get_liveness(b.get(34..51)?)?,
            lease: i64::from_le_bytes(b.get(51..59)?.try_into().ok()?),
        })
    }
}

/// The scratch file failed (disk full, IO error) or holds what this process did not write.
#[derive(Debug, thiserror::Error)]
pub enum KeyIndexError {
    #[error("key index scratch file {path}: {source}")]
    Db {
        path: PathBuf,
        #[source]
        source: bbolt::Error,
    },
    #[error("key index scratch file in {dir}: {source}")]
    Create {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("key index scratch file {path}: entry of {len} bytes is not a key state")]
    Entry { path: PathBuf, len: usize },
}

struct Spill {
    // Deleted with the index.
    _dir: tempfile::TempDir,
    path: PathBuf,
    db: Db,
}

impl Spill {
    fn err(&self) -> impl Fn(bbolt::Error) -> KeyIndexError + '_ {
        move |source| KeyIndexError::Db {
            path: self.path.clone(),
            source,
        }
    }
}

/// Key → [`KeyState`], in memory up to a budget, then backed by a scratch file.
pub struct KeyIndex {
    mem: HashMap<Box<[u8]>, KeyState>,
    mem_bytes: usize,
    budget: usize,
    spill_dir: Option<PathBuf>,
    spill: Option<Spill>,
    len_spilled: u64,
}

impl KeyIndex {
    /// Everything in memory (tests, and callers without a scratch directory).
    pub fn in_memory() -> Self {
        KeyIndex {
            mem: HashMap::new(),
            mem_bytes: 0,
            budget: usize::MAX,
            spill_dir: None,
            spill: None,
            len_spilled: 0,
        }
    }

    /// At most about `budget` bytes in memory; the rest in a scratch file in `dir`.
    pub fn bounded(budget: usize, dir: &Path) -> Self {
        KeyIndex {
            budget,
            spill_dir: Some(dir.to_path_buf()),
            ..Self::in_memory()
        }
    }

    /// Whether entries went to the scratch file.
    pub fn spilled(&self) -> bool {
        self.spill.is_some()
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<KeyState>, KeyIndexError> {
        if let Some(st) = self.mem.get(key) {
            return Ok(Some(*st));
        }
        let Some(spill) = &self.spill else {
            return Ok(None);
        };
        let tx = spill.db.begin_read();
        let Some(b) = tx.bucket(BUCKET).map_err(spill.err())? else {
            return Ok(None);
        };
        match b.get(key).map_err(spill.err())? {
            None => Ok(None),
            Some(v) => KeyState::decode(v).map(Some).ok_or(KeyIndexError::Entry {
                path: spill.path.clone(),
                len: v.len(),
            }),
        }
    }

    pub fn put(&mut self, key: &[u8], st: KeyState) -> Result<(), KeyIndexError> {
        if let Some(slot) = self.mem.get_mut(key) {
            *slot = st;
            return Ok(());
        }
        self.mem.insert(key.into(), st);
        self.mem_bytes += key.len() + ENTRY_OVERHEAD;
        if self.mem_bytes > self.budget && self.spill_dir.is_some() {
            self.flush()?;
        }
        Ok(())
    }

    /// Moves every in-memory entry into the scratch file.
    fn flush(&mut self) -> Result<(), KeyIndexError> {
        if self.mem.is_empty() {
            return Ok(());
        }
        if self.spill.is_none() {
            let Some(dir) = &self.spill_dir else {
                return Ok(());
            };
            let create = |source| KeyIndexError::Create {
                dir: dir.clone(),
                source,
            };
            let tmp = tempfile::Builder::new()
                .prefix("etcd-restore-keys-")
                .tempdir_in(dir)
                .map_err(create)?;
            let path = tmp.path().join("keys.db");
            let db = Db::open(
                &path,
                OpenOptions {
                    create: true,
                    // Scratch: a crash loses nothing that the next run does not rebuild.
                    no_sync: true,
                    lock: false,
                    free_space: FreeSpace::Reuse,
                    mapped_budget: SPILL_MAPPED_BUDGET,
                    ..Default::default()
                },
            )
            .map_err(|source| KeyIndexError::Db {
                path: path.clone(),
                source,
            })?;
            self.spill = Some(Spill {
                _dir: tmp,
                path,
                db,
            });
        }
        let Some(spill) = &self.spill else {
            return Ok(());
        };
        // Sorted references, not moved entries: the flush then costs 24 bytes per entry on
        // top of the map instead of a second copy of it.
        let mut entries: Vec<(&[u8], &KeyState)> =
            self.mem.iter().map(|(k, st)| (&**k, st)).collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut added = 0u64;
        // Several small transactions rather than one: each holds the leaves it rewrites in
        // memory until it commits.
        for chunk in entries.chunks(FLUSH_ENTRIES) {
            let mut tx = spill.db.begin_write().map_err(spill.err())?;
            {
                let mut b = tx
                    .create_bucket_if_not_exists(BUCKET)
                    .map_err(spill.err())?;
                for (k, st) in chunk {
                    if b.get(k).map_err(spill.err())?.is_none() {
                        added += 1;
                    }
                    b.put(k, &st.encode()).map_err(spill.err())?;
                }
            }
            tx.commit().map_err(spill.err())?;
        }
        drop(entries);
        self.len_spilled += added;
        self.mem.clear();
        // Give the map's table back too: after a flush it refills from empty.
        self.mem.shrink_to(0);
        self.mem_bytes = 0;
        Ok(())
    }

    /// Calls `f` for every entry (in key order once spilled, else in map order).
    pub fn for_each<E>(
        &mut self,
        mut f: impl FnMut(&[u8], &KeyState) -> Result<(), E>,
    ) -> Result<(), E>
    where
        E: From<KeyIndexError>,
    {
        if self.spill.is_none() {
            for (k, st) in &self.mem {
                f(k, st)?;
            }
            return Ok(());
        }
        self.flush()?;
        let Some(spill) = &self.spill else {
            return Ok(());
        };
        let tx = spill.db.begin_read();
        let Some(b) = tx.bucket(BUCKET).map_err(spill.err())? else {
            return Ok(());
        };
        let mut c = b.cursor();
        let mut e = c.first().map_err(spill.err())?;
        while let Some(entry) = e {
            let st = KeyState::decode(entry.value).ok_or(KeyIndexError::Entry {
                path: spill.path.clone(),
                len: entry.value.len(),
            })?;
            f(entry.key, &st)?;
            e = c.next().map_err(spill.err())?;
        }
        Ok(())
    }

    /// Number of distinct keys.
    pub fn len(&self) -> u64 {
        if self.spill.is_none() {
            return self.mem.len() as u64;
        }
        // Entries still in memory may or may not be in the file; only an upper bound is cheap.
        self.len_spilled + self.mem.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(c: i64, v: i64) -> Liveness {
        Liveness::Live {
            create: c,
            version: v,
        }
    }

    #[test]
    fn states_round_trip_through_the_scratch_file() {
        let dir = tempfile::tempdir().unwrap();
        // A budget of a few entries: most of them live in the file.
        let mut idx = KeyIndex::bounded(3 * (ENTRY_OVERHEAD + 8), dir.path());
        let mut want = std::collections::BTreeMap::new();
        for i in 0..2000i64 {
            let k = format!("/registry/pods/ns/p{:05}", (i * 7919) % 1000).into_bytes();
            let st = match idx.get(&k).unwrap() {
                Some(mut st) => {
                    st.now = if i % 3 == 0 {
                        Liveness::Absent
                    } else {
                        live(i, i / 7)
                    };
                    st
                }
                None => KeyState {
                    now: live(i, 1),
                    base_expect: Some(if i % 2 == 0 {
                        Liveness::Absent
                    } else {
                        live(1, i)
                    }),
                    base_found: None,
                    lease: i,
                },
            };
            idx.put(&k, st).unwrap();
            want.insert(k, st);
        }
        assert!(idx.spilled());
        for (k, st) in &want {
            assert_eq!(idx.get(k).unwrap().as_ref(), Some(st));
        }
        let mut seen = Vec::new();
        idx.for_each(|k, st| {
            seen.push((k.to_vec(), *st));
            Ok::<(), KeyIndexError>(())
        })
        .unwrap();
        assert_eq!(seen, want.into_iter().collect::<Vec<_>>());
        assert_eq!(idx.len(), 1000);
        assert_eq!(idx.get(b"never written").unwrap(), None);
    }

    #[test]
    fn an_unbounded_index_never_touches_disk() {
        let mut idx = KeyIndex::in_memory();
        for i in 0..100u32 {
            idx.put(
                &i.to_be_bytes(),
                KeyState {
                    now: Liveness::Absent,
                    base_expect: None,
                    base_found: None,
                    lease: 0,
                },
            )
            .unwrap();
        }
        assert!(!idx.spilled());
        assert_eq!(idx.len(), 100);
    }
}
