//! The generator's record of a backup (`testdata/backups/etcd-<v>/<scenario>/oracle.json`,
//! format in docs/testing.md) and the comparison of a running etcd with it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::deps::testdata_dir;
use crate::error::{Error, Result};
use crate::etcd::{EtcdProcess, Member};
use crate::kv::KeyValue;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Oracle {
    pub format: u32,
    pub etcd_version: String,
    pub scenario: String,
    pub seed: u64,
    /// "v2" or "v1".
    pub layout: String,
    /// Revision of the source etcd that the backup (latest full + its deltas) ends at.
    pub final_revision: i64,
    /// The source's compaction revision when it was last backed up (0 = never compacted).
    pub compact_revision: i64,
    pub cluster: Cluster,
    pub members: Vec<Member>,
    pub hashkv: Vec<HashKvRecord>,
    pub dumps: Vec<Dump>,
    pub objects: Vec<ObjectRecord>,
    pub leases: Leases,
    pub auth: Auth,
    /// What the scenario exercises (free text).
    #[serde(default)]
    pub notes: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cluster {
    pub name: String,
    pub initial_cluster_token: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
}

/// `endpoint hashkv --rev revision` of the source, and its compaction revision at that time.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct HashKvRecord {
    pub revision: i64,
    pub hash: u32,
    pub compact_revision: i64,
}

/// Every key at `revision` (sorted by key), as `get "" --prefix --rev revision` returned it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Dump {
    pub revision: i64,
    pub kvs: Vec<KeyValue>,
}

/// One object of the store, path relative to the `store/` directory (the `--store` root).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ObjectRecord {
    pub path: String,
    /// "Full" or "Incr".
    pub kind: String,
    pub start_revision: i64,
    pub last_revision: i64,
    pub created_on: i64,
    /// "none", "gzip", "zlib" or "lzw".
    pub compression: String,
    #[serde(rename = "final")]
    pub is_final: bool,
    /// Fulls: the revision inside the db (may exceed `last_revision`).
    #[serde(default)]
    pub db_revision: Option<i64>,
    /// Deltas: number of events.
    #[serde(default)]
    pub events: Option<u64>,
    /// Size of the object as stored.
    pub size: u64,
    /// SHA-256 (hex) of the uncompressed body without its 32-byte trailer.
    pub body_sha256: String,
}

impl ObjectRecord {
    pub fn is_full(&self) -> bool {
        self.kind == "Full"
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Leases {
    /// Still alive when the generator finished.
    pub alive: Vec<LeaseRecord>,
    /// Expired in the source; `ended_revision` is the revision of the key deletions it caused
    /// (it may be after `final_revision`: the backup then still holds the keys).
    pub expired: Vec<LeaseRecord>,
    pub revoked: Vec<LeaseRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeaseRecord {
    pub id: i64,
    pub ttl: i64,
    /// The store's revision when the lease was granted (a full whose db revision is below it
    /// does not hold the lease).
    #[serde(default)]
    pub granted_revision: i64,
    /// Revision at which it expired or was revoked (0 if still alive at the end).
    #[serde(default)]
    pub ended_revision: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Auth {
    pub users: Vec<User>,
    pub roles: Vec<Role>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub roles: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Role {
    pub name: String,
    pub perms: Vec<Perm>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Perm {
    /// "READ", "WRITE" or "READWRITE".
    pub perm_type: String,
    #[serde(with = "crate::kv::b64")]
    pub key: Vec<u8>,
    #[serde(with = "crate::kv::b64", default)]
    pub range_end: Vec<u8>,
}

/// One committed backup fixture: `testdata/backups/etcd-<version>/<scenario>/`.
#[derive(Debug, Clone)]
pub struct Fixture {
    pub version: String,
    pub scenario: String,
    pub dir: PathBuf,
    pub oracle: Oracle,
}

impl Fixture {
    pub fn load(version: &str, scenario: &str) -> Result<Fixture> {
        let dir = testdata_dir()
            .join("backups")
            .join(format!("etcd-{version}"))
            .join(scenario);
        let oracle = Oracle::load(&dir.join("oracle.json"))?;
        Ok(Fixture {
            version: version.to_string(),
            scenario: scenario.to_string(),
            dir,
            oracle,
        })
    }

    /// All scenarios committed for `version` (directory names, sorted).
    pub fn scenarios(version: &str) -> Vec<String> {
        let dir = testdata_dir()
            .join("backups")
            .join(format!("etcd-{version}"));
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .filter_map(|e| {
                let e = e.ok()?;
                e.path()
                    .join("oracle.json")
                    .exists()
                    .then(|| e.file_name().to_string_lossy().into_owned())
            })
            .collect();
        v.sort();
        v
    }

    /// The `--store` root (holds `v2/` and/or `v1/`).
    pub fn store(&self) -> PathBuf {
        self.dir.join("store")
    }

    pub fn object_path(&self, o: &ObjectRecord) -> PathBuf {
        self.store().join(&o.path)
    }
}

impl Oracle {
    pub fn load(path: &Path) -> Result<Oracle> {
        let text = std::fs::read(path).map_err(|e| Error::io("read oracle", path, e))?;
        serde_json::from_slice(&text)
            .map_err(|e| Error::parse(format!("oracle {}", path.display()), e))
    }

    pub fn dump_at(&self, revision: i64) -> Option<&Dump> {
        self.dumps.iter().find(|d| d.revision == revision)
    }

    /// The full snapshot a restore starts from: the last `Full` in etcd-backup-restore's order
    /// (last revision, then creation time).
    pub fn latest_full(&self) -> Option<&ObjectRecord> {
        self.objects
            .iter()
            .filter(|o| o.is_full())
            .max_by_key(|o| (o.last_revision, o.created_on))
    }

    /// Compares a running etcd with the oracle, expecting it at `revision`:
    /// * its current revision is `revision` and its keys equal the dump at `revision`;
    /// * every dump at a revision in [etcd's compaction revision, `revision`) matches a
    ///   historical read;
    /// * every hashkv record in that range, recorded with the same compaction revision as the
    ///   etcd has, matches `endpoint hashkv --rev`.
    ///
    /// Returns the differences (empty = equal). Errors only when etcd cannot be queried or the
    /// oracle has no dump at `revision`.
    pub fn compare(&self, etcd: &EtcdProcess, revision: i64) -> Result<Vec<String>> {
        let mut diffs = Vec::new();
        let want = self.dump_at(revision).ok_or_else(|| {
            Error::parse(
                "oracle",
                format!(
                    "no dump at revision {revision} (have {:?})",
                    self.dumps.iter().map(|d| d.revision).collect::<Vec<_>>()
                ),
            )
        })?;
        let now = etcd.get_all(None)?;
        if now.revision != revision {
            diffs.push(format!(
                "current revision: expected {revision}, got {}",
                now.revision
            ));
        }
        diff_kvs(
            &format!("keys at {revision}"),
            &want.kvs,
            &now.kvs,
            &mut diffs,
        );

        let compact = etcd.hashkv(None)?.compact_revision;
        for d in &self.dumps {
            if d.revision >= compact.max(1) && d.revision < revision {
                let got = etcd.get_all(Some(d.revision))?;
                diff_kvs(
                    &format!("keys at historical revision {}", d.revision),
                    &d.kvs,
                    &got.kvs,
                    &mut diffs,
                );
            }
        }
        for h in &self.hashkv {
            if h.revision >= compact && h.revision <= revision && h.compact_revision == compact {
                let got = etcd.hashkv(Some(h.revision))?;
                if got.hash != h.hash {
                    diffs.push(format!(
                        "hashkv at {} (compact {}): expected {}, got {}",
                        h.revision, compact, h.hash, got.hash
                    ));
                }
            }
        }
        Ok(diffs)
    }

    /// [`Oracle::compare`] that panics with every difference and the etcd log tail.
    pub fn assert_matches(&self, etcd: &EtcdProcess, revision: i64) {
        match self.compare(etcd, revision) {
            Ok(d) if d.is_empty() => {}
            Ok(d) => panic!(
                "etcd {} ({}/{}) differs from the oracle at revision {revision}:\n  {}",
                etcd.bins().version,
                self.etcd_version,
                self.scenario,
                d.join("\n  ")
            ),
            Err(e) => panic!(
                "comparing etcd {} with the oracle failed: {e}\netcd log tail:\n{}",
                etcd.bins().version,
                etcd.log_tail(4096)
            ),
        }
    }
}

/// Appends to `diffs` how `got` differs from `want` (both sorted by key).
pub fn diff_kvs(what: &str, want: &[KeyValue], got: &[KeyValue], diffs: &mut Vec<String>) {
    const MAX: usize = 20;
    let before = diffs.len();
    let (mut i, mut j) = (0, 0);
    while i < want.len() || j < got.len() {
        if diffs.len() - before >= MAX {
            diffs.push(format!("{what}: more differences omitted"));
            return;
        }
        match (want.get(i), got.get(j)) {
            (Some(w), Some(g)) if w.key == g.key => {
                if let Some(d) = w.diff(g) {
                    diffs.push(format!("{what}: {d}"));
                }
                i += 1;
                j += 1;
            }
            (Some(w), Some(g)) if w.key < g.key => {
                diffs.push(format!(
                    "{what}: missing key {}",
                    crate::kv::show_bytes(&w.key)
                ));
                let _ = g;
                i += 1;
            }
            (Some(_), Some(g)) | (None, Some(g)) => {
                diffs.push(format!(
                    "{what}: unexpected key {}",
                    crate::kv::show_bytes(&g.key)
                ));
                j += 1;
            }
            (Some(w), None) => {
                diffs.push(format!(
                    "{what}: missing key {}",
                    crate::kv::show_bytes(&w.key)
                ));
                i += 1;
            }
            (None, None) => break,
        }
    }
}
