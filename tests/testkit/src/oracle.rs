//! The generator's record of a backup (`testdata/backups/etcd-<v>/<scenario>/oracle.json`,
//! format in docs/testing.md) and the comparison of a running etcd with it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::deps::testdata_dir;
use crate::error::{Error, Result};
use crate::etcd::{EtcdProcess, Member};
use crate::gooracle::GoOracle;
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

    /// The README quick-start sample (`testdata/sample`).
    pub fn sample() -> Result<Fixture> {
        let dir = testdata_dir().join("sample");
        let oracle = Oracle::load(&dir.join("oracle.json"))?;
        Ok(Fixture {
            version: oracle.etcd_version.clone(),
            scenario: "sample".into(),
            dir,
            oracle,
        })
    }

    /// Every committed fixture: each version's scenarios, then the sample.
    pub fn all() -> Result<Vec<Fixture>> {
        let mut out = Vec::new();
        for v in crate::ETCD_VERSIONS {
            for s in Fixture::scenarios(v) {
                out.push(Fixture::load(v, &s)?);
            }
        }
        out.push(Fixture::sample()?);
        Ok(out)
    }

    /// The body of object `o` as stored, its size checked against the oracle and decompressed
    /// with Go's compress/* (the code etcd-backup-restore compresses with); the SHA-256
    /// trailer is still on it.
    pub fn object_body(&self, go: &GoOracle, o: &ObjectRecord) -> Result<Vec<u8>> {
        let path = self.object_path(o);
        let raw = std::fs::read(&path).map_err(|e| Error::io("read fixture object", &path, e))?;
        if raw.len() as u64 != o.size {
            return Err(Error::parse(
                format!("fixture object {}", path.display()),
                format!("{} bytes, the oracle says {}", raw.len(), o.size),
            ));
        }
        match o.compression.as_str() {
            "none" => Ok(raw),
            kind => go.decompress(kind, &raw),
        }
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
    /// Returns the differences and how much was compared: a hashkv record recorded under
    /// another compaction revision cannot be compared, so an etcd with the wrong compaction
    /// revision would otherwise compare nothing and look equal ([`Oracle::assert_matches`]
    /// checks the counts). Errors only when etcd cannot be queried or the oracle has no dump
    /// at `revision`.
    pub fn compare(&self, etcd: &EtcdProcess, revision: i64) -> Result<Comparison> {
        let mut c = Comparison::default();
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
            c.diffs.push(format!(
                "current revision: expected {revision}, got {}",
                now.revision
            ));
        }
        diff_kvs(
            &format!("keys at {revision}"),
            &want.kvs,
            &now.kvs,
            &mut c.diffs,
        );

        let compact = etcd.hashkv(None)?.compact_revision;
        c.compact_revision = compact;
        for d in &self.dumps {
            if d.revision >= compact.max(1) && d.revision < revision {
                let got = etcd.get_all(Some(d.revision))?;
                diff_kvs(
                    &format!("keys at historical revision {}", d.revision),
                    &d.kvs,
                    &got.kvs,
                    &mut c.diffs,
                );
                c.dumps_compared += 1;
            }
        }
        for h in &self.hashkv {
            if h.revision >= compact && h.revision <= revision && h.compact_revision == compact {
                let got = etcd.hashkv(Some(h.revision))?;
                if got.hash != h.hash {
                    c.diffs.push(format!(
                        "hashkv at {} (compact {}): expected {}, got {}",
                        h.revision, compact, h.hash, got.hash
                    ));
                }
                c.hashkv_compared += 1;
                c.hashkv_at_revision |= h.revision == revision;
            }
        }
        Ok(c)
    }

    /// [`Oracle::compare`] that panics with every difference and the etcd log tail, and also
    /// when the hashkv the source recorded at `revision` could not be compared (etcd's
    /// compaction revision is not the source's) or, without such a record, when no hashkv
    /// was compared at all.
    pub fn assert_matches(&self, etcd: &EtcdProcess, revision: i64) {
        let c = self.checked_compare(etcd, revision);
        let at_revision = self.hashkv.iter().find(|h| h.revision == revision);
        match at_revision {
            Some(h) => assert!(
                c.hashkv_at_revision,
                "etcd {} ({}/{}): the source's hashkv at revision {revision} was recorded at \
                 compaction revision {}, etcd reports {}: not compared",
                etcd.bins().version,
                self.etcd_version,
                self.scenario,
                h.compact_revision,
                c.compact_revision
            ),
            None => assert!(
                c.hashkv_compared > 0,
                "etcd {} ({}/{}): no hashkv record comparable at compaction revision {} up to \
                 {revision}",
                etcd.bins().version,
                self.etcd_version,
                self.scenario,
                c.compact_revision
            ),
        }
    }

    /// For data compacted at `revision` by us (`compact`): etcd's compaction revision is
    /// `revision` and its keys equal the dump there. The source never ran with that compaction
    /// revision, so no hashkv record and no historical dump applies; the count proves it.
    pub fn assert_matches_compacted(&self, etcd: &EtcdProcess, revision: i64) {
        let c = self.checked_compare(etcd, revision);
        assert_eq!(
            c.compact_revision,
            revision,
            "etcd {} ({}/{}): compaction revision",
            etcd.bins().version,
            self.etcd_version,
            self.scenario
        );
        assert_eq!((c.dumps_compared, c.hashkv_compared), (0, 0));
    }

    fn checked_compare(&self, etcd: &EtcdProcess, revision: i64) -> Comparison {
        match self.compare(etcd, revision) {
            Ok(c) if c.diffs.is_empty() => c,
            Ok(c) => panic!(
                "etcd {} ({}/{}) differs from the oracle at revision {revision}:\n  {}",
                etcd.bins().version,
                self.etcd_version,
                self.scenario,
                c.diffs.join("\n  ")
            ),
            Err(e) => panic!(
                "comparing etcd {} with the oracle failed: {e}\netcd log tail:\n{}",
                etcd.bins().version,
                etcd.log_tail(4096)
            ),
        }
    }
}

/// What [`Oracle::compare`] found and how much it compared.
#[derive(Debug, Default, Clone)]
pub struct Comparison {
    /// Differences (empty = equal).
    pub diffs: Vec<String>,
    /// etcd's compaction revision (-1: never compacted).
    pub compact_revision: i64,
    /// Historical dumps compared (the dump at the expected revision not counted).
    pub dumps_compared: usize,
    /// Hashkv records compared with `endpoint hashkv --rev`.
    pub hashkv_compared: usize,
    /// Whether the record at the expected revision was one of them.
    pub hashkv_at_revision: bool,
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
