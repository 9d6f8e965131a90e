//! Snapshot object names as etcd-backup-restore writes them, and where they sit in the store.
//!
//! Grammar (upstream `pkg/types/snapstore.go` `GenerateSnapshotName`, `pkg/snapstore/snapshot.go`
//! `ParseSnapshot`): `<Full|Incr>-<start>-<last>-<unix seconds>[<compression>][.final]`.
//! Revisions are zero-padded to at least 8 digits but may be wider. Object paths relative to the
//! store root (the `--store-prefix` directory) are `v2/<name>` or `v1/Backup-<unix>/<name>`;
//! one more path level (`<name>/<10 digits>`) is a chunk of a composed upload (GCS, Swift).

use std::fmt;

use thiserror::Error;

/// Full snapshot (a bbolt database plus its SHA-256) or delta snapshot (watch events as JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum Kind {
    #[serde(rename = "Incr")]
    Delta,
    Full,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Full => "Full",
            Kind::Delta => "Incr",
        }
    }
}

/// How an object's bytes are compressed, decided by its name's suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    /// `.gz`: Go `compress/gzip` (possibly several members).
    Gzip,
    /// `.zlib`: Go `compress/zlib`.
    Zlib,
    /// `.Z`: Go `compress/lzw`, LSB bit order, literal width 8, no `compress(1)` header.
    Lzw,
    /// `.zst`: zstd. Our own extension for objects this tool writes; etcdbrctl cannot read it.
    Zstd,
}

impl Compression {
    pub const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Zlib,
        Compression::Lzw,
        Compression::Zstd,
    ];

    /// The name suffix, including its dot (empty for `None`).
    pub fn suffix(self) -> &'static str {
        match self {
            Compression::None => "",
            Compression::Gzip => ".gz",
            Compression::Zlib => ".zlib",
            Compression::Lzw => ".Z",
            Compression::Zstd => ".zst",
        }
    }

    /// Parses a suffix without its dot (`gz`, `zlib`, `Z`, `zst`).
    pub fn from_extension(ext: &str) -> Option<Compression> {
        match ext {
            "gz" => Some(Compression::Gzip),
            "zlib" => Some(Compression::Zlib),
            "Z" => Some(Compression::Lzw),
            "zst" => Some(Compression::Zstd),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zlib => "zlib",
            Compression::Lzw => "lzw",
            Compression::Zstd => "zstd",
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which backup layout an object was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// `v1/Backup-<unix>/<name>` (etcd-backup-restore ≤ v0.12).
    V1,
    /// `v2/<name>` (flat, current).
    V2,
}

/// A parsed snapshot name: the part after the layout directory.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct SnapshotName {
    pub kind: Kind,
    pub start_revision: i64,
    pub last_revision: i64,
    /// Creation time, Unix seconds (UTC).
    pub created_on: i64,
    pub compression: Compression,
    pub is_final: bool,
}

/// A snapshot object in a store.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Snapshot {
    #[serde(flatten)]
    pub name: SnapshotName,
    pub layout: Layout,
    /// `Backup-<unix>` for v1, empty for v2.
    pub dir: String,
    /// The object's name (`Full-00000000-00000394-1795238878.gz`).
    pub snap_name: String,
    /// Object path relative to the store root (`v2/<name>` or `v1/<dir>/<name>`).
    pub path: String,
    /// Object size in bytes, when the listing said so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// The object version a restore reads (S3 versioned buckets: the oldest version of the
    /// key, as etcd-backup-restore does; see [`super::exclude`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Unix seconds until which the store keeps it immutable (object lock, retention or
    /// immutability policy), when the listing says so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub immutable_until: Option<i64>,
    /// Withdrawn with `x-etcd-snapshot-exclude=true` (listed only with `--include-excluded`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub excluded: bool,
}

impl Snapshot {
    pub fn kind(&self) -> Kind {
        self.name.kind
    }
    pub fn start_revision(&self) -> i64 {
        self.name.start_revision
    }
    pub fn last_revision(&self) -> i64 {
        self.name.last_revision
    }
    pub fn created_on(&self) -> i64 {
        self.name.created_on
    }
    pub fn compression(&self) -> Compression {
        self.name.compression
    }
    pub fn is_final(&self) -> bool {
        self.name.is_final
    }
}

impl fmt::Display for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path)
    }
}

/// Why a name is not a snapshot name.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NameError {
    #[error(
        "snapshot name {name:?}: expected 4 '-'-separated fields <Full|Incr>-<start>-<last>-<unix>[ext]"
    )]
    Fields { name: String },
    #[error("snapshot name {name:?}: unknown kind {kind:?} (expected Full or Incr)")]
    Kind { name: String, kind: String },
    #[error(
        "snapshot name {name:?}: {field} {value:?} is not a decimal number that fits in 63 bits"
    )]
    Number {
        name: String,
        field: &'static str,
        value: String,
    },
    #[error("snapshot name {name:?}: start revision {start} is above last revision {last}")]
    Range { name: String, start: i64, last: i64 },
    #[error(
        "snapshot name {name:?}: unsupported suffix {suffix:?} (expected [.gz|.zlib|.Z|.zst][.final])"
    )]
    Suffix { name: String, suffix: String },
}

/// Parses `<Full|Incr>-<start>-<last>-<unix>[<compression>][.final]`.
///
/// Stricter than upstream where upstream would fail later anyway: numbers must be plain ASCII
/// digits, and an unknown compression suffix is rejected here rather than at fetch time.
pub fn parse_snapshot_name(name: &str) -> Result<SnapshotName, NameError> {
    let mut fields = name.split('-');
    let (Some(kind), Some(start), Some(last), Some(rest), None) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return Err(NameError::Fields { name: name.into() });
    };
    let kind = match kind {
        "Full" => Kind::Full,
        "Incr" => Kind::Delta,
        other => {
            return Err(NameError::Kind {
                name: name.into(),
                kind: other.into(),
            });
        }
    };
    let start_revision = parse_decimal(name, "start revision", start)?;
    let last_revision = parse_decimal(name, "last revision", last)?;
    if start_revision > last_revision {
        return Err(NameError::Range {
            name: name.into(),
            start: start_revision,
            last: last_revision,
        });
    }
    let (unix, suffix) = match rest.find('.') {
        Some(dot) => rest.split_at(dot),
        None => (rest, ""),
    };
    let created_on = parse_decimal(name, "creation time", unix)?;
    let (compression, is_final) = parse_suffix(suffix).ok_or_else(|| NameError::Suffix {
        name: name.into(),
        suffix: suffix.into(),
    })?;
    Ok(SnapshotName {
        kind,
        start_revision,
        last_revision,
        created_on,
        compression,
        is_final,
    })
}

/// `""`, `.final`, `.<ext>`, `.<ext>.final`.
fn parse_suffix(suffix: &str) -> Option<(Compression, bool)> {
    if suffix.is_empty() {
        return Some((Compression::None, false));
    }
    let rest = suffix.strip_prefix('.')?;
    let (ext, is_final) = match rest.strip_suffix(".final") {
        Some(ext) => (ext, true),
        None if rest == "final" => return Some((Compression::None, true)),
        None => (rest, false),
    };
    Compression::from_extension(ext).map(|c| (c, is_final))
}

fn parse_decimal(name: &str, field: &'static str, value: &str) -> Result<i64, NameError> {
    let err = || NameError::Number {
        name: name.into(),
        field,
        value: value.into(),
    };
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err());
    }
    value.parse::<i64>().map_err(|_| err())
}

/// Formats a name exactly as etcd-backup-restore does (`%s-%08d-%08d-%d%s%s`).
pub fn format_snapshot_name(n: &SnapshotName) -> String {
    format!(
        "{}-{:08}-{:08}-{}{}{}",
        n.kind.as_str(),
        n.start_revision,
        n.last_revision,
        n.created_on,
        n.compression.suffix(),
        if n.is_final { ".final" } else { "" }
    )
}

/// What an object path (relative to the store root) turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectKind {
    Snapshot(Snapshot),
    /// A part of a composed/segmented upload (`<name>/<10 digits>`): never restored from.
    Chunk,
    /// Anything else; the string says why it is not a snapshot.
    Unknown(String),
}

/// Classifies an object path relative to the store root.
pub fn classify_object(path: &str, size: Option<u64>) -> ObjectKind {
    let segments: Vec<&str> = path.split('/').collect();
    let (layout, dir, name, chunk) = match segments.as_slice() {
        ["v2", name] => (Layout::V2, "", *name, None),
        ["v2", name, part] => (Layout::V2, "", *name, Some(*part)),
        ["v1", dir, name] => (Layout::V1, *dir, *name, None),
        ["v1", dir, name, part] => (Layout::V1, *dir, *name, Some(*part)),
        [first, ..] if *first != "v1" && *first != "v2" => {
            return ObjectKind::Unknown("not under v1/ or v2/".into());
        }
        _ => return ObjectKind::Unknown("unexpected path depth".into()),
    };
    if layout == Layout::V1 && !is_plain_segment(dir) {
        return ObjectKind::Unknown(format!("bad v1 directory {dir:?}"));
    }
    let parsed = match parse_snapshot_name(name) {
        Ok(parsed) => parsed,
        Err(e) => return ObjectKind::Unknown(e.to_string()),
    };
    if let Some(part) = chunk {
        if part.len() == 10 && part.bytes().all(|b| b.is_ascii_digit()) {
            return ObjectKind::Chunk;
        }
        return ObjectKind::Unknown(format!("object below snapshot {name:?} is not a chunk"));
    }
    ObjectKind::Snapshot(Snapshot {
        name: parsed,
        layout,
        dir: dir.into(),
        snap_name: name.into(),
        path: path.into(),
        size,
        version: None,
        immutable_until: None,
        excluded: false,
    })
}

/// A path segment that cannot walk out of its directory or hide in an odd encoding.
fn is_plain_segment(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains(['\\', '\0'])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(path: &str) -> Snapshot {
        match classify_object(path, None) {
            ObjectKind::Snapshot(s) => s,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn parses_every_suffix_and_final() {
        for c in Compression::ALL {
            for fin in [false, true] {
                let name = SnapshotName {
                    kind: Kind::Full,
                    start_revision: 0,
                    last_revision: 394,
                    created_on: 1795238878,
                    compression: c,
                    is_final: fin,
                };
                let text = format_snapshot_name(&name);
                assert_eq!(parse_snapshot_name(&text), Ok(name.clone()), "{text}");
            }
        }
        let n = parse_snapshot_name("Full-00000000-00000394-1795238878.gz.final").unwrap();
        assert_eq!(n.compression, Compression::Gzip);
        assert!(n.is_final);
        let n = parse_snapshot_name("Full-00000000-00000394-1795238878.final").unwrap();
        assert_eq!(n.compression, Compression::None);
        assert!(n.is_final);
    }

    #[test]
    fn wide_revisions_from_issue_1043() {
        let n = parse_snapshot_name("Incr-1189843863-1189847841-1785034626.gz").unwrap();
        assert_eq!(n.kind, Kind::Delta);
        assert_eq!(n.start_revision, 1_189_843_863);
        assert_eq!(n.last_revision, 1_189_847_841);
        assert_eq!(n.created_on, 1_785_034_626);
        // Formatting keeps the width instead of truncating.
        assert_eq!(
            format_snapshot_name(&n),
            "Incr-1189843863-1189847841-1785034626.gz"
        );
    }

    #[test]
    fn rejects_malformed_names() {
        for bad in [
            "",
            "Full",
            "Full-1-2",
            "Full-1-2-3-4",
            "Chunk-00000000-00000001-1",
            "full-00000000-00000001-1",
            "Full-0000000a-00000001-1",
            "Full-+0000000-00000001-1",
            "Full-00000002-00000001-1",
            "Full-00000000-99999999999999999999-1",
            "Full-00000000-00000001-",
            "Full-00000000-00000001-1.gzip",
            "Full-00000000-00000001-1.gz.final.final",
            "Full-00000000-00000001-1.final.gz",
            "Full-00000000-00000001-1.",
            "Full-00000000-00000001-1x",
            "Full- 0000000-00000001-1",
        ] {
            assert!(parse_snapshot_name(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn classifies_layouts_chunks_and_strangers() {
        let s = snap("v2/Incr-00000011-00000020-1700000000.Z");
        assert_eq!(s.layout, Layout::V2);
        assert_eq!(s.dir, "");
        assert_eq!(s.compression(), Compression::Lzw);
        let s = snap("v1/Backup-1700000000/Full-00000000-00000010-1700000000");
        assert_eq!(s.layout, Layout::V1);
        assert_eq!(s.dir, "Backup-1700000000");
        assert_eq!(s.snap_name, "Full-00000000-00000010-1700000000");

        assert_eq!(
            classify_object("v2/Full-00000000-00000010-1700000000/0000000001", None),
            ObjectKind::Chunk
        );
        assert_eq!(
            classify_object(
                "v1/Backup-1/Full-00000000-00000010-1700000000/0000000031",
                None
            ),
            ObjectKind::Chunk
        );
        for unknown in [
            "v2/README",
            "v3/Full-00000000-00000010-1700000000",
            "Full-00000000-00000010-1700000000",
            "v2/Full-00000000-00000010-1700000000/1",
            "v2/Full-00000000-00000010-1700000000/part",
            "v2/a/b/c",
            "v1/../Full-00000000-00000010-1700000000",
            "v1/./Full-00000000-00000010-1700000000",
            "v1/Full-00000000-00000010-1700000000",
            "v2/../Full-00000000-00000010-1700000000",
            "v2/..",
            "",
        ] {
            assert!(
                matches!(classify_object(unknown, None), ObjectKind::Unknown(_)),
                "{unknown:?}"
            );
        }
    }
}
