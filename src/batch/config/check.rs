//! Loading and checking the whole file before any work starts: the defaults merged into each
//! member, its store resolved, its targets and point in time checked, and no store or data
//! directory shared between members.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::restore::MemberFlags;
use crate::snapstore::{PlanOptions, StoreArgs, StoreConfig};

use super::checked::{Batch, Member, MemberTargets, Purpose};
use super::problem::{BatchError, Problem};
use super::schema::{DefaultsSchema, FileSchema, MemberSchema, MemberSetSchema, TimeSchema};
use super::values::{absolute, normalize, parse_compression, parse_time, store_key};

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
