//! `/config`: etcd's config file rewritten for this pod, as etcdbrctl's `serveConfig`
//! (`pkg/server/httpAPI.go`) does.
//!
//! The input is the cluster-wide file (gardener mounts it at `/var/etcd/config/etcd.conf.yaml`,
//! `$ETCD_CONF` overrides). `initial-advertise-peer-urls` and `advertise-client-urls` are maps
//! member name → URL list there; every pod gets:
//!
//! * `name` = `[member-name-prefix-]$POD_NAME`;
//! * both URL maps replaced by this member's list joined with `,` (a plain string is kept);
//! * `initial-cluster` trimmed, when the running cluster lists more than one member, to the
//!   members it lists plus this one (`getInitialCluster`: etcd refuses to join with a peer list
//!   that differs from the cluster's); kept as it is when etcd cannot be asked (a fresh
//!   bootstrap);
//! * `initial-cluster-state` = `new` for one member; for more, `existing` when the cluster has
//!   a learner (this member, just added by the initialization) and `new` otherwise, also when
//!   etcd cannot be asked (`getClusterState` at etcdbrctl's HEAD; v0.43 asked Kubernetes for
//!   the StatefulSet first, which this tool has no client for).
//!
//! Every other key, unknown ones included, passes through unchanged and in order.

use std::path::{Path, PathBuf};

use serde_norway::{Mapping, Value};

/// Where etcdbrctl reads the config when `$ETCD_CONF` is not set.
pub const DEFAULT_ETCD_CONF: &str = "/var/etcd/config/etcd.conf.yaml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "reading etcd config {path}: {source} (mount the etcd config there, or set $ETCD_CONF / --etcd-conf)"
    )]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parsing etcd config {path} as YAML: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_norway::Error,
    },
    #[error("etcd config {path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error(
        "$POD_NAME is not set: the member name is derived from it (set it from the pod's metadata.name)"
    )]
    NoPodName,
    #[error("writing the rewritten etcd config: {0}")]
    Emit(#[source] serde_norway::Error),
}

/// What the running cluster said, for `/config` (default: nothing, etcd could not be asked).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterView {
    /// The names `MemberList` returned (a learner that never started has an empty one).
    pub members: Option<Vec<String>>,
    pub learner_present: bool,
}

/// This member as the config file describes it (etcdbrctl's `GetMemberName`,
/// `GetMemberPeerURLs`, `GetAllMemberClientURLs`, `GetClusterSize`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberConfig {
    pub name: String,
    pub peer_urls: Vec<String>,
    /// Every member's advertised client URLs: the endpoints when no `--service-endpoints`.
    pub all_client_urls: Vec<String>,
    /// Distinct members in `initial-cluster`.
    pub cluster_size: usize,
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads `path` and rewrites it for the member of pod `pod_name`.
pub fn load_for_pod(
    path: &Path,
    pod_name: Option<&str>,
    cluster: &ClusterView,
) -> Result<String, ConfigError> {
    rewrite(&read(path)?, path, pod_name, cluster)
}

/// Reads this member's name and URLs from the config file.
pub fn load_member(path: &Path, pod_name: Option<&str>) -> Result<MemberConfig, ConfigError> {
    let (map, name) = parse(&read(path)?, path, pod_name)?;
    let invalid = |reason: String| ConfigError::Invalid {
        path: path.to_path_buf(),
        reason,
    };
    let peer_urls = match map.get("initial-advertise-peer-urls") {
        Some(Value::Mapping(m)) => member_urls(m, &name)
            .map_err(|e| invalid(format!("initial-advertise-peer-urls: {e}")))?,
        _ => {
            return Err(invalid(
                "initial-advertise-peer-urls is not a map member name → URL list".into(),
            ));
        }
    };
    let mut all_client_urls = Vec::new();
    if let Some(Value::Mapping(m)) = map.get("advertise-client-urls") {
        for v in m.values() {
            match v {
                Value::Sequence(seq) => {
                    all_client_urls.extend(seq.iter().filter_map(|u| u.as_str().map(String::from)))
                }
                Value::String(u) => all_client_urls.push(u.clone()),
                _ => {}
            }
        }
    }
    let cluster_size = match map.get("initial-cluster") {
        Some(Value::String(s)) => {
            cluster_size(s).map_err(|e| invalid(format!("initial-cluster: {e}")))?
        }
        _ => 1,
    };
    Ok(MemberConfig {
        name,
        peer_urls: peer_urls.split(',').map(String::from).collect(),
        all_client_urls,
        cluster_size,
    })
}

/// The top-level mapping and this member's name.
fn parse(
    text: &str,
    path: &Path,
    pod_name: Option<&str>,
) -> Result<(Mapping, String), ConfigError> {
    let value: Value = serde_norway::from_str(text).map_err(|source| ConfigError::Parse {
        path: path.to_path_buf(),
        source,
    })?;
    let Value::Mapping(map) = value else {
        return Err(ConfigError::Invalid {
            path: path.to_path_buf(),
            reason: "the top level is not a mapping of etcd options".into(),
        });
    };
    let pod = pod_name
        .filter(|p| !p.is_empty())
        .ok_or(ConfigError::NoPodName)?;
    let name = match map.get("member-name-prefix") {
        Some(Value::String(p)) if !p.is_empty() => format!("{p}-{pod}"),
        _ => pod.to_string(),
    };
    Ok((map, name))
}

/// Rewrites config text (`path` only names it in errors).
pub fn rewrite(
    text: &str,
    path: &Path,
    pod_name: Option<&str>,
    cluster: &ClusterView,
) -> Result<String, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid {
        path: path.to_path_buf(),
        reason,
    };
    let (mut map, name) = parse(text, path, pod_name)?;
    for key in ["initial-advertise-peer-urls", "advertise-client-urls"] {
        let joined = match map.get(key) {
            Some(Value::Mapping(m)) => {
                member_urls(m, &name).map_err(|e| invalid(format!("{key}: {e}")))?
            }
            Some(Value::String(_)) | None => continue,
            Some(_) => {
                return Err(invalid(format!(
                    "{key} is neither a map member name → URL list nor a string"
                )));
            }
        };
        map.insert(Value::String(key.into()), Value::String(joined));
    }
    let size = match map.get("initial-cluster") {
        Some(Value::String(s)) => {
            cluster_size(s).map_err(|e| invalid(format!("initial-cluster: {e}")))?;
            let trimmed = trim_initial_cluster(s, &name, cluster);
            let size = cluster_size(&trimmed).map_err(|e| {
                invalid(format!(
                    "initial-cluster trimmed to the running members: {e} (is {name:?} in it?)"
                ))
            })?;
            map.insert(
                Value::String("initial-cluster".into()),
                Value::String(trimmed),
            );
            size
        }
        None => 1,
        Some(_) => return Err(invalid("initial-cluster is not a string".into())),
    };
    let state = if size > 1 && cluster.learner_present {
        "existing"
    } else {
        "new"
    };
    tracing::debug!(member = %name, cluster_size = size, state, "serving etcd config");
    map.insert(Value::String("name".into()), Value::String(name));
    map.insert(
        Value::String("initial-cluster-state".into()),
        Value::String(state.into()),
    );
    serde_norway::to_string(&Value::Mapping(map)).map_err(ConfigError::Emit)
}

fn member_urls(m: &Mapping, name: &str) -> Result<String, String> {
    let urls: Vec<String> = match m.get(name) {
        Some(Value::Sequence(seq)) => seq
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                other => Err(format!("URL {other:?} of {name:?} is not a string")),
            })
            .collect::<Result<_, _>>()?,
        Some(Value::String(s)) => vec![s.clone()],
        Some(_) => return Err(format!("the entry of {name:?} is not a URL list")),
        None => Vec::new(),
    };
    if urls.is_empty() {
        let known: Vec<String> = m
            .keys()
            .filter_map(|k| k.as_str().map(str::to_string))
            .collect();
        return Err(format!(
            "no URLs for member {name:?} (members listed: {}); check $POD_NAME and member-name-prefix",
            known.join(", ")
        ));
    }
    for u in &urls {
        if !u.contains("://") {
            return Err(format!("{u:?} of {name:?} is not a URL"));
        }
    }
    Ok(urls.join(","))
}

/// etcdbrctl's `getInitialCluster`: with more than one running member, keep the entries of
/// members the cluster lists, and this one's.
fn trim_initial_cluster(initial: &str, name: &str, cluster: &ClusterView) -> String {
    let Some(members) = cluster.members.as_ref().filter(|m| m.len() > 1) else {
        return initial.to_string();
    };
    initial
        .split(',')
        .filter(|entry| {
            let n = entry.split('=').next().unwrap_or_default();
            n == name || members.iter().any(|m| m == n)
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Distinct member names in `name=url,...` (etcd's `NewURLsMap`).
fn cluster_size(s: &str) -> Result<usize, String> {
    let mut names = std::collections::BTreeSet::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (n, u) = part
            .split_once('=')
            .ok_or_else(|| format!("{part:?} is not name=URL"))?;
        if !u.contains("://") {
            return Err(format!("{u:?} is not a URL"));
        }
        names.insert(n);
    }
    if names.is_empty() {
        return Err("empty".into());
    }
    Ok(names.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    const INPUT: &str = "\
name: etcd-main
data-dir: /var/etcd/data/new.etcd
member-name-prefix: ''
initial-advertise-peer-urls:
  etcd-main-0:
  - https://etcd-main-0.etcd-main-peer:2380
  etcd-main-1:
  - https://etcd-main-1.etcd-main-peer:2380
  - https://alt:2380
advertise-client-urls:
  etcd-main-1:
  - https://etcd-main-1.etcd-main-peer:2379
initial-cluster: etcd-main-0=https://etcd-main-0.etcd-main-peer:2380,etcd-main-1=https://etcd-main-1.etcd-main-peer:2380
initial-cluster-state: existing
some-future-key: {nested: [1, 2]}
";

    #[test]
    fn rewrites_for_the_pod_and_keeps_unknown_keys_in_order() {
        let out = rewrite(
            INPUT,
            Path::new("x"),
            Some("etcd-main-1"),
            &ClusterView::default(),
        )
        .unwrap();
        let v: Value = serde_norway::from_str(&out).unwrap();
        assert_eq!(v["name"].as_str(), Some("etcd-main-1"));
        assert_eq!(
            v["initial-advertise-peer-urls"].as_str(),
            Some("https://etcd-main-1.etcd-main-peer:2380,https://alt:2380")
        );
        assert_eq!(
            v["advertise-client-urls"].as_str(),
            Some("https://etcd-main-1.etcd-main-peer:2379")
        );
        assert_eq!(v["initial-cluster-state"].as_str(), Some("new"));
        assert_eq!(v["some-future-key"]["nested"][1].as_u64(), Some(2));
        let keys: Vec<_> = v
            .as_mapping()
            .unwrap()
            .keys()
            .map(|k| k.as_str().unwrap().to_string())
            .collect();
        assert_eq!(keys.first().map(String::as_str), Some("name"));
        assert_eq!(keys.last().map(String::as_str), Some("some-future-key"));
    }

    #[test]
    fn prefix_and_clear_errors() {
        let with_prefix = INPUT.replace("member-name-prefix: ''", "member-name-prefix: etcd-main");
        let e = rewrite(
            &with_prefix,
            Path::new("x"),
            Some("1"),
            &ClusterView::default(),
        )
        .unwrap();
        assert!(e.contains("name: etcd-main-1"), "{e}");
        let err = rewrite(
            INPUT,
            Path::new("x"),
            Some("etcd-main-0"),
            &ClusterView::default(),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("no URLs for member \"etcd-main-0\""),
            "{err}"
        );
        assert!(matches!(
            rewrite(INPUT, Path::new("x"), None, &ClusterView::default()),
            Err(ConfigError::NoPodName)
        ));
        assert!(matches!(
            rewrite("a: [", Path::new("x"), Some("p"), &ClusterView::default()),
            Err(ConfigError::Parse { .. })
        ));
        assert!(matches!(
            load_for_pod(
                Path::new("/nonexistent/etcd.conf.yaml"),
                Some("p"),
                &ClusterView::default()
            ),
            Err(ConfigError::Read { .. })
        ));
    }

    #[test]
    fn running_cluster_trims_initial_cluster_and_says_existing_with_a_learner() {
        let three = INPUT.replace(
            "initial-cluster: etcd-main-0=",
            "initial-cluster: etcd-main-2=https://etcd-main-2.etcd-main-peer:2380,etcd-main-0=",
        );
        let field = |view: &ClusterView, key: &str| {
            let out = rewrite(&three, Path::new("x"), Some("etcd-main-1"), view).unwrap();
            let v: Value = serde_norway::from_str(&out).unwrap();
            v[key].as_str().unwrap().to_string()
        };
        // etcd-main-1 was removed and re-added: the list holds the others and a nameless learner.
        let rejoin = ClusterView {
            members: Some(vec![
                "etcd-main-0".into(),
                "etcd-main-2".into(),
                String::new(),
            ]),
            learner_present: true,
        };
        assert_eq!(field(&rejoin, "initial-cluster-state"), "existing");
        assert_eq!(field(&rejoin, "initial-cluster").matches('=').count(), 3);
        // Scale-up from one member: etcd-main-2 is not running yet and is dropped.
        let scale_up = ClusterView {
            members: Some(vec!["etcd-main-0".into(), String::new()]),
            learner_present: true,
        };
        assert_eq!(
            field(&scale_up, "initial-cluster"),
            "etcd-main-0=https://etcd-main-0.etcd-main-peer:2380,etcd-main-1=https://etcd-main-1.etcd-main-peer:2380"
        );
        assert_eq!(field(&scale_up, "initial-cluster-state"), "existing");
        // A bootstrapping cluster (nobody answers), or one without a learner: `new`, untrimmed.
        for view in [
            ClusterView::default(),
            ClusterView {
                members: Some(vec!["etcd-main-0".into(), "etcd-main-1".into()]),
                learner_present: false,
            },
        ] {
            assert_eq!(field(&view, "initial-cluster-state"), "new");
        }
        assert_eq!(
            field(&ClusterView::default(), "initial-cluster")
                .matches('=')
                .count(),
            3
        );
    }

    #[test]
    fn member_config_reads_name_peer_urls_and_every_client_url() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("etcd.conf.yaml");
        std::fs::write(&p, INPUT).unwrap();
        let m = load_member(&p, Some("etcd-main-1")).unwrap();
        assert_eq!(m.name, "etcd-main-1");
        assert_eq!(
            m.peer_urls,
            [
                "https://etcd-main-1.etcd-main-peer:2380",
                "https://alt:2380"
            ]
        );
        assert_eq!(
            m.all_client_urls,
            ["https://etcd-main-1.etcd-main-peer:2379"]
        );
        assert_eq!(m.cluster_size, 2);
        let e = load_member(&p, Some("nobody")).unwrap_err().to_string();
        assert!(e.contains("no URLs for member \"nobody\""), "{e}");
    }
}
