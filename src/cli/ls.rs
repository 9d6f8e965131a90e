//! `etcd-restore ls`: the snapshots in a store and the plan a restore would follow.

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::Context as _;
use etcd_restore::snapstore::{Listing, Plan, PlanOptions, Snapshot, Store, StoreArgs, plan};

#[derive(clap::Args, Debug)]
pub struct LsArgs {
    #[command(flatten)]
    store: StoreArgs,

    /// Machine-readable output (one JSON document on stdout).
    #[arg(long)]
    json: bool,

    /// Plan a restore up to this revision.
    #[arg(long, value_name = "REVISION")]
    to_revision: Option<i64>,

    /// Plan a restore from the snapshots created at or before this time (RFC 3339 or Unix
    /// seconds).
    #[arg(long, value_name = "TIME", value_parser = super::parse_time)]
    to_time: Option<i64>,
}

#[derive(serde::Serialize)]
struct Output<'a> {
    store: &'a str,
    snapshots: &'a [Snapshot],
    chunks: u64,
    ignored: &'a [etcd_restore::snapstore::IgnoredObject],
    plan: Option<&'a Plan>,
    error: Option<String>,
}

pub async fn run(args: LsArgs) -> anyhow::Result<ExitCode> {
    let config = args.store.resolve()?;
    let store = Store::open(&config)?;
    let listing = store
        .list_snapshots()
        .await
        .with_context(|| format!("listing {}", store.describe()))?;
    let options = PlanOptions {
        to_revision: args.to_revision,
        to_time: args.to_time,
    };
    let planned = plan(&listing.snapshots, options);
    let (plan_ok, error) = match &planned {
        Ok(p) => (Some(p), None),
        Err(e) => (None, Some(e.to_string())),
    };
    if args.json {
        let out = Output {
            store: store.describe(),
            snapshots: &listing.snapshots,
            chunks: listing.chunks,
            ignored: &listing.ignored,
            plan: plan_ok,
            error: error.clone(),
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print!("{}", render_text(store.describe(), &listing, plan_ok));
    }
    match error {
        None => Ok(ExitCode::SUCCESS),
        Some(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(2))
        }
    }
}

fn utc(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| unix.to_string())
}

/// What `ls` says below a snapshot about its version, immutability and exclusion.
fn immutability_note(snap: &Snapshot) -> Option<String> {
    let mut parts = Vec::new();
    if snap.excluded {
        parts.push(
            "EXCLUDED (x-etcd-snapshot-exclude=true; listed for --include-excluded only)"
                .to_string(),
        );
    }
    if let Some(until) = snap.immutable_until {
        let now = chrono::Utc::now().timestamp();
        parts.push(if until > now {
            format!("immutable until {}", utc(until))
        } else {
            format!("immutability ended {}", utc(until))
        });
    }
    if let Some(v) = &snap.version {
        parts.push(format!("version {v}"));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

fn render_text(store: &str, listing: &Listing, plan: Option<&Plan>) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "store: {store}");
    let _ = writeln!(s, "snapshots: {}", listing.snapshots.len());
    let _ = writeln!(
        s,
        "  {:<4} {:>12} {:>12}  {:<20}  {:<5} {:<5} {:<2}  path",
        "kind", "start", "last", "created (UTC)", "codec", "final", "v"
    );
    for snap in &listing.snapshots {
        let _ = writeln!(
            s,
            "  {:<4} {:>12} {:>12}  {:<20}  {:<5} {:<5} {:<2}  {}",
            snap.kind().as_str(),
            snap.start_revision(),
            snap.last_revision(),
            utc(snap.created_on()),
            snap.compression().as_str(),
            if snap.is_final() { "yes" } else { "" },
            match snap.layout {
                etcd_restore::snapstore::Layout::V1 => "v1",
                etcd_restore::snapstore::Layout::V2 => "v2",
            },
            snap.path
        );
        if let Some(note) = immutability_note(snap) {
            let _ = writeln!(s, "        {note}");
        }
    }
    if listing.chunks > 0 || !listing.ignored.is_empty() {
        let _ = writeln!(
            s,
            "ignored: {} chunk objects, {} other objects",
            listing.chunks,
            listing.ignored.len()
        );
        for o in &listing.ignored {
            let _ = writeln!(s, "  {} ({})", o.path, o.reason);
        }
    }
    if let Some(p) = plan {
        let _ = writeln!(s, "plan:");
        let _ = writeln!(
            s,
            "  base   {} (revision {} by name)",
            p.base.path,
            p.base.last_revision()
        );
        for d in &p.deltas {
            let mut line = format!(
                "  delta  {} ({}..={})",
                d.snapshot.path,
                d.snapshot.start_revision(),
                d.snapshot.last_revision()
            );
            if let Some(r) = d.skip_through_revision {
                let _ = write!(line, ", skip events through {r}");
            }
            for v in &d.verify_with {
                let _ = write!(line, ", check against {}", v.path);
            }
            let _ = writeln!(s, "{line}");
        }
        for k in &p.skipped {
            let _ = writeln!(s, "  skip   {} ({})", k.snapshot.path, k.reason);
        }
        match p.stop_at_revision {
            Some(r) => {
                let _ = writeln!(s, "  target revision {} (stop inside the last delta)", r);
            }
            None => {
                let _ = writeln!(s, "  target revision {}", p.target_revision);
            }
        }
    }
    s
}
