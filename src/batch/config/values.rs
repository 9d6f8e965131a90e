//! The values a batch file holds, read as the command line reads them (point in time,
//! compression), and the identity of stores and directories (what must be unique).

use std::path::{Component, Path, PathBuf};

use crate::snapstore::{Backend, Compression, StoreConfig};

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

pub(super) fn absolute(p: &Path) -> PathBuf {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_is_lexical() {
        assert_eq!(normalize(Path::new("/a/./b/../c")), PathBuf::from("/a/c"));
    }
}
