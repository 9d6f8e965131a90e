//! Speed to the floor (issue 18): restore and compact next to their I/O-and-codec floor and to
//! the embedded-etcd way, on the same data in the same run, with the ratios.
//!
//! ```sh
//! cargo bench --bench speed                                  # generates 100 MiB + 30k revisions
//! SPEED_INPUTS=bench-data/k8s-100MiB-30k:bench-data/k8s-1.2GiB-100k cargo bench --bench speed
//! ```
//!
//! Inputs are directories written by `python3 testdata/gen/gen.py bench --out DIR` (a `store/`
//! of a real etcd 3.5.1 in etcd-backup-restore's format). Without `SPEED_INPUTS` one is generated
//! once into the target dir (`SPEED_REVISIONS`, default 30000; `SPEED_DB_BYTES`, default 100MiB).
//!
//! Per input, every process under `/usr/bin/time -v` (wall time, peak RSS):
//! * restore: `etcd-restore restore` and the restore floor (`support/floor.rs`: decompress and
//!   hash-check the base and the deltas on two threads, write the base database grown to the
//!   restored database's size, fsync), `SPEED_RUNS` times each (default 3), alternating;
//! * compact: `etcd-restore compact` on a hard-linked copy of the store and the compaction floor
//!   (the same inputs, then hash and compress our output database on every core into a file,
//!   fsync), alternating the same way;
//! * embedded etcd, once: etcdbrctl's way (`support/e2e.rs`: `etcdutl snapshot restore`, etcd
//!   3.5.1, every revision replayed as one txn through the gRPC API), then for compaction
//!   `etcdctl compact --physical`, `defrag`, `snapshot save` and gzip. Its peak RSS is etcd's
//!   over the whole run plus the replay client's. Skipped for a base database over
//!   `SPEED_EMBEDDED_MAX_DB` (default 2GiB; `0` skips it always).
//!
//! The table gives the medians; `SPEED_OUT` also writes it to a file. Checks (the bench fails
//! otherwise): the restore reaches the plan's target revision with every delta applied, the
//! floor read the same deltas, the compacted object is named after the target revision, and
//! the embedded replay ends at the same revision.

#[path = "support/e2e.rs"]
mod e2e;
#[path = "support/floor.rs"]
mod floor;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use e2e::{
    ETCD_VERSION, Measured, R, TIME, embedded_compact, embedded_restore, env_or, generate_input,
    json, make_plan, mib, open_store, os, parse_size, run_measured, runtime, secs,
};
use testkit::EtcdBins;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    match floor::role(&args) {
        Some(Ok(())) => ExitCode::SUCCESS,
        Some(Err(e)) => {
            eprintln!("speed: floor: {e}");
            ExitCode::FAILURE
        }
        None => e2e::main("speed", bench),
    }
}

/// One side's runs of a job.
#[derive(Default)]
struct Runs {
    wall: Vec<f64>,
    rss_kib: Vec<u64>,
}

impl Runs {
    fn push(&mut self, m: &Measured) {
        self.wall.push(secs(m.wall));
        self.rss_kib.push(m.rss_kib);
    }
    fn wall(&self) -> f64 {
        median(&self.wall)
    }
    fn rss_mib(&self) -> f64 {
        mib(self.rss_kib.iter().copied().max().unwrap_or(0))
    }
    fn spread(&self) -> String {
        let min = self.wall.iter().copied().fold(f64::INFINITY, f64::min);
        let max = self.wall.iter().copied().fold(0.0, f64::max);
        format!("{:.2} ({min:.2}–{max:.2})", self.wall())
    }
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn run_cmd(cmd: &mut Command) -> R<()> {
    let st = cmd.status()?;
    if !st.success() {
        return Err(format!("{cmd:?} failed: {st}").into());
    }
    Ok(())
}

/// The rows of one input's table.
struct Row {
    job: &'static str,
    floor: Runs,
    ours: Runs,
    embedded: Option<(f64, f64)>,
}

fn bench() -> R<()> {
    if !Path::new(TIME).exists() {
        return Err(format!("{TIME} is missing (Debian: apt-get install time)").into());
    }
    let ours_bin = PathBuf::from(env!("CARGO_BIN_EXE_etcd-restore"));
    let me = std::env::current_exe()?;
    let runs: usize = env_or("SPEED_RUNS", "3").parse()?;
    let embedded_max = parse_size(&env_or("SPEED_EMBEDDED_MAX_DB", "2GiB"))?;
    let inputs: Vec<PathBuf> = match std::env::var("SPEED_INPUTS") {
        Ok(list) => list.split(':').map(PathBuf::from).collect(),
        Err(_) => vec![generate_input(
            &env_or("SPEED_REVISIONS", "30000"),
            &env_or("SPEED_DB_BYTES", "100MiB"),
        )?],
    };
    let work_parent = std::env::var("SPEED_WORKDIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir());
    let rt = runtime()?;
    let mut out = String::new();
    for input in &inputs {
        let store = input.join("store");
        let store_s = store.to_string_lossy().into_owned();
        let plan = rt.block_on(async { make_plan(&open_store(&store_s)?).await })?;
        let work_dir = tempfile::Builder::new()
            .prefix("speed-")
            .tempdir_in(&work_parent)?;
        let work = work_dir.path();
        let name = input
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        println!(
            "== {name}: base {}, {} deltas, target revision {}",
            plan.base.path,
            plan.deltas.len(),
            plan.target_revision
        );

        // Restore: ours, then the floor sized by what ours wrote.
        let mut restore = Row {
            job: "restore",
            floor: Runs::default(),
            ours: Runs::default(),
            embedded: None,
        };
        let data_dir = work.join("restored");
        let mut report = serde_json::Value::Null;
        for i in 0..runs {
            let _ = std::fs::remove_dir_all(&data_dir);
            let m = run_measured(
                &ours_bin,
                &os(&[
                    &"restore",
                    &"--store",
                    &store,
                    &"--data-dir",
                    &data_dir,
                    &"--json",
                ]),
                &work.join("restore.time"),
            )?;
            report = json(&m.stdout)?;
            let r = &report["replay"];
            if r["final_revision"].as_i64() != Some(plan.target_revision)
                || r["deltas_applied"].as_array().map(Vec::len) != Some(plan.deltas.len())
            {
                return Err(format!(
                    "restore did not reach revision {} with {} deltas: {r}",
                    plan.target_revision,
                    plan.deltas.len()
                )
                .into());
            }
            restore.ours.push(&m);
            let output = std::fs::metadata(data_dir.join("member/snap/db"))?.len();
            let f = run_measured(
                &me,
                &os(&[&"--floor-restore", &store, &output.to_string(), &work]),
                &work.join("floor.time"),
            )?;
            let fj = json(&f.stdout)?;
            if fj["deltas"].as_u64() != Some(plan.deltas.len() as u64)
                || fj["delta_json_bytes"] != report["replay"]["delta_json_bytes"]
            {
                return Err(format!("the floor read other deltas than restore did: {fj}").into());
            }
            restore.floor.push(&f);
            println!(
                "restore run {}: ours {:.2} s, floor {:.2} s",
                i + 1,
                secs(m.wall),
                secs(f.wall)
            );
        }
        let base_db_bytes = report["replay"]["base_db_bytes"].as_u64().unwrap_or(0);
        let delta_json_bytes = report["replay"]["delta_json_bytes"].as_u64().unwrap_or(0);
        let restored_bytes = std::fs::metadata(data_dir.join("member/snap/db"))?.len();
        std::fs::remove_dir_all(&data_dir)?;

        // Compact: ours on a hard-linked copy each run (it adds an object), then the floor on
        // our output database.
        let mut compact = Row {
            job: "compact",
            floor: Runs::default(),
            ours: Runs::default(),
            embedded: None,
        };
        let output_db = work.join("compacted.db");
        for i in 0..runs {
            let copy = work.join("store-copy");
            let tmp = work.join("compact-tmp");
            let _ = std::fs::remove_dir_all(&copy);
            run_cmd(Command::new("cp").arg("-al").arg(&store).arg(&copy))?;
            std::fs::create_dir_all(&tmp)?;
            let m = run_measured(
                &ours_bin,
                &os(&[
                    &"compact",
                    &"--store",
                    &copy,
                    &"--snapstore-temp-directory",
                    &tmp,
                    &"--json",
                ]),
                &work.join("compact.time"),
            )?;
            let cj = json(&m.stdout)?;
            let object = cj["object"]
                .as_str()
                .ok_or("compact named no object")?
                .to_string();
            let parsed = etcd_restore::snapstore::parse_snapshot_name(
                object.rsplit('/').next().unwrap_or_default(),
            )?;
            if parsed.last_revision != plan.target_revision {
                return Err(format!(
                    "compact wrote {object}, not revision {}",
                    plan.target_revision
                )
                .into());
            }
            if i == 0 {
                let f = std::fs::File::open(copy.join(&object))?;
                let mut db = std::fs::File::create(&output_db)?;
                etcd_restore::snapstore::decompress_to(parsed.compression, f, &object, &mut db)?;
                // Drop the trailer: the floor hashes the database and appends its own.
                let len = db.metadata()?.len();
                db.set_len(len.saturating_sub(32))?;
            }
            compact.ours.push(&m);
            std::fs::remove_dir_all(&copy)?;
            let _ = std::fs::remove_dir_all(&tmp);
            let f = run_measured(
                &me,
                &os(&[&"--floor-compact", &store, &output_db, &work]),
                &work.join("floor.time"),
            )?;
            compact.floor.push(&f);
            println!(
                "compact run {}: ours {:.2} s, floor {:.2} s",
                i + 1,
                secs(m.wall),
                secs(f.wall)
            );
        }
        let compacted_bytes = std::fs::metadata(&output_db)?.len();
        std::fs::remove_file(&output_db)?;

        // The embedded-etcd way, once: restore, then compaction on the same etcd.
        let mut embedded_note = String::new();
        if base_db_bytes > embedded_max || embedded_max == 0 {
            embedded_note = format!(
                "embedded etcd skipped: base database {} MB > SPEED_EMBEDDED_MAX_DB",
                base_db_bytes / 1_000_000
            );
        } else {
            let bins = EtcdBins::get(ETCD_VERSION)
                .ok_or("etcd 3.5.1 is not installed (scripts/install-test-deps)")?;
            println!("embedded etcd: restore + replay ...");
            let mut e = embedded_restore(&bins, &me, &store_s, work, "embedded")?;
            let revision = json(&e.replay.stdout)?["revision"]
                .as_i64()
                .ok_or("the replay client printed no revision")?;
            if revision != plan.target_revision {
                return Err(format!(
                    "the embedded replay ended at {revision}, not {}",
                    plan.target_revision
                )
                .into());
            }
            let restore_wall = secs(e.restored + e.started + e.replayed);
            println!("embedded etcd: compact + defrag + snapshot save + gzip ...");
            let c = embedded_compact(&e.etcd, revision, work, "embedded")?;
            let (etcd_rss, _) = e.etcd.stop()?;
            let rss = mib(etcd_rss + e.replay.rss_kib);
            restore.embedded = Some((restore_wall, rss));
            compact.embedded = Some((restore_wall + secs(c.total()), rss));
        }

        let _ = writeln!(out, "\n### {name}\n");
        let _ = writeln!(
            out,
            "Base database {:.0} MB ({} stored), {} deltas with {:.0} MB of JSON, revisions up to {}; restored database {:.0} MB, compacted {:.0} MB. Medians of {runs} runs (min–max); embedded etcd once.\n",
            base_db_bytes as f64 / 1e6,
            plan.base.path,
            plan.deltas.len(),
            delta_json_bytes as f64 / 1e6,
            plan.target_revision,
            restored_bytes as f64 / 1e6,
            compacted_bytes as f64 / 1e6,
        );
        let _ = writeln!(
            out,
            "| job | floor s | etcd-restore s | embedded etcd s | ours / floor | embedded / ours | peak RSS MiB: floor / ours / embedded |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---|");
        for row in [&restore, &compact] {
            let (emb, emb_ratio, emb_rss) = match row.embedded {
                Some((w, rss)) => (
                    format!("{w:.2}"),
                    format!("{:.1}×", w / row.ours.wall()),
                    format!("{rss:.0}"),
                ),
                None => ("–".into(), "–".into(), "–".into()),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {emb} | {:.2}× | {emb_ratio} | {:.1} / {:.1} / {emb_rss} |",
                row.job,
                row.floor.spread(),
                row.ours.spread(),
                row.ours.wall() / row.floor.wall(),
                row.floor.rss_mib(),
                row.ours.rss_mib(),
            );
        }
        if !embedded_note.is_empty() {
            let _ = writeln!(out, "\n{embedded_note}");
        }
    }
    println!("{out}");
    if let Ok(path) = std::env::var("SPEED_OUT") {
        std::fs::write(&path, &out)?;
    }
    Ok(())
}
