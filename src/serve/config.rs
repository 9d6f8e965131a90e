//! `/config`: etcd's config file rewritten for this pod, as etcdbrctl's `serveConfig` does.
//!
//! The input is the cluster-wide file (gardener mounts it at `/var/etcd/config/etcd.conf.yaml`,
//! `$ETCD_CONF` overrides). `initial-advertise-peer-urls` and `advertise-client-urls` are maps
//! member name → URL list there; every pod gets:
//!
//! * `name` = `[member-name-prefix-]$POD_NAME`;
//! * both URL maps replaced by this member's list joined with `,` (a plain string is kept);
//! * `initial-cluster` unchanged (etcdbrctl trims it to the running members only when it can
//!   reach a running multi-member cluster; this server has no etcd client, which is what
//!   etcdbrctl sees on a fresh bootstrap);
//! * `initial-cluster-state` = `new` (etcdbrctl says `existing` only when it finds a learner
//!   in a running cluster, and falls back to `new` when it cannot ask).
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

/// Reads `path` and rewrites it for the member of pod `pod_name`.
pub fn load_for_pod(path: &Path, pod_name: Option<&str>) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    rewrite(&text, path, pod_name)
}

/// Rewrites config text (`path` only names it in errors).
pub fn rewrite(text: &str, path: &Path, pod_name: Option<&str>) -> Result<String, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid {
        path: path.to_path_buf(),
        reason,
    };
    let value: Value = serde_norway::from_str(text).map_err(|source| ConfigError::Parse {
        path: path.to_path_buf(),
        source,
    })?;
    let Value::Mapping(mut map) = value else {
        return Err(invalid(
            "the top level is not a mapping of etcd options".into(),
        ));
    };
    let pod = pod_name
        .filter(|p| !p.is_empty())
        .ok_or(ConfigError::NoPodName)?;
    let name = match map.get("member-name-prefix") {
        Some(Value::String(p)) if !p.is_empty() => format!("{p}-{pod}"),
        _ => pod.to_string(),
    };
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
            cluster_size(s).map_err(|e| invalid(format!("initial-cluster: {e}")))?
        }
        None => 1,
        Some(_) => return Err(invalid("initial-cluster is not a string".into())),
    };
    tracing::debug!(member = %name, cluster_size = size, "serving etcd config");
    map.insert(Value::String("name".into()), Value::String(name));
    map.insert(
        Value::String("initial-cluster-state".into()),
        Value::String("new".into()),
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
        let out = rewrite(INPUT, Path::new("x"), Some("etcd-main-1")).unwrap();
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
        let e = rewrite(&with_prefix, Path::new("x"), Some("1")).unwrap();
        assert!(e.contains("name: etcd-main-1"), "{e}");
        let err = rewrite(INPUT, Path::new("x"), Some("etcd-main-0")).unwrap_err();
        assert!(
            err.to_string()
                .contains("no URLs for member \"etcd-main-0\""),
            "{err}"
        );
        assert!(matches!(
            rewrite(INPUT, Path::new("x"), None),
            Err(ConfigError::NoPodName)
        ));
        assert!(matches!(
            rewrite("a: [", Path::new("x"), Some("p")),
            Err(ConfigError::Parse { .. })
        ));
        assert!(matches!(
            load_for_pod(Path::new("/nonexistent/etcd.conf.yaml"), Some("p")),
            Err(ConfigError::Read { .. })
        ));
    }
}
