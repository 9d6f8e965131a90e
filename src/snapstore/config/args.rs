//! The store flags (`--store`, etcdbrctl's `--storage-provider` family) and the fetch flags, as
//! clap parses them; `resolve` turns them into a [`super::StoreConfig`].

use std::path::PathBuf;

/// etcdbrctl's `--min-chunk-size` default and minimum (S3's smallest multipart part).
pub const MIN_CHUNK_SIZE: u64 = 5 * 1024 * 1024;

/// Store flags shared by every command that reads or writes backups.
#[derive(clap::Args, Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreArgs {
    /// Backup store: a directory or file:// URL holding v1/ and/or v2/, s3://bucket/prefix,
    /// gs://bucket/prefix or az://container/prefix.
    #[arg(long, value_name = "URL", conflicts_with = "storage_provider")]
    pub store: Option<String>,

    /// etcdbrctl's way of naming the store: Local, S3, GCS, ABS, OSS, ECS, OCS or Swift.
    #[arg(long, value_name = "PROVIDER", ignore_case = true)]
    pub storage_provider: Option<Provider>,

    /// Bucket/container (etcdbrctl; default from $STORAGE_CONTAINER).
    #[arg(long, value_name = "NAME", env = "STORAGE_CONTAINER")]
    pub store_container: Option<String>,

    /// Prefix inside the bucket: the directory that holds v1/ and v2/.
    #[arg(long, value_name = "PREFIX")]
    pub store_prefix: Option<String>,

    /// Endpoint of an S3-compatible, Azure or GCS service (MinIO, Azurite, ...).
    #[arg(long, value_name = "URL")]
    pub store_endpoint_override: Option<String>,

    /// S3 region (default: from the credentials, $AWS_REGION, or us-east-1).
    #[arg(long, value_name = "REGION")]
    pub store_region: Option<String>,

    /// S3 addressing: path style (`endpoint/bucket/key`, the default; MinIO, ECS, OCS) or
    /// virtual-hosted (`bucket.endpoint/key`; needed by OSS).
    #[arg(long, value_name = "BOOL")]
    pub store_path_style: Option<bool>,

    /// Allow plain http to the store (implied by an http:// endpoint).
    #[arg(long)]
    pub store_allow_http: bool,

    /// Delete objects one by one (for S3-compatible stores without multi-object delete).
    #[arg(long)]
    pub store_disable_bulk_delete: bool,

    /// Also list snapshots withdrawn with `x-etcd-snapshot-exclude=true` (an S3 tag, Azure
    /// blob index tag or GCS metadata entry; etcd-backup-restore's `List(includeAll)`), marked
    /// as excluded. For forensics: a restore normally must not use them.
    #[arg(long)]
    pub include_excluded: bool,

    /// Directory for temporary files (compact's work directory); created with mode 0700 when
    /// missing, like etcdbrctl.
    #[arg(long, value_name = "DIR", default_value = "/tmp")]
    pub snapstore_temp_directory: PathBuf,

    /// Parallel part uploads for multipart uploads.
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_parallel_chunk_uploads: u32,

    /// Part size for multipart uploads (at least 5 MiB).
    #[arg(long, value_name = "BYTES", default_value_t = MIN_CHUNK_SIZE, value_parser = clap::value_parser!(u64).range(MIN_CHUNK_SIZE..))]
    pub min_chunk_size: u64,
}

/// Flags of commands that download and apply deltas (restore, compact, validate).
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct FetchArgs {
    /// Deltas downloaded ahead of the one being applied.
    #[arg(long, value_name = "N", default_value_t = 6, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_fetchers: u32,

    /// Accept a full snapshot without etcd's SHA-256 trailer, and do not check it.
    #[arg(long)]
    pub skip_hash_check: bool,

    /// Memory the job sizes its buffers from: per-key history state, commit batches, sort
    /// runs and upload parts (B, KiB, MiB, GiB). Peak RSS stays near this whatever the size
    /// of the database or of a delta; a smaller budget spills more to the temp directory.
    #[arg(long, value_name = "SIZE", default_value = "64MiB", value_parser = parse_size)]
    pub memory_budget: u64,
}

/// The default `--memory-budget`.
pub const DEFAULT_MEMORY_BUDGET: u64 = 64 << 20;

impl Default for FetchArgs {
    fn default() -> Self {
        FetchArgs {
            max_fetchers: 6,
            skip_hash_check: false,
            memory_budget: DEFAULT_MEMORY_BUDGET,
        }
    }
}

/// `64MiB`, `512KiB`, `1GiB`, `1048576`: a byte count for a flag. At least 16 MiB: below that
/// the fixed costs (the mapped program, the runtime) are most of the budget.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mul) = [
        ("GiB", 1u64 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
        ("B", 1),
    ]
    .iter()
    .find_map(|(u, m)| t.strip_suffix(u).map(|n| (n.trim(), *m)))
    .unwrap_or((t, 1));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size like 64MiB, 1GiB or 1048576"))?;
    let bytes = n
        .checked_mul(mul)
        .ok_or_else(|| format!("{s:?} is too large"))?;
    if bytes < 16 << 20 {
        return Err(format!("{s:?} is below the 16MiB minimum"));
    }
    Ok(bytes)
}

/// etcdbrctl's `--storage-provider` values.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    #[value(name = "Local")]
    Local,
    #[value(name = "S3")]
    S3,
    #[value(name = "GCS")]
    Gcs,
    #[value(name = "ABS")]
    Abs,
    #[value(name = "OSS")]
    Oss,
    #[value(name = "ECS")]
    Ecs,
    #[value(name = "OCS")]
    Ocs,
    #[value(name = "Swift")]
    Swift,
}
