//! The etcd data directory we produce, built so that a crash at any moment leaves either the old
//! directory or the complete new one.
//!
//! A restore builds the whole directory in a hidden sibling (`.<name>.etcd-restore-<pid>`, same
//! filesystem), fsyncs every file and directory, and then moves it into place with one rename:
//! onto a missing or empty target, or — when replacing a non-empty directory was asked for — with
//! `renameat2(RENAME_EXCHANGE)`, which swaps the two directories atomically; the old one then
//! sits in the staging path and is removed. Leftover staging directories of earlier runs that
//! died are removed by the next run for the same target.
//!
//! Layout and modes follow etcd: `<dir>/member/{snap,wal}`, directories 0700, files 0600
//! (etcd warns about anything wider).

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub const DIR_MODE: u32 = 0o700;
pub const FILE_MODE: u32 = 0o600;
const STAGING_MARK: &str = ".etcd-restore-";

/// Paths inside a data directory.
#[derive(Clone, Debug)]
pub struct Layout {
    pub root: PathBuf,
    /// etcd's `--wal-dir`: the WAL outside the data directory.
    wal: Option<PathBuf>,
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            wal: None,
        }
    }
    /// The WAL in `wal_dir` (etcd's and etcdutl's `--wal-dir`) instead of `member/wal`.
    pub fn with_wal_dir(mut self, wal_dir: Option<PathBuf>) -> Self {
        self.wal = wal_dir;
        self
    }
    pub fn member(&self) -> PathBuf {
        self.root.join("member")
    }
    pub fn snap_dir(&self) -> PathBuf {
        self.root.join("member").join("snap")
    }
    pub fn wal_dir(&self) -> PathBuf {
        match &self.wal {
            Some(w) => w.clone(),
            None => self.root.join("member").join("wal"),
        }
    }
    pub fn db(&self) -> PathBuf {
        self.snap_dir().join("db")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error(
        "data directory {0} is not empty; pass --force to replace it (the old directory is swapped out atomically and deleted only after the new one is in place)"
    )]
    NotEmpty(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("data directory path {0} has no parent directory or file name")]
    BadPath(PathBuf),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> DataDirError + '_ {
    move |source| DataDirError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Creates a directory with etcd's mode (not affected by a permissive umask).
pub fn create_dir(path: &Path) -> Result<(), DataDirError> {
    fs::DirBuilder::new()
        .mode(DIR_MODE)
        .create(path)
        .map_err(io_err(path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(DIR_MODE)).map_err(io_err(path))
}

/// Creates (truncating) a file with etcd's mode.
pub fn create_file(path: &Path) -> Result<File, DataDirError> {
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(path)
        .map_err(io_err(path))?;
    f.set_permissions(fs::Permissions::from_mode(FILE_MODE))
        .map_err(io_err(path))?;
    Ok(f)
}

/// fsyncs a directory so that the names in it are durable.
pub fn sync_dir(path: &Path) -> Result<(), DataDirError> {
    File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(io_err(path))
}

/// fsyncs every file and directory below `root` (and `root` itself), children first.
pub fn sync_tree(root: &Path) -> Result<(), DataDirError> {
    for entry in fs::read_dir(root).map_err(io_err(root))? {
        let entry = entry.map_err(io_err(root))?;
        let p = entry.path();
        let ty = entry.file_type().map_err(io_err(&p))?;
        if ty.is_dir() {
            sync_tree(&p)?;
        } else if ty.is_file() {
            File::open(&p)
                .and_then(|f| f.sync_all())
                .map_err(io_err(&p))?;
        }
    }
    sync_dir(root)
}

/// Moves `dir` aside with one rename, then deletes it; a missing `dir` is fine.
pub(crate) fn remove_dir_atomically(dir: &Path) -> Result<(), (PathBuf, io::Error)> {
    if !dir.exists() {
        return Ok(());
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| (path, source)
    };
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let aside = parent.join(format!(
        ".{name}.etcd-restore-removed-{}",
        std::process::id()
    ));
    fs::rename(dir, &aside).map_err(io(dir))?;
    let _ = sync_dir(parent);
    fs::remove_dir_all(&aside).map_err(io(&aside))?;
    Ok(())
}

/// A data directory under construction next to its final place.
#[derive(Debug)]
pub struct Staging {
    target: PathBuf,
    dir: PathBuf,
    committed: bool,
}

fn split(target: &Path) -> Result<(PathBuf, String), DataDirError> {
    let name = target
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| DataDirError::BadPath(target.to_path_buf()))?;
    let parent = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        Some(_) => PathBuf::from("."),
        None => return Err(DataDirError::BadPath(target.to_path_buf())),
    };
    Ok((parent, name.to_string()))
}

/// Whether a path is missing or an empty directory.
pub fn is_missing_or_empty(path: &Path) -> Result<bool, DataDirError> {
    match fs::read_dir(path) {
        Ok(mut it) => Ok(it.next().is_none()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(io_err(path)(e)),
    }
}

impl Staging {
    /// Prepares a staging directory for `target`. Refuses early (before any download) when the
    /// target is not empty and `force` is not set. Removes stale staging directories left by
    /// earlier runs for the same target.
    pub fn begin(target: &Path, force: bool) -> Result<Self, DataDirError> {
        let (parent, name) = split(target)?;
        fs::create_dir_all(&parent).map_err(io_err(&parent))?;
        // Reclaim first, also when we then refuse: a run killed after its swap leaves the old
        // directory in a staging path next to a complete target.
        let prefix = format!(".{name}{STAGING_MARK}");
        for entry in fs::read_dir(&parent).map_err(io_err(&parent))? {
            let entry = entry.map_err(io_err(&parent))?;
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let p = entry.path();
                tracing::info!(path = %p.display(), "removing a staging directory left by an earlier run");
                fs::remove_dir_all(&p).map_err(io_err(&p))?;
            }
        }
        if !force && !is_missing_or_empty(target)? {
            return Err(DataDirError::NotEmpty(target.to_path_buf()));
        }
        let dir = parent.join(format!("{prefix}{}", std::process::id()));
        create_dir(&dir)?;
        Ok(Self {
            target: target.to_path_buf(),
            dir,
            committed: false,
        })
    }

    /// The directory to build the new data directory in.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    pub fn layout(&self) -> Layout {
        Layout::new(&self.dir)
    }

    /// Makes everything durable and moves it into place.
    pub fn commit(mut self) -> Result<PathBuf, DataDirError> {
        sync_tree(&self.dir)?;
        let (parent, _) = split(&self.target)?;
        if is_missing_or_empty(&self.target)? {
            // rename(2) replaces an empty directory atomically.
            fs::rename(&self.dir, &self.target).map_err(io_err(&self.target))?;
            sync_dir(&parent)?;
        } else {
            rustix::fs::renameat_with(
                rustix::fs::CWD,
                &self.dir,
                rustix::fs::CWD,
                &self.target,
                rustix::fs::RenameFlags::EXCHANGE,
            )
            .map_err(|e| io_err(&self.target)(e.into()))?;
            sync_dir(&parent)?;
            // The old directory now lives at the staging path.
            fs::remove_dir_all(&self.dir).map_err(io_err(&self.dir))?;
            sync_dir(&parent)?;
        }
        self.committed = true;
        Ok(self.target.clone())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            // A failed or abandoned build leaves nothing behind; a crash leaves a hidden
            // directory that the next run removes.
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(st: &Staging, content: &str) {
        let l = st.layout();
        create_dir(&l.member()).unwrap();
        create_dir(&l.snap_dir()).unwrap();
        use std::io::Write;
        create_file(&l.db())
            .unwrap()
            .write_all(content.as_bytes())
            .unwrap();
    }

    #[test]
    fn commits_into_a_missing_or_empty_target() {
        let t = tempfile::tempdir().unwrap();
        let target = t.path().join("a.etcd");
        let st = Staging::begin(&target, false).unwrap();
        build(&st, "one");
        st.commit().unwrap();
        assert_eq!(
            fs::read_to_string(Layout::new(&target).db()).unwrap(),
            "one"
        );
        let mode = fs::metadata(&target).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, DIR_MODE);
        let fmode = fs::metadata(Layout::new(&target).db())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(fmode, FILE_MODE);

        let empty = t.path().join("b.etcd");
        fs::create_dir(&empty).unwrap();
        let st = Staging::begin(&empty, false).unwrap();
        build(&st, "two");
        st.commit().unwrap();
        assert_eq!(fs::read_to_string(Layout::new(&empty).db()).unwrap(), "two");
    }

    #[test]
    fn refuses_a_non_empty_target_unless_forced_and_then_swaps_atomically() {
        let t = tempfile::tempdir().unwrap();
        let target = t.path().join("a.etcd");
        let st = Staging::begin(&target, false).unwrap();
        build(&st, "old");
        st.commit().unwrap();
        assert!(matches!(
            Staging::begin(&target, false),
            Err(DataDirError::NotEmpty(_))
        ));
        let st = Staging::begin(&target, true).unwrap();
        build(&st, "new");
        st.commit().unwrap();
        assert_eq!(
            fs::read_to_string(Layout::new(&target).db()).unwrap(),
            "new"
        );
        let leftovers: Vec<_> = fs::read_dir(t.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from("a.etcd")]);
    }

    #[test]
    fn abandoned_builds_leave_nothing_and_stale_ones_are_reclaimed() {
        let t = tempfile::tempdir().unwrap();
        let target = t.path().join("a.etcd");
        {
            let st = Staging::begin(&target, false).unwrap();
            build(&st, "x");
        }
        assert_eq!(fs::read_dir(t.path()).unwrap().count(), 0);
        // A crashed run's staging directory (another pid) is removed by the next run.
        let stale = t.path().join(".a.etcd.etcd-restore-999999");
        fs::create_dir(&stale).unwrap();
        let st = Staging::begin(&target, false).unwrap();
        assert!(!stale.exists());
        drop(st);
    }
}
