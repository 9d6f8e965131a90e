//! `etcd-restore restore`: backups → data directories real etcd starts on, without etcd.
//!
//! 1. plan the restore from the store listing (before any download);
//! 2. replay the plan into a database inside a staging directory beside the target
//!    ([`crate::replay`]);
//! 3. rewrite membership the way `etcdutl snapshot restore` 3.5 does: clear `members` and
//!    `members_removed`, add the new members, set `meta/consistent_index` = N and `meta/term` = 1,
//!    and bump the revision when asked ([`crate::mvcc::bump`]);
//! 4. write `member/wal` (or the `--wal-dir`) and `member/snap/*.snap` for each member
//!    ([`wal::FreshMember`]);
//! 5. fsync and move each staging directory into place ([`crate::datadir::Staging`]), the WAL
//!    directory first.
//!
//! For a multi-member cluster the database is replayed once and copied into each member's
//! staging directory; only the WAL metadata (the local member ID) differs between members.

use std::path::{Path, PathBuf};
use std::time::Instant;

use bbolt::{Db, OpenOptions};
use wal::{Cluster, FreshMember, OsFs, RestoreFlavor, WriterOptions};

use crate::datadir::{self, Layout, Staging};
use crate::mvcc::bump::{Bump, BumpError, Bumped, bump_revision};
use crate::replay::{self, META_BUCKET, ReplayError, ReplayOptions, ReplayReport};
use crate::snapstore::{Plan, PlanError, PlanOptions, Store, StoreError, plan};
use crate::tempdir::{self, TempDirError};

pub const MEMBERS_BUCKET: &[u8] = b"members";
pub const MEMBERS_REMOVED_BUCKET: &[u8] = b"members_removed";

/// Who the restored cluster's members are (etcd's bootstrap flags).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberFlags {
    pub name: String,
    pub initial_cluster: String,
    pub initial_cluster_token: String,
    pub initial_advertise_peer_urls: Vec<String>,
}

impl Default for MemberFlags {
    /// etcdbrctl's and etcdutl's defaults.
    fn default() -> Self {
        Self {
            name: "default".into(),
            initial_cluster: "default=http://localhost:2380".into(),
            initial_cluster_token: "etcd-cluster".into(),
            initial_advertise_peer_urls: vec!["http://localhost:2380".into()],
        }
    }
}

/// Where restored members go.
#[derive(Clone, Debug)]
pub enum Targets {
    /// The member named in `--name` into this directory.
    One(PathBuf),
    /// Every member of the initial cluster, `{name}` in the template replaced by its name.
    All { template: String },
    /// Named members of the initial cluster, each into its own directory (a batch file's
    /// member set). Every name must be in the initial cluster.
    Each(Vec<(String, PathBuf)>),
}

#[derive(Clone, Debug)]
pub struct RestoreOptions {
    pub targets: Targets,
    pub members: MemberFlags,
    pub plan: PlanOptions,
    pub replay: ReplayOptions,
    /// Replace non-empty data directories (atomically, only once the new one is complete).
    pub force: bool,
    pub flavor: RestoreFlavor,
    /// `--bump-revision N --mark-compacted` ([`crate::mvcc::bump`]).
    pub bump: Option<Bump>,
    /// `--wal-dir`: each member's WAL there instead of `member/wal`; `{name}` is replaced by
    /// the member's name (required when restoring several members).
    pub wal_dir: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Replay(#[from] ReplayError),
    #[error(transparent)]
    DataDir(#[from] datadir::DataDirError),
    #[error(transparent)]
    TempDir(#[from] TempDirError),
    #[error("member flags: {0}")]
    Members(String),
    #[error("writing the WAL and snap files: {0}")]
    Wal(#[from] wal::WalError),
    #[error("updating membership in {path}: {source}")]
    Db {
        path: PathBuf,
        #[source]
        source: bbolt::Error,
    },
    #[error("bumping the revision in {path}: {source}")]
    Bump {
        path: PathBuf,
        #[source]
        source: BumpError,
    },
    #[error("--wal-dir {wal_dir}: {detail}")]
    WalDir { wal_dir: String, detail: String },
    #[error("copying {from} to {to}: {source}")]
    Copy {
        from: PathBuf,
        to: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One restored member.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RestoredMember {
    pub name: String,
    pub member_id: String,
    pub data_dir: PathBuf,
    /// Where its WAL went when `--wal-dir` was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wal_dir: Option<PathBuf>,
}

/// The final report.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RestoreReport {
    pub store: String,
    pub plan: Plan,
    pub replay: ReplayReport,
    pub cluster_id: String,
    pub members: Vec<RestoredMember>,
    /// What `--bump-revision --mark-compacted` wrote.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bumped: Option<Bumped>,
    pub seconds: f64,
}

/// Parses and checks the member flags like etcd's `VerifyBootstrap`.
pub fn cluster_from_flags(m: &MemberFlags) -> Result<Cluster, RestoreError> {
    let cluster = Cluster::from_initial_cluster(&m.initial_cluster, &m.initial_cluster_token)
        .map_err(|e| {
            RestoreError::Members(format!("--initial-cluster {:?}: {e}", m.initial_cluster))
        })?;
    let me = cluster.member_by_name(&m.name).ok_or_else(|| {
        RestoreError::Members(format!(
            "--name {:?} is not in --initial-cluster {:?}",
            m.name, m.initial_cluster
        ))
    })?;
    if !m.initial_advertise_peer_urls.is_empty() {
        let mut want = Vec::new();
        for u in &m.initial_advertise_peer_urls {
            for part in u.split(',').filter(|p| !p.is_empty()) {
                want.push(wal::member::normalize_peer_url(part).map_err(|e| {
                    RestoreError::Members(format!("--initial-advertise-peer-urls {part:?}: {e}"))
                })?);
            }
        }
        want.sort();
        if want != me.peer_urls {
            return Err(RestoreError::Members(format!(
                "--initial-advertise-peer-urls {:?} does not match the URLs of {:?} in --initial-cluster ({:?})",
                want, m.name, me.peer_urls
            )));
        }
    }
    Ok(cluster)
}

/// Plans without downloading anything (also what `ls` shows).
pub async fn make_plan(store: &Store, options: PlanOptions) -> Result<Plan, RestoreError> {
    let listing = store.list_snapshots().await?;
    Ok(plan(&listing.snapshots, options)?)
}

/// Runs a restore.
pub async fn restore(store: &Store, opts: &RestoreOptions) -> Result<RestoreReport, RestoreError> {
    let t0 = Instant::now();
    let cluster = cluster_from_flags(&opts.members)?;
    let targets: Vec<(String, PathBuf)> = match &opts.targets {
        Targets::One(dir) => vec![(opts.members.name.clone(), dir.clone())],
        Targets::All { template } => cluster
            .members
            .iter()
            .map(|m| {
                (
                    m.name.clone(),
                    PathBuf::from(template.replace("{name}", &m.name)),
                )
            })
            .collect(),
        Targets::Each(dirs) => {
            if dirs.is_empty() {
                return Err(RestoreError::Members("no member to restore".into()));
            }
            for (name, _) in dirs {
                if cluster.member_by_name(name).is_none() {
                    return Err(RestoreError::Members(format!(
                        "member {name:?} is not in --initial-cluster {:?}",
                        opts.members.initial_cluster
                    )));
                }
            }
            dirs.clone()
        }
    };
    // Refuse before downloading anything when a target is in the way.
    let mut stagings = Vec::with_capacity(targets.len());
    for (name, dir) in &targets {
        let wal = match wal_target(opts.wal_dir.as_deref(), name, dir, targets.len())? {
            Some(w) => Some(Staging::begin(&w, opts.force).map_err(|e| match e {
                datadir::DataDirError::NotEmpty(p) => RestoreError::WalDir {
                    wal_dir: p.display().to_string(),
                    detail: "is not empty; pass --force to replace it (the old one is swapped out atomically and deleted only after the new one is in place)".into(),
                },
                e => e.into(),
            })?),
            None => None,
        };
        stagings.push((name.clone(), Staging::begin(dir, opts.force)?, wal));
    }
    let mut plan = make_plan(store, opts.plan).await?;

    // The first member's staging directory holds the replayed database.
    let first = &stagings[0].1;
    let layout = first.layout();
    datadir::create_dir(&layout.member())?;
    datadir::create_dir(&layout.snap_dir())?;
    let spool = tempdir::spool_dir(opts.replay.restoration_dir.as_deref(), first.path())?;
    let mut replay_opts = opts.replay.clone();
    replay_opts.spool_dir = spool.path().to_path_buf();
    let report = replay::replay(store, &mut plan, &layout.db(), &replay_opts).await?;
    if let Some(p) = &replay_opts.progress {
        p.set_phase(crate::progress::Phase::Writing);
    }
    drop(spool);

    let bumped = write_membership(&layout.db(), &cluster, opts.bump)?;
    let mut members = Vec::new();
    for (i, (name, staging, wal)) in stagings.iter().enumerate() {
        let l = staging
            .layout()
            .with_wal_dir(wal.as_ref().map(|w| w.path().to_path_buf()));
        if i > 0 {
            datadir::create_dir(&l.member())?;
            datadir::create_dir(&l.snap_dir())?;
            copy_file(&layout.db(), &l.db())?;
        }
        write_raft_state(&l, &cluster, name, opts.flavor)?;
    }
    let mut placed = Vec::new();
    for (name, staging, wal) in stagings {
        // The WAL first: a crash in between leaves a WAL without its data directory, which
        // etcd refuses to start on, never a data directory that etcd would bootstrap afresh.
        let wal_dir = wal.map(Staging::commit).transpose()?;
        let dir = staging.commit()?;
        let id = cluster
            .member_by_name(&name)
            .map(|m| format!("{:x}", m.id))
            .unwrap_or_default();
        tracing::info!(member = %name, data_dir = %dir.display(), "data directory restored");
        placed.push(RestoredMember {
            name,
            member_id: id,
            data_dir: dir,
            wal_dir,
        });
    }
    members.extend(placed);
    Ok(RestoreReport {
        store: store.describe().to_string(),
        plan,
        replay: report,
        cluster_id: format!("{:x}", cluster.id),
        members,
        bumped,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// Where a member's WAL goes: `None` for `member/wal` inside its data directory.
fn wal_target(
    template: Option<&str>,
    name: &str,
    data_dir: &Path,
    members: usize,
) -> Result<Option<PathBuf>, RestoreError> {
    let Some(t) = template else { return Ok(None) };
    let err = |detail: String| RestoreError::WalDir {
        wal_dir: t.to_string(),
        detail,
    };
    if members > 1 && !t.contains("{name}") {
        return Err(err(
            "restoring several members: it must contain {name} (e.g. /var/etcd/{name}.wal)".into(),
        ));
    }
    let wal = PathBuf::from(t.replace("{name}", name));
    if wal == Layout::new(data_dir).wal_dir() {
        return Ok(None);
    }
    if wal.starts_with(data_dir) || data_dir.starts_with(&wal) {
        return Err(err(format!(
            "overlaps the data directory {}; give a directory outside it, or leave --wal-dir out for <data-dir>/member/wal",
            data_dir.display()
        )));
    }
    Ok(Some(wal))
}

/// Membership and raft bookkeeping in the database, as `etcdutl snapshot restore` 3.5 writes
/// them (3.4's etcdctl forgets to clear the old members; 3.4 servers do not read them), and
/// the revision bump when asked for.
pub fn write_membership(
    db_path: &Path,
    cluster: &Cluster,
    bump: Option<Bump>,
) -> Result<Option<Bumped>, RestoreError> {
    let err = |source| RestoreError::Db {
        path: db_path.to_path_buf(),
        source,
    };
    // Append-only: reusing free pages would first walk every tree of the file to find them
    // (the replayed file has no freelist page), touching the whole database for a few pages.
    let db = Db::open(
        db_path,
        OpenOptions {
            free_space: bbolt::FreeSpace::AppendOnly,
            ..Default::default()
        },
    )
    .map_err(err)?;
    let mut tx = db.begin_write().map_err(err)?;
    for bucket in [MEMBERS_BUCKET, MEMBERS_REMOVED_BUCKET] {
        if tx.bucket_mut(bucket).map_err(err)?.is_some() {
            tx.delete_bucket(bucket).map_err(err)?;
        }
        tx.create_bucket(bucket).map_err(err)?;
    }
    {
        let mut b = tx
            .create_bucket_if_not_exists(MEMBERS_BUCKET)
            .map_err(err)?;
        for m in &cluster.members {
            b.put(format!("{:x}", m.id).as_bytes(), m.to_json().as_bytes())
                .map_err(err)?;
        }
    }
    let n = cluster.members.len() as u64;
    let mut meta = tx.create_bucket_if_not_exists(META_BUCKET).map_err(err)?;
    meta.put(b"consistent_index", &n.to_be_bytes())
        .map_err(err)?;
    meta.put(b"term", &1u64.to_be_bytes()).map_err(err)?;
    let bumped = match bump {
        Some(b) => Some(
            bump_revision(&mut tx, b).map_err(|source| RestoreError::Bump {
                path: db_path.to_path_buf(),
                source,
            })?,
        ),
        None => None,
    };
    tx.commit().map_err(err)?;
    Ok(bumped)
}

fn write_raft_state(
    layout: &Layout,
    cluster: &Cluster,
    name: &str,
    flavor: RestoreFlavor,
) -> Result<(), RestoreError> {
    let fresh = FreshMember::new(cluster, name, flavor)?;
    fresh.write(
        &OsFs,
        &layout.wal_dir(),
        &layout.snap_dir(),
        WriterOptions::default(),
    )?;
    Ok(())
}

fn copy_file(from: &Path, to: &Path) -> Result<(), RestoreError> {
    let err = |source| RestoreError::Copy {
        from: from.to_path_buf(),
        to: to.to_path_buf(),
        source,
    };
    let mut src = std::fs::File::open(from).map_err(err)?;
    let mut dst = datadir::create_file(to)?;
    std::io::copy(&mut src, &mut dst).map_err(err)?;
    dst.sync_all().map_err(err)?;
    Ok(())
}
