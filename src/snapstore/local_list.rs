//! Listing a local-directory store with the standard library.
//!
//! object_store's local listing ends at the first file whose name it cannot represent as an
//! object path (a control character, invalid UTF-8, a `..`-like segment), so one stray file
//! in the backup directory would hide every snapshot listed after it. Walking the directory
//! ourselves turns such a file into one more ignored object. Reads still go through
//! object_store: every name that parses as a snapshot is a valid object path.

use std::io;
use std::path::Path;

/// `v1/<dir>/<name>/<chunk>` is the deepest object a backup holds.
const MAX_DEPTH: usize = 4;

/// A file below the store root.
#[derive(Debug)]
pub(super) struct LocalObject {
    /// `/`-separated path relative to the root, or the escaped lossy form of it when a
    /// segment is not UTF-8 (`Err`).
    pub path: Result<String, String>,
    pub size: u64,
}

/// Every file in `root/<layout>/…`, at most [`MAX_DEPTH`] segments deep, following symlinks
/// as object_store does. A missing layout directory is an empty listing.
pub(super) fn list(root: &Path, layout: &str) -> io::Result<Vec<LocalObject>> {
    let mut out = Vec::new();
    let mut pending = vec![(root.join(layout), Ok(layout.to_string()), 1usize)];
    while let Some((dir, rel, depth)) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound && depth == 1 => continue,
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", dir.display()))),
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            let path = match (&rel, name.to_str()) {
                (Ok(rel), Some(name)) => Ok(format!("{rel}/{name}")),
                (Ok(rel), None) => Err(format!("{rel}/{}", name.to_string_lossy())),
                (Err(rel), _) => Err(format!("{rel}/{}", name.to_string_lossy())),
            }
            .map_err(|p| crate::show::name(&p).into_owned());
            // Follows symlinks; a dangling one is not an object.
            let Ok(meta) = std::fs::metadata(entry.path()) else {
                continue;
            };
            if meta.is_dir() {
                if depth < MAX_DEPTH {
                    pending.push((entry.path(), path, depth + 1));
                }
            } else if meta.is_file() && !is_staging_file(&path) {
                out.push(LocalObject {
                    path,
                    size: meta.len(),
                });
            }
        }
    }
    Ok(out)
}

/// object_store writes uploads to `<name>#<digits>` and renames them into place; those are
/// not objects yet (object_store's own listing hides them too).
fn is_staging_file(path: &Result<String, String>) -> bool {
    let Ok(path) = path else { return false };
    path.rsplit_once('#')
        .is_some_and(|(_, suffix)| !suffix.is_empty() && suffix.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use std::os::unix::ffi::OsStrExt as _;

    #[test]
    fn lists_every_file_whatever_its_name_and_skips_staging_files() {
        let tmp = tempfile::tempdir().unwrap();
        let v2 = tmp.path().join("v2");
        std::fs::create_dir_all(v2.join("Full-1/sub/deeper/deepest")).unwrap();
        std::fs::write(v2.join("Full-1/0000000001"), b"chunk").unwrap();
        std::fs::write(v2.join("Full-1/sub/deeper/deepest/x"), b"too deep").unwrap();
        std::fs::write(v2.join("a\x1b[2J"), b"").unwrap();
        std::fs::write(v2.join(std::ffi::OsStr::from_bytes(b"bad\xff")), b"").unwrap();
        std::fs::write(v2.join("Incr-1#17"), b"staging").unwrap();
        let mut got: Vec<_> = super::list(tmp.path(), "v2")
            .unwrap()
            .into_iter()
            .map(|o| (o.path, o.size))
            .collect();
        got.sort();
        assert_eq!(
            got,
            vec![
                (Ok("v2/Full-1/0000000001".to_string()), 5),
                (Ok("v2/a\x1b[2J".to_string()), 0),
                (Err("v2/bad\u{fffd}".to_string()), 0),
            ]
        );
        assert!(super::list(tmp.path(), "v1").unwrap().is_empty());
    }
}
