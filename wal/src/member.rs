//! Member and cluster IDs as etcd computes them, the membership JSON, and the WAL +
//! `.snap` a freshly restored member starts from (what `etcdutl snapshot restore` 3.5 /
//! `etcdctl snapshot restore` 3.4 write). See docs/wal.md §Fresh member.

use std::path::{Path, PathBuf};

use prost::Message;
use sha1::{Digest, Sha1};

use crate::encoder::{Encoder, WalWriter, WriterOptions};
use crate::error::WalError;
use crate::gojson::{quote_into, string_array};
use crate::proto::{
    ConfChange, ConfChangeType, ConfState, Entry, EntryType, HardState, Metadata, Snapshot,
    SnapshotMetadata, WalSnapshot,
};
use crate::record::RecordType;
use crate::snap::write_snap;
use crate::storage::Fs;
use crate::v2store::restore_store_json;

/// A cluster member as `membership.Member`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub id: u64,
    pub name: String,
    /// Sorted as strings (etcd's `types.NewURLs` sorts).
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    pub is_learner: bool,
}

/// etcd's `computeMemberId` without the time component (used by bootstrap and restore):
/// first 8 bytes (big-endian) of SHA-1(sorted peer URLs concatenated ‖ cluster token).
pub fn member_id(peer_urls: &[String], token: &str) -> u64 {
    let mut urls: Vec<&str> = peer_urls.iter().map(String::as_str).collect();
    urls.sort_unstable();
    let mut h = Sha1::new();
    for u in urls {
        h.update(u.as_bytes());
    }
    h.update(token.as_bytes());
    first_u64(&h.finalize())
}

/// etcd's `RaftCluster.genID`: first 8 bytes of SHA-1 over the member IDs (sorted
/// ascending, 8 bytes big-endian each).
pub fn cluster_id(member_ids: &[u64]) -> u64 {
    let mut ids = member_ids.to_vec();
    ids.sort_unstable();
    let mut h = Sha1::new();
    for id in ids {
        h.update(id.to_be_bytes());
    }
    first_u64(&h.finalize())
}

fn first_u64(digest: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    for (d, s) in b.iter_mut().zip(digest) {
        *d = *s;
    }
    u64::from_be_bytes(b)
}

impl Member {
    /// A member with the ID etcd derives from its peer URLs and the cluster token.
    pub fn new(name: &str, peer_urls: &[String], token: &str) -> Member {
        let mut urls = peer_urls.to_vec();
        urls.sort();
        Member {
            id: member_id(&urls, token),
            name: name.to_string(),
            peer_urls: urls,
            client_urls: Vec::new(),
            is_learner: false,
        }
    }

    /// `json.Marshal(membership.Member)`: the ConfChange context and the value in the
    /// db's `members` bucket.
    pub fn to_json(&self) -> String {
        let mut s = format!(
            "{{\"id\":{},\"peerURLs\":{}",
            self.id,
            string_array(&self.peer_urls)
        );
        if self.is_learner {
            s.push_str(",\"isLearner\":true");
        }
        if !self.name.is_empty() {
            s.push_str(",\"name\":");
            quote_into(&mut s, &self.name);
        }
        if !self.client_urls.is_empty() {
            s.push_str(",\"clientURLs\":");
            s.push_str(&string_array(&self.client_urls));
        }
        s.push('}');
        s
    }

    /// `json.Marshal(membership.RaftAttributes)` (v2 store `raftAttributes`).
    pub fn raft_attributes_json(&self) -> String {
        let mut s = format!("{{\"peerURLs\":{}", string_array(&self.peer_urls));
        if self.is_learner {
            s.push_str(",\"isLearner\":true");
        }
        s.push('}');
        s
    }

    /// `json.Marshal(membership.Attributes)` (v2 store `attributes`).
    pub fn attributes_json(&self) -> String {
        let mut s = String::from("{");
        if !self.name.is_empty() {
            s.push_str("\"name\":");
            quote_into(&mut s, &self.name);
        }
        if !self.client_urls.is_empty() {
            if s.len() > 1 {
                s.push(',');
            }
            s.push_str("\"clientURLs\":");
            s.push_str(&string_array(&self.client_urls));
        }
        s.push('}');
        s
    }
}

/// Normalises one peer URL as etcd's `types.NewURLs` + `url.URL.String()` do for the
/// URLs etcd accepts: whitespace trimmed, scheme lower-cased and one of http, https,
/// unix, unixs, a `host:port` authority, no path. Queries, fragments and user info are
/// refused (Go would re-encode them; restore never needs them).
pub fn normalize_peer_url(raw: &str) -> Result<String, WalError> {
    let bad = |why: &str| WalError::Membership(format!("peer URL {raw:?}: {why}"));
    let s = raw.trim();
    let (scheme, rest) = s.split_once("://").ok_or_else(|| bad("no scheme"))?;
    let scheme = scheme.to_ascii_lowercase();
    if !matches!(scheme.as_str(), "http" | "https" | "unix" | "unixs") {
        return Err(bad("scheme must be http, https, unix or unixs"));
    }
    if rest.contains(['/', '?', '#', '@']) {
        return Err(bad(
            "must be scheme://host:port without path, query or user",
        ));
    }
    let port_sep = if rest.starts_with('[') {
        rest.find("]:").map(|i| i + 1)
    } else {
        rest.rfind(':')
    };
    let Some(i) = port_sep else {
        return Err(bad("address does not have the form host:port"));
    };
    let (host, _port) = (rest.get(..i).unwrap_or_default(), rest.get(i + 1..));
    if !host.starts_with('[') && host.contains(':') {
        return Err(bad("too many colons in address"));
    }
    Ok(format!("{scheme}://{rest}"))
}

/// A new cluster's membership: members sorted by ID, and the cluster ID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cluster {
    pub members: Vec<Member>,
    pub id: u64,
}

impl Cluster {
    /// From members (IDs already computed). Rejects an empty list, ID 0 and duplicate IDs.
    pub fn new(mut members: Vec<Member>) -> Result<Cluster, WalError> {
        if members.is_empty() {
            return Err(WalError::Membership("no members".into()));
        }
        members.sort_by_key(|m| m.id);
        for w in members.windows(2) {
            if let [a, b] = w
                && a.id == b.id
            {
                return Err(WalError::Membership(format!(
                    "members {:?} and {:?} have the same ID {:x}",
                    a.name, b.name, a.id
                )));
            }
        }
        if members.iter().any(|m| m.id == 0) {
            return Err(WalError::Membership("member ID 0 is not allowed".into()));
        }
        let ids: Vec<u64> = members.iter().map(|m| m.id).collect();
        Ok(Cluster {
            id: cluster_id(&ids),
            members,
        })
    }

    /// From `--initial-cluster` (`name=url,name=url,...`, a name may repeat) and
    /// `--initial-cluster-token`, as etcd's `NewClusterFromURLsMap`.
    pub fn from_initial_cluster(initial_cluster: &str, token: &str) -> Result<Cluster, WalError> {
        let mut by_name: Vec<(String, Vec<String>)> = Vec::new();
        for item in initial_cluster.split(',') {
            if item.is_empty() {
                continue;
            }
            let (name, url) = item.split_once('=').unwrap_or((item, ""));
            let url = normalize_peer_url(url)?;
            match by_name.iter_mut().find(|(n, _)| n == name) {
                Some((_, urls)) => urls.push(url),
                None => by_name.push((name.to_string(), vec![url])),
            }
        }
        let mut seen: Vec<&String> = Vec::new();
        for (_, urls) in &by_name {
            for u in urls {
                if seen.contains(&u) {
                    return Err(WalError::Membership(format!("duplicate peer URL {u}")));
                }
                seen.push(u);
            }
        }
        let members = by_name
            .iter()
            .map(|(name, urls)| Member::new(name, urls, token))
            .collect();
        Cluster::new(members)
    }

    pub fn member_by_name(&self, name: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.name == name)
    }

    pub fn member_ids(&self) -> Vec<u64> {
        self.members.iter().map(|m| m.id).collect()
    }

    /// ConfState of the new cluster: all members are voters.
    pub fn conf_state(&self) -> ConfState {
        ConfState {
            voters: self.member_ids(),
            ..ConfState::default()
        }
    }
}

/// Which etcd's restore output to reproduce.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RestoreFlavor {
    /// `etcdctl snapshot restore` 3.4: the final WAL snapshot record has no conf_state.
    V3_4,
    /// `etcdutl snapshot restore` 3.5 (and 3.6 for one member).
    #[default]
    V3_5,
}

/// Everything a fresh member's WAL and `.snap` carry, derived from the cluster.
#[derive(Clone, Debug)]
pub struct FreshMember {
    pub metadata: Metadata,
    pub entries: Vec<Entry>,
    pub hard_state: HardState,
    pub wal_snapshot: WalSnapshot,
    pub snapshot: Snapshot,
}

impl FreshMember {
    /// The restore content for the member named `local_name`.
    pub fn new(
        cluster: &Cluster,
        local_name: &str,
        flavor: RestoreFlavor,
    ) -> Result<FreshMember, WalError> {
        let local = cluster.member_by_name(local_name).ok_or_else(|| {
            WalError::Membership(format!("member {local_name:?} is not in the cluster"))
        })?;
        let entries: Vec<Entry> = cluster
            .members
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let cc = ConfChange {
                    id: 0,
                    r#type: ConfChangeType::ConfChangeAddNode as i32,
                    node_id: m.id,
                    context: Some(m.to_json().into_bytes()),
                };
                Entry {
                    r#type: EntryType::EntryConfChange as i32,
                    term: 1,
                    index: i as u64 + 1,
                    data: Some(cc.encode_to_vec()),
                }
            })
            .collect();
        let n = entries.len() as u64;
        let conf_state = cluster.conf_state();
        let hard_state = HardState {
            term: 1,
            vote: cluster.members.first().map(|m| m.id).unwrap_or_default(),
            commit: n,
        };
        let wal_snapshot = WalSnapshot {
            index: n,
            term: 1,
            conf_state: match flavor {
                RestoreFlavor::V3_4 => None,
                RestoreFlavor::V3_5 => Some(conf_state.clone()),
            },
        };
        let snapshot = Snapshot {
            data: Some(restore_store_json(&cluster.members).into_bytes()),
            metadata: SnapshotMetadata {
                conf_state,
                index: n,
                term: 1,
            },
        };
        Ok(FreshMember {
            metadata: Metadata {
                node_id: local.id,
                cluster_id: cluster.id,
            },
            entries,
            hard_state,
            wal_snapshot,
            snapshot,
        })
    }

    /// The used part of the WAL segment (before preallocated zeros), in write order.
    pub fn wal_bytes(&self) -> Vec<u8> {
        let mut enc = Encoder::new(0);
        enc.append(RecordType::Crc, None);
        enc.append(RecordType::Metadata, Some(&self.metadata.encode_to_vec()));
        enc.append_snapshot(&WalSnapshot::default());
        for e in &self.entries {
            enc.append_entry(e);
        }
        enc.append_state(&self.hard_state);
        enc.append_snapshot(&self.wal_snapshot);
        enc.take()
    }

    /// Writes `<wal_dir>/0000000000000000-0000000000000000.wal` (through
    /// `<wal_dir>.tmp`, preallocated to 64,000,000 bytes unless `opts` says otherwise)
    /// and `<snap_dir>/<term>-<index>.snap` in etcd's order, with fsyncs of files and
    /// directories. Returns the `.snap` path.
    pub fn write(
        &self,
        fs: &dyn Fs,
        wal_dir: &Path,
        snap_dir: &Path,
        opts: WriterOptions,
    ) -> Result<PathBuf, WalError> {
        fs.create_dir_all(snap_dir, crate::encoder::DIR_MODE)
            .map_err(|e| WalError::io(snap_dir, e))?;
        if let Some(parent) = snap_dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs.sync_dir(parent).map_err(|e| WalError::io(parent, e))?;
        }
        let mut w = WalWriter::create(fs, wal_dir, &self.metadata.encode_to_vec(), opts)?;
        w.save(&self.hard_state, &self.entries)?;
        let snap_path = write_snap(fs, snap_dir, &self.snapshot)?;
        w.save_snapshot(&self.wal_snapshot)?;
        w.close()?;
        Ok(snap_path)
    }
}
