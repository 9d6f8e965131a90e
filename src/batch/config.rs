//! The batch file: one YAML document naming many restore targets, each with its own backup
//! store (docs/batch.md). Parsing is strict (unknown keys are errors, so a typo never silently
//! drops an option), and [`Batch::load`] checks the whole file before any work starts,
//! reporting every problem at once so a long batch is fixed in one edit, not one per run.

use std::collections::HashMap;
use std::fmt;
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

use crate::restore::MemberFlags;
use crate::snapstore::{Backend, Compression, PlanOptions, StoreArgs, StoreConfig};

/// What the batch is for: restore and validate need data directories, compact does not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    Restore,
    Compact,
    Validate,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Restore => "restore",
            Purpose::Compact => "compact",
            Purpose::Validate => "validate",
        }
    }

    fn needs_data_dirs(self) -> bool {
        !matches!(self, Purpose::Compact)
    }
}

// ---- the YAML schema ----------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FileSchema {
    #[serde(default)]
    defaults: DefaultsSchema,
    #[serde(default)]
    maintain_order: bool,
    #[serde(default)]
    members: Vec<MemberSchema>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DefaultsSchema {
    store: Option<String>,
    store_endpoint_override: Option<String>,
    store_region: Option<String>,
    store_path_style: Option<bool>,
    store_allow_http: Option<bool>,
    temp_dir: Option<PathBuf>,
    compression: Option<String>,
    parallel: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct MemberSchema {
    alias: Option<String>,
    store: Option<String>,
    prefix: Option<String>,
    data_dir: Option<PathBuf>,
    member_set: Option<MemberSetSchema>,
    to_revision: Option<i64>,
    to_time: Option<TimeSchema>,
    compression: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum TimeSchema {
    Unix(i64),
    Text(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct MemberSetSchema {
    initial_cluster_token: Option<String>,
    #[serde(default)]
    members: Vec<SetMemberSchema>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SetMemberSchema {
    name: Option<String>,
    #[serde(default)]
    peer_urls: Vec<String>,
    data_dir: Option<PathBuf>,
}

// ---- the checked batch --------------------------------------------------------------------

/// A batch file that passed every check.
#[derive(Clone, Debug)]
pub struct Batch {
    pub path: PathBuf,
    pub purpose: Purpose,
    /// Run the members one after the other in listed order (else in parallel).
    pub maintain_order: bool,
    /// `defaults.parallel`, if given.
    pub parallel: Option<usize>,
    pub members: Vec<Member>,
}

/// One target of the batch, with its own store.
#[derive(Clone, Debug)]
pub struct Member {
    pub alias: String,
    pub store: StoreConfig,
    /// The store's identity (what must be unique across members), e.g. `s3://bucket/prefix`.
    pub store_key: String,
    pub targets: MemberTargets,
    pub plan: PlanOptions,
    /// Compact's output codec (None: the last delta's).
    pub compression: Option<Compression>,
}

/// Where a member is restored (or which directories are validated).
#[derive(Clone, Debug)]
pub enum MemberTargets {
    /// Compact only: no data directory.
    None,
    /// A single-member cluster with etcdbrctl's default member flags.
    One(PathBuf),
    /// A multi-member cluster restored from the one backup: one directory per member.
    Set {
        flags: MemberFlags,
        dirs: Vec<(String, PathBuf)>,
    },
}

impl MemberTargets {
    /// Every data directory, in listed order.
    pub fn dirs(&self) -> Vec<PathBuf> {
        match self {
            MemberTargets::None => Vec::new(),
            MemberTargets::One(d) => vec![d.clone()],
            MemberTargets::Set { dirs, .. } => dirs.iter().map(|(_, d)| d.clone()).collect(),
        }
    }
}

/// One thing wrong with a batch file. `member` is the alias, or `#N` (1-based) without one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("`members` is empty: list at least one member")]
    NoMembers,
    #[error("`defaults.parallel` is 0: use 1 or more")]
    ZeroParallel,
    #[error("{member}: `alias` is missing: give every member a unique alias")]
    NoAlias { member: String },
    #[error("alias {alias:?} is used by members #{first} and #{second}: aliases must be unique")]
    DuplicateAlias {
        alias: String,
        first: usize,
        second: usize,
    },
    #[error("{member}: no store: set `store` on the member or `defaults.store`")]
    NoStore { member: String },
    #[error("{member}: store: {detail}")]
    BadStore { member: String, detail: String },
    #[error(
        "{member}: store {store} is also the store of {other}: each alias needs its own store prefix"
    )]
    DuplicateStore {
        member: String,
        other: String,
        store: String,
    },
    #[error("{member}: no target: set `dataDir` or `memberSet`")]
    NoTarget { member: String },
    #[error("{member}: both `dataDir` and `memberSet` are set: use one")]
    BothTargets { member: String },
    #[error("{member}: `memberSet.members` is empty: list the cluster's members")]
    EmptyMemberSet { member: String },
    #[error("{member}: memberSet member #{index}: `{field}` is missing")]
    IncompleteSetMember {
        member: String,
        index: usize,
        field: &'static str,
    },
    #[error("{member}: memberSet: {detail}")]
    BadMemberSet { member: String, detail: String },
    #[error("{member}: data dir {dir} is also the data dir of {other}: data dirs must be unique")]
    DuplicateDataDir {
        member: String,
        other: String,
        dir: PathBuf,
    },
    #[error(
        "{member}: data dir {inner} is inside {outer}, the data dir of {other}: data dirs must not be nested"
    )]
    NestedDataDir {
        member: String,
        other: String,
        inner: PathBuf,
        outer: PathBuf,
    },
    #[error("{member}: both `toRevision` and `toTime` are set: use one")]
    BothPointsInTime { member: String },
    #[error("{member}: `toTime` {value:?} is neither RFC 3339 nor Unix seconds")]
    BadTime { member: String, value: String },
    #[error("{member}: `toRevision` {value} must be positive")]
    BadRevision { member: String, value: i64 },
    #[error("{where_}: compression {value:?}: use gzip, zlib, lzw, zstd or none")]
    BadCompression { where_: String, value: String },
}

/// Why a batch file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("reading batch file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("batch file {path}: {detail} (schema: docs/batch.md)")]
    Syntax { path: PathBuf, detail: String },
    #[error("batch file {path} has {} problem(s); nothing was run:{}", problems.len(), list(problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

fn list(problems: &[Problem]) -> String {
    problems.iter().map(|p| format!("\n  - {p}")).collect()
}

impl Batch {
    /// Reads and checks a batch file. `base` holds store settings from the command line that
    /// apply to every member unless the file sets them (endpoint, temp dir, ...).
    pub fn load(path: &Path, purpose: Purpose, base: &StoreArgs) -> Result<Batch, BatchError> {
        let text = std::fs::read_to_string(path).map_err(|source| BatchError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        // Relative paths in the file are relative to the file, not to wherever it is run from.
        let dir = path.parent().unwrap_or(Path::new(""));
        Batch::parse(&text, path, dir, purpose, base)
    }

    /// [`Batch::load`] on text already read; `dir` anchors relative paths.
    pub fn parse(
        text: &str,
        path: &Path,
        dir: &Path,
        purpose: Purpose,
        base: &StoreArgs,
    ) -> Result<Batch, BatchError> {
        let schema: FileSchema = serde_norway::from_str(text).map_err(|e| BatchError::Syntax {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
        let anchor = absolute(dir);
        let mut problems = Vec::new();
        let batch = check(schema, path, &anchor, purpose, base, &mut problems);
        if problems.is_empty() {
            Ok(batch)
        } else {
            Err(BatchError::Invalid {
                path: path.to_path_buf(),
                problems,
            })
        }
    }
}

fn check(
    schema: FileSchema,
    path: &Path,
    anchor: &Path,
    purpose: Purpose,
    base: &StoreArgs,
    problems: &mut Vec<Problem>,
) -> Batch {
    let d = &schema.defaults;
    if d.parallel == Some(0) {
        problems.push(Problem::ZeroParallel);
    }
    if schema.members.is_empty() {
        problems.push(Problem::NoMembers);
    }
    let default_compression = d.compression.as_deref().and_then(|c| {
        let parsed = parse_compression(c);
        if parsed.is_none() {
            problems.push(Problem::BadCompression {
                where_: "defaults".into(),
                value: c.into(),
            });
        }
        parsed
    });

    let mut aliases: HashMap<String, usize> = HashMap::new();
    let mut stores: HashMap<String, String> = HashMap::new();
    // (normalized dir, owner) of every data dir seen so far.
    let mut dirs: Vec<(PathBuf, String)> = Vec::new();
    let mut members = Vec::new();

    for (i, m) in schema.members.into_iter().enumerate() {
        let number = i + 1;
        let name = match m.alias.as_deref().map(str::trim) {
            Some(a) if !a.is_empty() => {
                if let Some(&first) = aliases.get(a) {
                    problems.push(Problem::DuplicateAlias {
                        alias: a.into(),
                        first,
                        second: number,
                    });
                } else {
                    aliases.insert(a.into(), number);
                }
                a.to_string()
            }
            _ => {
                let who = format!("member #{number}");
                problems.push(Problem::NoAlias {
                    member: who.clone(),
                });
                who
            }
        };

        let store = resolve_store(&m, d, anchor, base, &name, problems);
        let store_key = store.as_ref().map(store_key).unwrap_or_default();
        if store.is_some() {
            match stores.get(&store_key) {
                Some(other) => problems.push(Problem::DuplicateStore {
                    member: name.clone(),
                    other: other.clone(),
                    store: store_key.clone(),
                }),
                None => {
                    stores.insert(store_key.clone(), name.clone());
                }
            }
        }

        let targets = resolve_targets(&m, anchor, purpose, &name, problems);
        for dir in targets.dirs() {
            claim_dir(&dir, &name, &mut dirs, problems);
        }

        let plan = resolve_plan(&m, &name, problems);
        let compression = match m.compression.as_deref() {
            Some(c) => {
                let parsed = parse_compression(c);
                if parsed.is_none() {
                    problems.push(Problem::BadCompression {
                        where_: name.clone(),
                        value: c.into(),
                    });
                }
                parsed
            }
            None => default_compression,
        };
        if let Some(store) = store {
            members.push(Member {
                alias: name,
                store,
                store_key,
                targets,
                plan,
                compression,
            });
        }
    }
    Batch {
        path: path.to_path_buf(),
        purpose,
        maintain_order: schema.maintain_order,
        parallel: d.parallel,
        members,
    }
}

fn resolve_store(
    m: &MemberSchema,
    d: &DefaultsSchema,
    anchor: &Path,
    base: &StoreArgs,
    who: &str,
    problems: &mut Vec<Problem>,
) -> Option<StoreConfig> {
    let Some(url) = m.store.as_ref().or(d.store.as_ref()) else {
        problems.push(Problem::NoStore { member: who.into() });
        return None;
    };
    let url = if url.contains("://") {
        url.clone()
    } else {
        anchor.join(url).to_string_lossy().into_owned()
    };
    let mut args = base.clone();
    args.store = Some(url);
    args.storage_provider = None;
    args.store_prefix = m.prefix.clone();
    if let Some(e) = &d.store_endpoint_override {
        args.store_endpoint_override = Some(e.clone());
    }
    if let Some(r) = &d.store_region {
        args.store_region = Some(r.clone());
    }
    if let Some(p) = d.store_path_style {
        args.store_path_style = Some(p);
    }
    if let Some(h) = d.store_allow_http {
        args.store_allow_http = h;
    }
    if let Some(t) = &d.temp_dir {
        args.snapstore_temp_directory = anchor.join(t);
    }
    match args.resolve() {
        Ok(c) => Some(c),
        Err(e) => {
            problems.push(Problem::BadStore {
                member: who.into(),
                detail: e.to_string(),
            });
            None
        }
    }
}

fn resolve_targets(
    m: &MemberSchema,
    anchor: &Path,
    purpose: Purpose,
    who: &str,
    problems: &mut Vec<Problem>,
) -> MemberTargets {
    match (&m.data_dir, &m.member_set) {
        (Some(_), Some(_)) => {
            problems.push(Problem::BothTargets { member: who.into() });
            MemberTargets::None
        }
        (Some(dir), None) => MemberTargets::One(normalize(&anchor.join(dir))),
        (None, Some(set)) => resolve_set(set, anchor, who, problems),
        (None, None) => {
            if purpose.needs_data_dirs() {
                problems.push(Problem::NoTarget { member: who.into() });
            }
            MemberTargets::None
        }
    }
}

fn resolve_set(
    set: &MemberSetSchema,
    anchor: &Path,
    who: &str,
    problems: &mut Vec<Problem>,
) -> MemberTargets {
    if set.members.is_empty() {
        problems.push(Problem::EmptyMemberSet { member: who.into() });
        return MemberTargets::None;
    }
    let before = problems.len();
    let mut dirs = Vec::new();
    let mut initial_cluster = Vec::new();
    for (i, sm) in set.members.iter().enumerate() {
        let incomplete = |field| Problem::IncompleteSetMember {
            member: who.into(),
            index: i + 1,
            field,
        };
        let name = sm.name.as_deref().map(str::trim).unwrap_or_default();
        if name.is_empty() {
            problems.push(incomplete("name"));
        }
        if sm.peer_urls.iter().all(|u| u.trim().is_empty()) {
            problems.push(incomplete("peerUrls"));
        }
        match &sm.data_dir {
            Some(d) => dirs.push((name.to_string(), normalize(&anchor.join(d)))),
            None => problems.push(incomplete("dataDir")),
        }
        for u in &sm.peer_urls {
            initial_cluster.push(format!("{name}={}", u.trim()));
        }
    }
    if problems.len() > before {
        return MemberTargets::None;
    }
    let mut names: Vec<&str> = dirs.iter().map(|(n, _)| n.as_str()).collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w.first() == w.get(1)) {
        problems.push(Problem::BadMemberSet {
            member: who.into(),
            detail: format!(
                "member name {:?} appears twice",
                w.first().copied().unwrap_or_default()
            ),
        });
        return MemberTargets::None;
    }
    let first = set.members.first();
    let flags = MemberFlags {
        name: dirs.first().map(|(n, _)| n.clone()).unwrap_or_default(),
        initial_cluster: initial_cluster.join(","),
        initial_cluster_token: set
            .initial_cluster_token
            .clone()
            .unwrap_or_else(|| MemberFlags::default().initial_cluster_token),
        initial_advertise_peer_urls: first.map(|f| f.peer_urls.clone()).unwrap_or_default(),
    };
    // The same parse and checks as a single restore, now, instead of after other members ran.
    if let Err(e) = crate::restore::cluster_from_flags(&flags) {
        problems.push(Problem::BadMemberSet {
            member: who.into(),
            detail: e.to_string(),
        });
        return MemberTargets::None;
    }
    MemberTargets::Set { flags, dirs }
}

/// Records `dir` for `who`, reporting a clash with any directory claimed before.
fn claim_dir(
    dir: &Path,
    who: &str,
    seen: &mut Vec<(PathBuf, String)>,
    problems: &mut Vec<Problem>,
) {
    for (other_dir, other) in seen.iter() {
        if other_dir == dir {
            problems.push(Problem::DuplicateDataDir {
                member: who.into(),
                other: other.clone(),
                dir: dir.to_path_buf(),
            });
        } else if dir.starts_with(other_dir) {
            problems.push(Problem::NestedDataDir {
                member: who.into(),
                other: other.clone(),
                inner: dir.to_path_buf(),
                outer: other_dir.clone(),
            });
        } else if other_dir.starts_with(dir) {
            problems.push(Problem::NestedDataDir {
                member: who.into(),
                other: other.clone(),
                inner: other_dir.clone(),
                outer: dir.to_path_buf(),
            });
        }
    }
    seen.push((dir.to_path_buf(), who.to_string()));
}

fn resolve_plan(m: &MemberSchema, who: &str, problems: &mut Vec<Problem>) -> PlanOptions {
    if m.to_revision.is_some() && m.to_time.is_some() {
        problems.push(Problem::BothPointsInTime { member: who.into() });
    }
    if let Some(r) = m.to_revision.filter(|r| *r <= 0) {
        problems.push(Problem::BadRevision {
            member: who.into(),
            value: r,
        });
    }
    let to_time = match &m.to_time {
        None => None,
        Some(TimeSchema::Unix(t)) => Some(*t),
        Some(TimeSchema::Text(s)) => match parse_time(s) {
            Some(t) => Some(t),
            None => {
                problems.push(Problem::BadTime {
                    member: who.into(),
                    value: s.clone(),
                });
                None
            }
        },
    };
    PlanOptions {
        to_revision: m.to_revision,
        to_time,
    }
}

/// RFC 3339 or Unix seconds (the same forms `--to-time` takes).
pub fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok();
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp())
}

/// `compact --compression` names.
pub fn parse_compression(s: &str) -> Option<Compression> {
    [
        Compression::None,
        Compression::Gzip,
        Compression::Zlib,
        Compression::Lzw,
        Compression::Zstd,
    ]
    .into_iter()
    .find(|c| c.as_str() == s)
}

/// What makes two stores the same: backend, bucket, prefix (and endpoint), paths normalized.
pub fn store_key(c: &StoreConfig) -> String {
    let with = |scheme: &str, bucket: &str, endpoint: &Option<String>| {
        let mut k = format!("{scheme}://{bucket}");
        if !c.prefix.is_empty() {
            k.push('/');
            k.push_str(&c.prefix);
        }
        if let Some(e) = endpoint {
            k.push_str(&format!(" (endpoint {})", e.trim_end_matches('/')));
        }
        k
    };
    match &c.backend {
        Backend::Local { root } => format!("file://{}", normalize(&absolute(root)).display()),
        Backend::S3(s) => with("s3", &s.bucket, &s.endpoint),
        Backend::Gcs(g) => with("gs", &g.bucket, &g.base_url),
        Backend::Azure(a) => with("az", &a.container, &a.endpoint),
    }
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|cwd| cwd.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    }
}

/// Removes `.` and resolves `..` without touching the filesystem (targets may not exist yet).
pub fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.alias, self.store_key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, purpose: Purpose) -> Result<Batch, BatchError> {
        Batch::parse(
            text,
            Path::new("b.yaml"),
            Path::new("/srv"),
            purpose,
            &StoreArgs::default(),
        )
    }

    fn problems(text: &str) -> Vec<Problem> {
        match parse(text, Purpose::Restore) {
            Err(BatchError::Invalid { problems, .. }) => problems,
            other => panic!("expected problems, got {other:?}"),
        }
    }

    #[test]
    fn defaults_merge_into_members_and_relative_paths_follow_the_file() {
        let b = parse(
            "defaults: {store: backups, compression: zlib, parallel: 3}\n\
             maintainOrder: true\n\
             members:\n\
             - {alias: a, prefix: a, dataDir: out/a.etcd, toRevision: 7}\n\
             - {alias: b, store: s3://bkt/x, dataDir: /d/b.etcd, compression: none, toTime: '2024-04-26T00:00:00Z'}\n",
            Purpose::Restore,
        )
        .unwrap();
        assert!(b.maintain_order);
        assert_eq!(b.parallel, Some(3));
        let [a, bb] = &b.members[..] else {
            panic!("{:?}", b.members)
        };
        assert_eq!(a.store_key, "file:///srv/backups/a");
        assert_eq!(a.targets.dirs(), vec![PathBuf::from("/srv/out/a.etcd")]);
        assert_eq!(a.plan.to_revision, Some(7));
        assert_eq!(a.compression, Some(Compression::Zlib));
        assert_eq!(bb.store_key, "s3://bkt/x");
        assert_eq!(bb.compression, Some(Compression::None));
        assert_eq!(bb.plan.to_time, Some(1714089600));
    }

    #[test]
    fn unknown_keys_are_syntax_errors_with_a_location() {
        let e = parse("members:\n- {alias: a, dataDri: x}\n", Purpose::Restore).unwrap_err();
        let BatchError::Syntax { detail, .. } = e else {
            panic!("{e:?}")
        };
        assert!(
            detail.contains("dataDri") && detail.contains("line 2"),
            "{detail}"
        );
    }

    #[test]
    fn every_problem_is_listed_at_once() {
        let p = problems(
            "defaults: {store: /b}\n\
             members:\n\
             - {alias: a, prefix: p1, dataDir: /d/a}\n\
             - {alias: a, prefix: p2, dataDir: /d/b}\n\
             - {alias: c, prefix: p1/, dataDir: /d/a}\n\
             - {alias: d, prefix: p4, dataDir: /d/b/inner}\n\
             - {alias: e, prefix: p5}\n\
             - {prefix: p6, dataDir: /d/f, toRevision: 3, toTime: 5}\n",
        );
        assert!(p.contains(&Problem::DuplicateAlias {
            alias: "a".into(),
            first: 1,
            second: 2
        }));
        assert!(p.contains(&Problem::DuplicateStore {
            member: "c".into(),
            other: "a".into(),
            store: "file:///b/p1".into()
        }));
        assert!(p.contains(&Problem::DuplicateDataDir {
            member: "c".into(),
            other: "a".into(),
            dir: "/d/a".into()
        }));
        assert!(p.contains(&Problem::NestedDataDir {
            member: "d".into(),
            other: "a".into(),
            inner: "/d/b/inner".into(),
            outer: "/d/b".into()
        }));
        assert!(p.contains(&Problem::NoTarget { member: "e".into() }));
        assert!(p.contains(&Problem::NoAlias {
            member: "member #6".into()
        }));
        assert!(p.contains(&Problem::BothPointsInTime {
            member: "member #6".into()
        }));
        assert_eq!(p.len(), 7, "{p:#?}");
    }

    #[test]
    fn member_sets_are_checked_like_restore_flags() {
        let b = parse(
            "defaults: {store: /b}\nmembers:\n- alias: c\n  memberSet:\n    initialClusterToken: t\n    members:\n\
             \x20   - {name: m1, peerUrls: ['http://127.0.0.1:2380'], dataDir: /d/m1}\n\
             \x20   - {name: m2, peerUrls: ['http://127.0.0.1:2381'], dataDir: /d/m2}\n",
            Purpose::Restore,
        )
        .unwrap();
        let MemberTargets::Set { flags, dirs } = &b.members[0].targets else {
            panic!()
        };
        assert_eq!(
            flags.initial_cluster,
            "m1=http://127.0.0.1:2380,m2=http://127.0.0.1:2381"
        );
        assert_eq!(flags.initial_cluster_token, "t");
        assert_eq!(dirs.len(), 2);

        let p = problems(
            "defaults: {store: /b}\nmembers:\n- alias: c\n  memberSet:\n    members:\n\
             \x20   - {name: m1, dataDir: /d/m1}\n\
             \x20   - {name: m2, peerUrls: ['http://x:1']}\n",
        );
        assert_eq!(p.len(), 2, "{p:#?}");
    }

    #[test]
    fn compact_needs_no_data_dir() {
        let b = parse(
            "defaults: {store: /b}\nmembers:\n- {alias: a, prefix: a}\n",
            Purpose::Compact,
        )
        .unwrap();
        assert!(matches!(b.members[0].targets, MemberTargets::None));
    }

    #[test]
    fn normalize_is_lexical() {
        assert_eq!(normalize(Path::new("/a/./b/../c")), PathBuf::from("/a/c"));
    }
}
