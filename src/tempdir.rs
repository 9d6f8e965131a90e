//! Temporary directories named on the command line: `--snapstore-temp-directory` and
//! `--restoration-temp-snapshots-dir`.
//!
//! etcd-druid's compaction Job points them below its fresh `emptyDir` volume
//! (`/var/etcd/data/tmp`, `/var/etcd/data/compaction.restoration.temp`;
//! etcd-druid `internal/controller/compaction/reconciler.go`, `getCompactionJobArgs`), where they
//! never exist yet. etcdbrctl v0.43 creates a missing one with mode 0700: the snapstore temp
//! directory whenever it opens a store (`pkg/snapstore/utils.go`, `GetSnapstore`), the
//! restoration one at the start of every restore (`pkg/snapshot/restorer/restorer.go`,
//! `Restore`). So do we: [`crate::snapstore::Store::open`] and `compact` the first, restore and
//! compact the second ([`spool_dir`]). An existing directory is used as it is: its mode is the
//! operator's.

use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};

/// etcdbrctl's `os.MkdirAll(dir, 0700)`: the spools hold cluster data.
pub const TEMP_DIR_MODE: u32 = 0o700;

#[derive(Debug, thiserror::Error)]
pub enum TempDirError {
    #[error("{flag} {path}: {detail}; point {flag} at a writable directory")]
    Unusable {
        flag: &'static str,
        path: PathBuf,
        detail: String,
    },
    #[error(
        "{flag} {path}: cannot create the temporary directory: {source}; create it or point {flag} at a writable directory"
    )]
    Create {
        flag: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Makes sure `path` is a directory, creating it and its missing parents with mode 0700
/// (umask permitting, as Go's `MkdirAll` does). `flag` names the option in errors. Returns
/// whether it was created.
pub fn ensure(path: &Path, flag: &'static str) -> Result<bool, TempDirError> {
    match fs::metadata(path) {
        Ok(m) if m.is_dir() => return Ok(false),
        Ok(_) => {
            return Err(TempDirError::Unusable {
                flag,
                path: path.to_path_buf(),
                detail: "exists and is not a directory".into(),
            });
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(TempDirError::Unusable {
                flag,
                path: path.to_path_buf(),
                detail: e.to_string(),
            });
        }
    }
    tracing::info!(path = %path.display(), "{flag}: the temporary directory does not exist; creating it (mode 0700)");
    fs::DirBuilder::new()
        .recursive(true)
        .mode(TEMP_DIR_MODE)
        .create(path)
        .map_err(|source| TempDirError::Create {
            flag,
            path: path.to_path_buf(),
            source,
        })?;
    Ok(true)
}

/// A run's spool directory for downloaded deltas: a fresh directory inside
/// `--restoration-temp-snapshots-dir` when it was given (created when missing), else inside
/// `default_parent`. Removed when dropped.
pub fn spool_dir(
    restoration_dir: Option<&Path>,
    default_parent: &Path,
) -> Result<tempfile::TempDir, TempDirError> {
    const FLAG: &str = "--restoration-temp-snapshots-dir";
    let (parent, flag) = match restoration_dir {
        Some(d) => {
            ensure(d, FLAG)?;
            (d, FLAG)
        }
        None => (default_parent, "the spool directory"),
    };
    // tempfile creates it with mode 0700.
    tempfile::Builder::new()
        .prefix("etcd-restore-spool-")
        .tempdir_in(parent)
        .map_err(|source| TempDirError::Create {
            flag,
            path: parent.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn creates_missing_directories_with_mode_0700_and_leaves_existing_ones() {
        let t = tempfile::tempdir().unwrap();
        let deep = t.path().join("var/etcd/data/tmp");
        assert!(ensure(&deep, "--snapstore-temp-directory").unwrap());
        for p in [t.path().join("var"), deep.clone()] {
            let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode & !TEMP_DIR_MODE, 0, "{}: mode {mode:o}", p.display());
        }
        fs::set_permissions(&deep, fs::Permissions::from_mode(0o755)).unwrap();
        assert!(!ensure(&deep, "--snapstore-temp-directory").unwrap());
        let mode = fs::metadata(&deep).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o755, "an existing directory keeps its mode");
    }

    #[test]
    fn a_file_in_the_way_is_an_error_naming_the_flag() {
        let t = tempfile::tempdir().unwrap();
        let file = t.path().join("tmp");
        fs::write(&file, b"x").unwrap();
        let e = ensure(&file, "--snapstore-temp-directory").unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("--snapstore-temp-directory") && msg.contains("not a directory"),
            "{msg}"
        );
        // A file in the middle of the path: stat fails with ENOTDIR, named as well.
        let e = ensure(&file.join("sub"), "--snapstore-temp-directory").unwrap_err();
        assert!(e.to_string().contains("tmp/sub"), "{e}");
        // A parent that cannot be written to.
        let ro = t.path().join("ro");
        fs::create_dir(&ro).unwrap();
        fs::set_permissions(&ro, fs::Permissions::from_mode(0o500)).unwrap();
        let denied = ensure(&ro.join("tmp"), "--snapstore-temp-directory");
        fs::set_permissions(&ro, fs::Permissions::from_mode(0o700)).unwrap();
        // root may write anyway; then the directory was created.
        match denied {
            Err(e) => assert!(matches!(e, TempDirError::Create { .. }), "{e}"),
            Ok(created) => assert!(created && ro.join("tmp").is_dir()),
        }
    }

    #[test]
    fn the_spool_goes_into_the_restoration_directory_and_is_removed() {
        let t = tempfile::tempdir().unwrap();
        let restoration = t.path().join("compaction.restoration.temp");
        let spool = spool_dir(Some(&restoration), t.path()).unwrap();
        assert_eq!(spool.path().parent(), Some(restoration.as_path()));
        let p = spool.path().to_path_buf();
        drop(spool);
        assert!(!p.exists());
        assert!(restoration.is_dir());
        let spool = spool_dir(None, t.path()).unwrap();
        assert_eq!(spool.path().parent(), Some(t.path()));
    }
}
