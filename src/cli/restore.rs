//! `etcd-restore restore`: a drop-in for `etcdbrctl restore` in existing Job specs.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use etcd_restore::batch::{Purpose, RestoreSettings, SharedReplay, restore_batch};
use etcd_restore::mvcc::bump::Bump;
use etcd_restore::replay::ReplayOptions;
use etcd_restore::restore::{MemberFlags, RestoreOptions, RestoreReport, Targets, restore};
use etcd_restore::snapstore::{FetchArgs, PlanOptions, Store, StoreArgs};

use super::batch::BatchArgs;
use super::metrics::{MetricsArgs, RunMetrics};

#[derive(clap::Args, Debug)]
pub struct RestoreArgs {
    #[command(flatten)]
    store: StoreArgs,

    #[command(flatten)]
    fetch: FetchArgs,

    #[command(flatten)]
    member: MemberArgs,

    /// The data directory to create for the member named by --name (etcdbrctl's default).
    #[arg(
        short = 'd',
        long,
        value_name = "DIR",
        default_value = "default.etcd",
        conflicts_with = "batch"
    )]
    data_dir: PathBuf,

    /// Restore every member of --initial-cluster, each into this path with `{name}` replaced by
    /// the member's name (e.g. `/var/etcd/{name}.etcd`). Overrides --data-dir.
    #[arg(long, value_name = "TEMPLATE", conflicts_with = "batch")]
    data_dir_template: Option<String>,

    /// Write each member's WAL into this directory instead of <data-dir>/member/wal (etcdutl's
    /// --wal-dir; start etcd with the same --wal-dir). With --data-dir-template it must contain
    /// `{name}`. Like the data directory it must be missing or empty unless --force.
    #[arg(long, value_name = "DIR", conflicts_with = "batch")]
    wal_dir: Option<String>,

    #[command(flatten)]
    batch: BatchArgs,

    /// Raise the restored revision by N (etcdutl's --bump-revision): an empty record is written
    /// at the latest revision + N, which etcd then reports as its revision. Requires
    /// --mark-compacted. Use it when restoring to an older point for clients that watch, such
    /// as Kubernetes: N larger than the revisions written since the backup (docs/operations.md).
    #[arg(long, value_name = "N", default_value_t = 0)]
    bump_revision: u64,

    /// Mark the bumped revision as compacted (etcdutl's --mark-compacted): every watch or read
    /// at an older revision is answered "required revision has been compacted", so informers
    /// and watch caches re-list. Required with --bump-revision > 0, refused without it.
    #[arg(long)]
    mark_compacted: bool,

    /// Replace a non-empty data directory. The old one is swapped out atomically and deleted
    /// only after the new one is complete.
    #[arg(long)]
    force: bool,

    /// Restore up to this revision (point in time).
    #[arg(long, value_name = "REVISION", conflicts_with_all = ["to_time", "batch"])]
    to_revision: Option<i64>,

    /// Restore from the snapshots created at or before this time (RFC 3339 or Unix seconds).
    #[arg(long, value_name = "TIME", value_parser = super::parse_time, conflicts_with = "batch")]
    to_time: Option<i64>,

    /// Remove the lease from every restored key, like etcdbrctl (which never re-attaches
    /// leases). By default every key keeps its lease: the base snapshot's leases as they are,
    /// and leases granted after it are granted again (see --unknown-lease-ttl).
    #[arg(long)]
    strip_leases: bool,

    /// Keep the lease IDs of keys whose lease was granted after the base snapshot, but grant no
    /// such lease (the behaviour before leases were granted): the key records equal the
    /// source's byte for byte either way, but these keys then never expire.
    #[arg(long, conflicts_with = "strip_leases")]
    keep_unknown_leases: bool,

    /// TTL of the leases granted for keys whose lease was granted after the base snapshot
    /// (the deltas do not record lease TTLs). Default: the longest TTL among the base's leases,
    /// or 1h when it has none.
    #[arg(long, value_name = "DURATION", value_parser = super::parse_ttl, conflicts_with_all = ["strip_leases", "keep_unknown_leases"])]
    unknown_lease_ttl: Option<i64>,

    /// Which etcdutl/etcdctl output to reproduce byte for byte: 3.5 (also read by 3.4) or 3.4.
    #[arg(long, value_name = "VERSION", default_value = "3.5", value_parser = ["3.4", "3.5"])]
    etcd_version: String,

    /// Machine-readable report on stdout.
    #[arg(long)]
    json: bool,

    #[command(flatten)]
    metrics: MetricsArgs,

    #[command(flatten)]
    ignored: EmbeddedEtcdArgs,
}

/// etcd's bootstrap flags, with etcdbrctl's defaults.
#[derive(clap::Args, Debug, Clone)]
pub struct MemberArgs {
    /// Name of the member to restore.
    #[arg(long, default_value = "default")]
    pub name: String,

    /// The new cluster: `name=peerURL,...` (a name may repeat for several URLs).
    #[arg(long, default_value = "default=http://localhost:2380")]
    pub initial_cluster: String,

    /// Cluster token; it and the peer URLs determine member and cluster IDs.
    #[arg(long, default_value = "etcd-cluster")]
    pub initial_cluster_token: String,

    /// Peer URLs of --name; must match its entries in --initial-cluster.
    #[arg(long, value_name = "URL", default_value = "http://localhost:2380")]
    pub initial_advertise_peer_urls: Vec<String>,
}

impl MemberArgs {
    pub fn flags(&self) -> MemberFlags {
        MemberFlags {
            name: self.name.clone(),
            initial_cluster: self.initial_cluster.clone(),
            initial_cluster_token: self.initial_cluster_token.clone(),
            initial_advertise_peer_urls: self.initial_advertise_peer_urls.clone(),
        }
    }
}

/// etcdbrctl flags of its embedded etcd's restore. The tuning ones are accepted so existing
/// Job specs keep working; there is no embedded etcd here.
#[derive(clap::Args, Debug, Default)]
pub struct EmbeddedEtcdArgs {
    /// Spool downloaded delta snapshots in a fresh directory inside DIR (created with mode 0700
    /// when missing, like etcdbrctl; our spool is removed afterwards) instead of next to the
    /// data directory being built (restore) or in --snapstore-temp-directory (compact).
    #[arg(long, value_name = "DIR")]
    restoration_temp_snapshots_dir: Option<PathBuf>,
    #[arg(long, hide = true)]
    max_call_send_message_size: Option<String>,
    #[arg(long, hide = true)]
    max_request_bytes: Option<String>,
    #[arg(long, hide = true)]
    max_txn_ops: Option<String>,
    #[arg(long, hide = true)]
    embedded_etcd_quota_bytes: Option<String>,
    #[arg(long, hide = true)]
    auto_compaction_mode: Option<String>,
    #[arg(long, hide = true)]
    auto_compaction_retention: Option<String>,
}

impl EmbeddedEtcdArgs {
    /// `--restoration-temp-snapshots-dir`.
    pub fn restoration_dir(&self) -> Option<PathBuf> {
        self.restoration_temp_snapshots_dir.clone()
    }

    /// One notice per flag given.
    pub fn notice(&self) {
        let given = [
            (
                "--max-call-send-message-size",
                &self.max_call_send_message_size,
            ),
            ("--max-request-bytes", &self.max_request_bytes),
            ("--max-txn-ops", &self.max_txn_ops),
            (
                "--embedded-etcd-quota-bytes",
                &self.embedded_etcd_quota_bytes,
            ),
            ("--auto-compaction-mode", &self.auto_compaction_mode),
            (
                "--auto-compaction-retention",
                &self.auto_compaction_retention,
            ),
        ];
        for (flag, v) in given {
            if v.is_some() {
                eprintln!(
                    "notice: {flag} is accepted for etcdbrctl compatibility and ignored (no embedded etcd runs)"
                );
            }
        }
    }
}

pub async fn run(args: RestoreArgs) -> anyhow::Result<ExitCode> {
    let bump = match Bump::from_flags(args.bump_revision, args.mark_compacted) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    args.ignored.notice();
    if let Some(path) = &args.batch.batch {
        // MemberArgs is shared with commands without --batch, so clap cannot say this.
        if args.member.flags() != MemberFlags::default() {
            anyhow::bail!(
                "--name/--initial-cluster*/--initial-advertise-peer-urls cannot be used with --batch: give a member a `memberSet` in the batch file"
            );
        }
        let (batch, schedule) = match args.batch.load(path, Purpose::Restore, &args.store) {
            Ok(b) => b,
            Err(code) => return Ok(code),
        };
        let settings = RestoreSettings {
            replay: SharedReplay {
                verify_hash: !args.fetch.skip_hash_check,
                max_fetchers: args.fetch.max_fetchers as usize,
                strip_leases: args.strip_leases,
                keep_unknown_leases: args.keep_unknown_leases,
                unknown_lease_ttl: args.unknown_lease_ttl,
                memory_budget: args.fetch.memory_budget / schedule.concurrency() as u64,
                restoration_dir: args.ignored.restoration_dir(),
            },
            force: args.force,
            flavor: flavor(&args.etcd_version),
            bump,
        };
        let run = RunMetrics::start("restore");
        let report = restore_batch(&batch, schedule, settings).await;
        return super::batch::finish(&report, args.json, &args.metrics, run).await;
    }
    let run = RunMetrics::start("restore");
    let mut store_label = String::new();
    let result = restore_one(&args, bump, &mut store_label).await;
    run.registry.observe(
        "etcdbr_restoration_duration_seconds",
        "Total latency distribution required to restore the etcd member.",
        &[
            ("restore", "single_node"),
            ("succeeded", if result.is_ok() { "true" } else { "false" }),
        ],
        run.elapsed(),
    );
    run.finish(
        result.is_ok(),
        result.as_ref().ok().map(|r| r.replay.final_revision),
    );
    args.metrics.export(&run, &store_label, "").await;
    let report = result?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(ExitCode::SUCCESS)
}

async fn restore_one(
    args: &RestoreArgs,
    bump: Option<Bump>,
    store_label: &mut String,
) -> anyhow::Result<RestoreReport> {
    args.batch.check_single()?;
    let config = args.store.resolve()?;
    let store = Store::open(&config)?;
    *store_label = store.describe().to_string();
    let mut replay =
        ReplayOptions::new(config.temp_dir.clone()).with_memory_budget(args.fetch.memory_budget);
    replay.verify_hash = !args.fetch.skip_hash_check;
    replay.max_fetchers = args.fetch.max_fetchers as usize;
    replay.strip_leases = args.strip_leases;
    replay.keep_unknown_leases = args.keep_unknown_leases;
    replay.unknown_lease_ttl = args.unknown_lease_ttl;
    replay.restoration_dir = args.ignored.restoration_dir();
    let progress = std::sync::Arc::new(etcd_restore::progress::Progress::new());
    replay.progress = Some(progress.clone());
    let opts = RestoreOptions {
        targets: match &args.data_dir_template {
            Some(t) => Targets::All {
                template: t.clone(),
            },
            None => Targets::One(args.data_dir.clone()),
        },
        members: args.member.flags(),
        plan: PlanOptions {
            to_revision: args.to_revision,
            to_time: args.to_time,
        },
        replay,
        force: args.force,
        flavor: flavor(&args.etcd_version),
        bump,
        wal_dir: args.wal_dir.clone(),
    };
    let ui = super::progress::ProgressUi::start(&progress, "restore");
    let report = restore(&store, &opts).await;
    drop(ui);
    report.with_context(|| format!("restoring from {}", store.describe()))
}

fn flavor(etcd_version: &str) -> wal::RestoreFlavor {
    if etcd_version == "3.4" {
        wal::RestoreFlavor::V3_4
    } else {
        wal::RestoreFlavor::V3_5
    }
}

fn render(r: &RestoreReport) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let p = &r.replay;
    let _ = writeln!(s, "restored from {}", r.store);
    let _ = writeln!(
        s,
        "  base        {} (revision {} by name, {} in its database; {} bytes{})",
        p.base,
        p.base_name_revision,
        p.base_db_revision,
        p.base_db_bytes,
        if p.base_hash_verified {
            ", sha256 verified"
        } else {
            ""
        }
    );
    let _ = writeln!(
        s,
        "  deltas      {} applied, {} skipped ({} bytes of JSON)",
        p.deltas_applied.len(),
        p.deltas_skipped.len(),
        p.delta_json_bytes
    );
    let _ = writeln!(
        s,
        "  events      {} applied in {} revisions, {} already in the base",
        p.apply.events_applied, p.apply.revisions_applied, p.apply.events_skipped
    );
    let _ = writeln!(s, "  revision    {}", p.final_revision);
    if let Some(b) = &r.bumped {
        let _ = writeln!(
            s,
            "  bumped      to revision {} (+{}), marked compacted",
            b.revision, b.amount
        );
    }
    if p.apply.leases_stripped > 0 {
        let _ = writeln!(s, "  leases      {} stripped", p.apply.leases_stripped);
    }
    if p.apply.leases_granted > 0 {
        let _ = writeln!(
            s,
            "  leases      {} granted after the base snapshot, granted again",
            p.apply.leases_granted
        );
    }
    let _ = writeln!(s, "  cluster     {}", r.cluster_id);
    for m in &r.members {
        let _ = writeln!(
            s,
            "  member      {} ({}) -> {}",
            m.name,
            m.member_id,
            m.data_dir.display()
        );
        if let Some(w) = &m.wal_dir {
            let _ = writeln!(s, "  wal         {} -> {}", m.name, w.display());
        }
    }
    let _ = writeln!(s, "  took        {:.2}s", r.seconds);
    s
}
