//! Member and cluster IDs as etcd computes them, peer URL normalisation and the membership
//! JSON. What a freshly restored member's WAL and `.snap` hold: [`crate::fresh_member`].

use sha1::{Digest, Sha1};

use crate::error::WalError;
use crate::gojson::{quote_into, string_array};
use crate::proto::ConfState;

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
