//! Scale table (issue 17): every job of `etcd-restore` on `gen.py bench` inputs of growing size,
//! each under `/usr/bin/time -v` (wall time, CPU time, peak RSS), next to the embedded-etcd
//! restore (etcdbrctl's way: `etcdutl snapshot restore` + etcd + txn replay) on the same data in
//! the same run.
//!
//! ```sh
//! cargo bench --bench scale                              # generates 100 MiB + 30k revisions
//! SCALE_INPUTS=bench-data/k8s-100MiB-30k:bench-data/k8s-1.2GiB-100k cargo bench --bench scale
//! ```
//!
//! Inputs are directories written by `python3 testdata/gen/gen.py bench --out DIR` (a `store/`
//! and its `oracle.json`). Without `SCALE_INPUTS` one is generated once into the target dir
//! (`SCALE_REVISIONS`, default 30000; `SCALE_DB_BYTES`, default 100MiB).
//!
//! Jobs, in this order, each a child process of the release binary:
//! * `restore`: `restore --store STORE --data-dir W/restored`;
//! * `restore-keep-unknown` (only when named in `SCALE_JOBS`): `restore --keep-unknown-leases`
//!   into another dir (removed after it), which does not grant the leases granted after the
//!   base;
//! * `hashkv`: `hashkv --data-dir W/restored`;
//! * `validate`: `validate --mode full --data-dir W/restored`;
//! * `db-check`: `db check W/restored/member/snap/db`;
//! * `compact`: `compact --store W/store` on a hard-linked copy of the store (a local path store);
//! * `embedded`: the embedded-etcd restore of `benches/support/e2e.rs` (peak RSS = etcd's +
//!   the replay client's), skipped with a note when the base DB is larger than
//!   `SCALE_BASELINE_MAX_DB` (default 2GiB; `0` skips it always).
//!
//! Other knobs: `SCALE_JOBS` (comma-separated, default all but `restore-keep-unknown`), `SCALE_WORKDIR` (where the
//! data dirs go; default `$TMPDIR`; each input's is removed after it), `SCALE_OUT` (also write
//! the tables to this file).
//!
//! Checks (the bench fails otherwise): the restored data dirs are at the oracle's final revision
//! and their offline HashKV equals the source etcd's at that revision (when the oracle recorded
//! it); validate and db check exit 0; compact verified its object and named it after the final
//! revision; the embedded-etcd replay ends at the final revision.

#[path = "support/e2e.rs"]
mod e2e;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use e2e::{
    ETCD_VERSION, Measured, R, TIME, embedded_restore, env_or, generate_input, json, mib, os,
    parse_size, run_measured, secs,
};
use serde::Deserialize;
use testkit::EtcdBins;

const JOBS: [&str; 7] = [
    "restore",
    "restore-keep-unknown",
    "hashkv",
    "validate",
    "db-check",
    "compact",
    "embedded",
];

fn main() -> ExitCode {
    e2e::main("scale", bench)
}

/// The parts of oracle.json this bench reads (dumps are skipped unparsed).
#[derive(Deserialize)]
struct OracleHead {
    final_revision: i64,
    #[serde(default)]
    hashkv: Vec<HashKvRec>,
    #[serde(default)]
    objects: Vec<ObjectRec>,
    #[serde(default)]
    bench: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct HashKvRec {
    revision: i64,
    hash: u32,
    compact_revision: i64,
}

#[derive(Deserialize)]
struct ObjectRec {
    kind: String,
    last_revision: i64,
    #[serde(default)]
    db_revision: Option<i64>,
    #[serde(default)]
    body_size: Option<u64>,
    #[serde(default)]
    events: Option<u64>,
}

/// One input and what describes it in the table.
struct Input {
    dir: PathBuf,
    name: String,
    mix: String,
    base_db_bytes: Option<u64>,
    base_keys: Option<u64>,
    revisions: i64,
    deltas: usize,
    delta_events: u64,
    delta_json: Option<u64>,
    delta_json_max: Option<u64>,
    oracle: OracleHead,
}

impl Input {
    fn load(dir: &Path) -> R<Input> {
        let text = std::fs::read(dir.join("oracle.json"))
            .map_err(|e| format!("{}: {e}", dir.join("oracle.json").display()))?;
        let oracle: OracleHead = serde_json::from_slice(&text)?;
        drop(text);
        let base = oracle
            .objects
            .iter()
            .rev()
            .find(|o| o.kind == "Full")
            .ok_or("the oracle lists no full snapshot")?;
        let base_rev = base.db_revision.unwrap_or(base.last_revision);
        let deltas: Vec<&ObjectRec> = oracle
            .objects
            .iter()
            .filter(|o| o.kind == "Incr" && o.last_revision > base_rev)
            .collect();
        let delta_json = deltas.iter().map(|o| o.body_size).sum::<Option<u64>>();
        let delta_json_max = deltas.iter().filter_map(|o| o.body_size).max();
        let bench = oracle.bench.clone().unwrap_or_default();
        Ok(Input {
            dir: dir.to_path_buf(),
            name: dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| dir.display().to_string()),
            mix: bench["mix"].as_str().unwrap_or("?").to_string(),
            base_db_bytes: base.body_size,
            base_keys: bench["base_keys"].as_u64(),
            revisions: oracle.final_revision - base_rev,
            deltas: deltas.len(),
            delta_events: deltas.iter().filter_map(|o| o.events).sum(),
            delta_json,
            delta_json_max,
            oracle,
        })
    }

    /// The source's HashKV at the final revision, if recorded (never compacted: -1).
    fn final_hashkv(&self) -> Option<&HashKvRec> {
        self.oracle
            .hashkv
            .iter()
            .find(|h| h.revision == self.oracle.final_revision)
    }
}

/// A job's outcome: measured, skipped (with why), or failed.
enum Outcome {
    Ran {
        m: Measured,
        /// For the embedded restore: etcd's and the client's share of the RSS.
        detail: String,
    },
    Skipped(String),
}

fn mb(bytes: u64) -> String {
    format!("{:.0} MB", bytes as f64 / 1e6)
}

fn thousands(n: i64) -> String {
    let s = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

fn bench() -> R<()> {
    if !Path::new(TIME).exists() {
        return Err(format!("{TIME} is missing (Debian: apt-get install time)").into());
    }
    let ours_bin = PathBuf::from(env!("CARGO_BIN_EXE_etcd-restore"));
    let me = std::env::current_exe()?;
    let default_jobs: Vec<&str> = JOBS
        .iter()
        .copied()
        .filter(|j| *j != "restore-keep-unknown")
        .collect();
    let jobs: Vec<String> = env_or("SCALE_JOBS", &default_jobs.join(","))
        .split(',')
        .map(|j| j.trim().to_string())
        .filter(|j| !j.is_empty())
        .collect();
    if let Some(bad) = jobs.iter().find(|j| !JOBS.contains(&j.as_str())) {
        return Err(format!("unknown job {bad} in SCALE_JOBS (jobs: {})", JOBS.join(",")).into());
    }
    let baseline_max = parse_size(&env_or("SCALE_BASELINE_MAX_DB", "2GiB"))?;
    let dirs: Vec<PathBuf> = match std::env::var("SCALE_INPUTS") {
        Ok(v) if !v.is_empty() => v.split(':').map(PathBuf::from).collect(),
        _ => vec![generate_input(
            &env_or("SCALE_REVISIONS", "30000"),
            &env_or("SCALE_DB_BYTES", "100MiB"),
        )?],
    };
    let inputs = dirs.iter().map(|d| Input::load(d)).collect::<R<Vec<_>>>()?;
    let bins = if jobs.iter().any(|j| j == "embedded") {
        EtcdBins::get(ETCD_VERSION)
    } else {
        None
    };
    let work_parent = std::env::var("SCALE_WORKDIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir());
    std::fs::create_dir_all(&work_parent)?;

    let mut results: Vec<Vec<(String, Outcome)>> = Vec::new();
    for input in &inputs {
        println!(
            "== {} ({}): base db {}, {} revisions in {} deltas",
            input.name,
            input.dir.display(),
            input.base_db_bytes.map(mb).unwrap_or_else(|| "?".into()),
            thousands(input.revisions),
            input.deltas
        );
        let work_dir = tempfile::Builder::new()
            .prefix("scale-")
            .tempdir_in(&work_parent)?;
        let work = work_dir.path();
        let store = input.dir.join("store");
        let restored = work.join("restored");
        let mut row = Vec::new();
        for job in &jobs {
            println!("{}: {job} ...", input.name);
            let time_file = work.join(format!("{job}.time"));
            let outcome = match job.as_str() {
                "restore" | "restore-keep-unknown" => {
                    let keep = job == "restore-keep-unknown";
                    let dir = if keep {
                        work.join("keep-unknown")
                    } else {
                        restored.clone()
                    };
                    let mut args = os(&[&"restore", &"--store", &store, &"--data-dir", &dir]);
                    if keep {
                        args.push("--keep-unknown-leases".into());
                    }
                    let m = run_measured(&ours_bin, &args, &time_file)?;
                    check_restored(&ours_bin, &dir, input)?;
                    if keep {
                        std::fs::remove_dir_all(&dir)?;
                    }
                    Outcome::Ran {
                        m,
                        detail: String::new(),
                    }
                }
                "hashkv" | "validate" | "db-check" => {
                    if !restored.join("member").exists() {
                        Outcome::Skipped("needs the restore job".into())
                    } else {
                        let db = restored.join("member/snap/db");
                        let args = match job.as_str() {
                            "hashkv" => os(&[&"hashkv", &"--json", &"--data-dir", &restored]),
                            "validate" => {
                                os(&[&"validate", &"--mode", &"full", &"--data-dir", &restored])
                            }
                            _ => os(&[&"db", &"check", &db]),
                        };
                        let m = run_measured(&ours_bin, &args, &time_file)?;
                        if job == "hashkv" {
                            check_hashkv(&json(&m.stdout)?, input)?;
                        }
                        Outcome::Ran {
                            m,
                            detail: String::new(),
                        }
                    }
                }
                "compact" => {
                    let copy = work.join("compact-store");
                    let tmp = work.join("compact-tmp");
                    std::fs::create_dir_all(&tmp)?;
                    link_copy(&store, &copy)?;
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
                        &time_file,
                    )?;
                    check_compact(&json(&m.stdout)?, input)?;
                    let _ = std::fs::remove_dir_all(&copy);
                    Outcome::Ran {
                        m,
                        detail: String::new(),
                    }
                }
                "embedded" => match (&bins, input.base_db_bytes) {
                    (None, _) => Outcome::Skipped(
                        "etcd 3.5.1 is not installed (scripts/install-test-deps)".into(),
                    ),
                    (_, Some(b)) if b > baseline_max => Outcome::Skipped(format!(
                        "base DB {} > SCALE_BASELINE_MAX_DB {}",
                        mb(b),
                        mb(baseline_max)
                    )),
                    (_, None) if baseline_max == 0 => {
                        Outcome::Skipped("SCALE_BASELINE_MAX_DB=0".into())
                    }
                    (Some(bins), _) => embedded(bins, &me, &store, work, input)?,
                },
                _ => unreachable!("jobs are checked above"),
            };
            match &outcome {
                Outcome::Ran { m, detail } => println!(
                    "{}: {job}: {:.2} s wall, {:.2} s CPU, {:.1} MiB peak RSS {detail}",
                    input.name,
                    secs(m.wall),
                    m.cpu,
                    mib(m.rss_kib)
                ),
                Outcome::Skipped(why) => println!("{}: {job}: skipped: {why}", input.name),
            }
            row.push((job.clone(), outcome));
        }
        results.push(row);
        drop(work_dir);
    }

    let tables = render(&inputs, &jobs, &results);
    println!();
    print!("{tables}");
    if let Ok(out) = std::env::var("SCALE_OUT") {
        std::fs::write(&out, &tables)?;
        println!("(tables written to {out})");
    }
    Ok(())
}

/// `cp -al`: a hard-linked copy (compact only adds an object), cheap for GiB stores.
fn link_copy(from: &Path, to: &Path) -> R<()> {
    let st = Command::new("cp").arg("-al").arg(from).arg(to).status()?;
    if !st.success() {
        return Err(format!("cp -al {} {} failed", from.display(), to.display()).into());
    }
    Ok(())
}

/// The restored data dir's revision and offline HashKV, not timed.
fn check_restored(bin: &Path, dir: &Path, input: &Input) -> R<()> {
    let out = Command::new(bin)
        .args(["hashkv", "--json", "--data-dir"])
        .arg(dir)
        .output()?;
    if !out.status.success() {
        return Err(format!(
            "hashkv of the restored dir failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    check_hashkv(&json(&out.stdout)?, input)
}

/// The final revision, and the source's HashKV at it when the oracle has it. (Keys keep their
/// lease IDs, also those of leases granted after the base, so the records are the source's.
/// Before 4074bff a default restore dropped those, and only `--keep-unknown-leases` matched.)
fn check_hashkv(h: &serde_json::Value, input: &Input) -> R<()> {
    let rev = h["current_revision"].as_i64().unwrap_or(-1);
    if rev != input.oracle.final_revision {
        return Err(format!(
            "{}: restored revision {rev}, the oracle's final revision is {}",
            input.name, input.oracle.final_revision
        )
        .into());
    }
    match input.final_hashkv() {
        Some(o) => {
            let (hash, compact) = (
                h["hash"].as_u64().unwrap_or(u64::MAX),
                h["compact_revision"].as_i64().unwrap_or(i64::MIN),
            );
            if compact != o.compact_revision || hash != u64::from(o.hash) {
                return Err(format!(
                    "{}: hashkv {hash} (compact revision {compact}) at revision {rev}, the source \
                     etcd said {} (compact revision {})",
                    input.name, o.hash, o.compact_revision
                )
                .into());
            }
            println!(
                "check: revision {rev} and hashkv {hash} as the source etcd (compact revision {compact})"
            );
        }
        None => println!("check: revision {rev} (the oracle has no hashkv at it)"),
    }
    Ok(())
}

fn check_compact(report: &serde_json::Value, input: &Input) -> R<()> {
    let object = report["object"].as_str().unwrap_or("");
    let name = object.rsplit('/').next().unwrap_or("");
    let rev: Option<i64> = name.split('-').nth(2).and_then(|r| r.parse().ok());
    if report["verified"] != true || rev != Some(input.oracle.final_revision) {
        return Err(format!(
            "{}: compact wrote {object} (verified: {}), expected a verified full at revision {}",
            input.name, report["verified"], input.oracle.final_revision
        )
        .into());
    }
    println!("check: compact wrote {object}, verified");
    Ok(())
}

/// The embedded-etcd restore; wall time from the fetch to etcd's exit, peak RSS = etcd's +
/// the replay client's (the fetch child's is reported in the detail).
fn embedded(bins: &EtcdBins, me: &Path, store: &Path, work: &Path, input: &Input) -> R<Outcome> {
    let t0 = Instant::now();
    let store_s = store.to_string_lossy().into_owned();
    let theirs = embedded_restore(bins, me, &store_s, work, "embedded")?;
    let mut etcd = theirs.etcd;
    let (etcd_rss, etcd_cpu) = etcd.stop()?;
    let wall = t0.elapsed();
    let replay = json(&theirs.replay.stdout)?;
    let rev = replay["revision"].as_i64().unwrap_or(-1);
    if rev != input.oracle.final_revision {
        return Err(format!(
            "{}: the embedded-etcd replay ended at revision {rev}, the oracle's final revision is {}",
            input.name, input.oracle.final_revision
        )
        .into());
    }
    let _ = std::fs::remove_dir_all(work.join("embedded"));
    let detail = format!(
        "(etcd {:.0} + client {:.0}; fetch+etcdutl {:.1} s, start {:.1} s, replay {:.1} s of {} txns)",
        mib(etcd_rss),
        mib(theirs.replay.rss_kib),
        secs(theirs.restored),
        secs(theirs.started),
        secs(theirs.replayed),
        replay["txns"]
    );
    Ok(Outcome::Ran {
        m: Measured {
            wall,
            rss_kib: etcd_rss + theirs.replay.rss_kib,
            cpu: theirs.fetch.cpu + etcd_cpu + theirs.replay.cpu,
            stdout: Vec::new(),
        },
        detail,
    })
}

fn render(inputs: &[Input], jobs: &[String], results: &[Vec<(String, Outcome)>]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| input | mix | base DB | base keys | revisions of deltas | deltas | delta JSON (largest) |"
    );
    let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|");
    for i in inputs {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} ({} events) | {} | {} ({}) |",
            i.name,
            i.mix,
            i.base_db_bytes.map(mb).unwrap_or_else(|| "?".into()),
            i.base_keys
                .map(|k| thousands(k as i64))
                .unwrap_or_else(|| "?".into()),
            thousands(i.revisions),
            thousands(i.delta_events as i64),
            i.deltas,
            i.delta_json.map(mb).unwrap_or_else(|| "?".into()),
            i.delta_json_max.map(mb).unwrap_or_else(|| "?".into()),
        );
    }
    let _ = writeln!(s);
    let _ = write!(s, "| input |");
    for j in jobs {
        let _ = write!(s, " {} |", job_title(j));
    }
    let _ = writeln!(s);
    let _ = write!(s, "|---|");
    for _ in jobs {
        let _ = write!(s, "---:|");
    }
    let _ = writeln!(s);
    for (i, row) in inputs.iter().zip(results) {
        let _ = write!(s, "| {} |", i.name);
        for (_, o) in row {
            let cell = match o {
                Outcome::Ran { m, .. } => {
                    format!("{:.2} s / {:.1} MiB", secs(m.wall), mib(m.rss_kib))
                }
                Outcome::Skipped(_) => "skipped".to_string(),
            };
            let _ = write!(s, " {cell} |");
        }
        let _ = writeln!(s);
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "Cells: wall s / peak RSS MiB (GNU time). Details:");
    let _ = writeln!(s);
    let _ = writeln!(s, "| input | job | wall s | CPU s | peak RSS MiB | note |");
    let _ = writeln!(s, "|---|---|---:|---:|---:|---|");
    for (i, row) in inputs.iter().zip(results) {
        for (job, o) in row {
            let _ = match o {
                Outcome::Ran { m, detail } => writeln!(
                    s,
                    "| {} | {} | {:.2} | {:.2} | {:.1} | {} |",
                    i.name,
                    job_title(job),
                    secs(m.wall),
                    m.cpu,
                    mib(m.rss_kib),
                    detail
                ),
                Outcome::Skipped(why) => writeln!(
                    s,
                    "| {} | {} | | | | skipped: {why} |",
                    i.name,
                    job_title(job)
                ),
            };
        }
    }
    s
}

fn job_title(job: &str) -> &str {
    match job {
        "restore" => "restore",
        "restore-keep-unknown" => "restore --keep-unknown-leases",
        "hashkv" => "hashkv",
        "validate" => "validate --mode full",
        "db-check" => "db check",
        "compact" => "compact",
        "embedded" => "embedded-etcd restore",
        other => other,
    }
}
