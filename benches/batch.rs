//! `restore --batch`: 8 small backups restored with `--parallel 2` next to the same batch in
//! listed order (one at a time), in the same run (issue 10).
//!
//! ```sh
//! cargo bench --bench batch                      # generates one small backup (gen.py, cached)
//! BATCH_BENCH_INPUT=DIR cargo bench --bench batch  # DIR holds store/ (gen.py bench --out)
//! ```
//!
//! The generated backup (default 10,000 revisions on a 16 MiB base; `BATCH_BENCH_REVISIONS`,
//! `BATCH_BENCH_DB_BYTES`) is copied under 8 store prefixes, one per alias: 8 independent
//! stores of equal size, so the two schedules do the same work. Each schedule runs
//! `BATCH_BENCH_ROUNDS` times (default 3), alternating, into fresh data dirs; the median wall
//! time of each is compared. Check (the bench fails otherwise): every member of every run
//! succeeds, reaches the plan's revision, and all 8 data dirs have the same offline HashKV.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

type R<T> = Result<T, Box<dyn std::error::Error>>;

const MEMBERS: usize = 8;
const PARALLEL: usize = 2;

fn main() -> ExitCode {
    match bench() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("batch bench: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_etcd-restore")
}

/// `$BATCH_BENCH_INPUT`, else a backup generated once with gen.py (cached under target/).
fn input_dir() -> R<PathBuf> {
    if let Ok(dir) = std::env::var("BATCH_BENCH_INPUT") {
        return Ok(PathBuf::from(dir));
    }
    let root = testkit::deps::workspace_root();
    let revisions = env_or("BATCH_BENCH_REVISIONS", "10000");
    let db_bytes = env_or("BATCH_BENCH_DB_BYTES", "16MiB");
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target"));
    let dir = target.join(format!("batch-bench-input-{revisions}-{db_bytes}"));
    if dir.join("oracle.json").exists() {
        println!("input: {} (generated earlier)", dir.display());
        return Ok(dir);
    }
    println!("generating one backup: {revisions} revisions, {db_bytes} base (gen.py bench)");
    let _ = std::fs::remove_dir_all(&dir);
    let status = Command::new("python3")
        .arg(root.join("testdata/gen/gen.py"))
        .args(["bench", "--version", "3.5.1", "--revisions", &revisions])
        .args(["--db-bytes", &db_bytes, "--out"])
        .arg(&dir)
        .status()?;
    if !status.success() {
        return Err(format!("gen.py bench failed: {status}").into());
    }
    Ok(dir)
}

fn copy_dir(from: &Path, to: &Path) -> R<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let target = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &target)?;
        } else {
            std::fs::copy(e.path(), &target)?;
        }
    }
    Ok(())
}

fn batch_text(out: &str, maintain_order: bool) -> String {
    let mut s = format!("defaults:\n  store: stores\nmaintainOrder: {maintain_order}\nmembers:\n");
    for i in 0..MEMBERS {
        s.push_str(&format!(
            "  - alias: m{i}\n    prefix: m{i}\n    dataDir: {out}/m{i}.etcd\n"
        ));
    }
    s
}

/// One batch restore; returns its wall time and the final revision of every member.
fn run_batch(work: &Path, name: &str, maintain_order: bool) -> R<(f64, Vec<i64>)> {
    let out = work.join(name);
    let _ = std::fs::remove_dir_all(&out);
    let file = work.join(format!("{name}.yaml"));
    std::fs::write(&file, batch_text(name, maintain_order))?;
    let mut cmd = Command::new(bin());
    cmd.args(["restore", "--json", "--batch"]).arg(&file);
    if !maintain_order {
        cmd.args(["--parallel", &PARALLEL.to_string()]);
    }
    let t = Instant::now();
    let o = cmd.output()?;
    let wall = t.elapsed().as_secs_f64();
    if !o.status.success() {
        return Err(format!(
            "{name}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
        .into());
    }
    let v: serde_json::Value = serde_json::from_slice(&o.stdout)?;
    let revs = v["members"]
        .as_array()
        .ok_or("no members in the report")?
        .iter()
        .map(|m| {
            m["detail"]["replay"]["final_revision"]
                .as_i64()
                .unwrap_or(-1)
        })
        .collect();
    Ok((wall, revs))
}

fn offline_hashkv(dir: &Path) -> R<String> {
    let o = Command::new(bin())
        .args(["hashkv", "--json", "--data-dir"])
        .arg(dir)
        .output()?;
    if !o.status.success() {
        return Err(format!(
            "hashkv {}: {}",
            dir.display(),
            String::from_utf8_lossy(&o.stderr)
        )
        .into());
    }
    let v: serde_json::Value = serde_json::from_slice(&o.stdout)?;
    Ok(v["hash"].to_string())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn bench() -> R<()> {
    let input = input_dir()?;
    let rounds: usize = env_or("BATCH_BENCH_ROUNDS", "3").parse()?;
    let work = tempfile::Builder::new()
        .prefix("batch-bench-")
        .tempdir_in(std::env::var("BATCH_BENCH_WORKDIR").unwrap_or_else(|_| "/tmp".into()))?;
    for i in 0..MEMBERS {
        copy_dir(
            &input.join("store"),
            &work.path().join("stores").join(format!("m{i}")),
        )?;
    }
    let want = {
        let o = Command::new(bin())
            .args(["ls", "--json", "--store"])
            .arg(work.path().join("stores/m0"))
            .output()?;
        let v: serde_json::Value = serde_json::from_slice(&o.stdout)?;
        v["plan"]["target_revision"].as_i64().ok_or("ls: no plan")?
    };
    println!(
        "{MEMBERS} backups of {} (target revision {want}), {rounds} rounds",
        input.display()
    );
    let (mut seq, mut par) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        for (name, ordered) in [("seq", true), ("par", false)] {
            let (wall, revs) = run_batch(work.path(), name, ordered)?;
            if revs.len() != MEMBERS || revs.iter().any(|r| *r != want) {
                return Err(format!("{name}: final revisions {revs:?}, want {want}").into());
            }
            let hashes = (0..MEMBERS)
                .map(|i| offline_hashkv(&work.path().join(name).join(format!("m{i}.etcd"))))
                .collect::<R<Vec<_>>>()?;
            if hashes.windows(2).any(|w| w[0] != w[1]) {
                return Err(format!("{name}: members' hashkv differ: {hashes:?}").into());
            }
            println!("round {round}: {name} {wall:.2}s");
            if ordered { &mut seq } else { &mut par }.push(wall);
        }
    }
    let (s, p) = (median(seq), median(par));
    println!("sequential (maintainOrder: true)      median {s:.2}s");
    println!("parallel   (--parallel {PARALLEL})            median {p:.2}s");
    println!("speedup {:.2}x", s / p);
    Ok(())
}
