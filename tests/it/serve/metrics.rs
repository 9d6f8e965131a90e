//! Metrics of one-shot runs: `--metrics-file` (textfile collector) and `--pushgateway` (a real
//! Prometheus Pushgateway on 127.0.0.1). The numbers are checked against the sample's oracle
//! (made by real etcd), and a failed run must say so in its metrics too.

use std::path::Path;
use std::process::{Command, Output};

use testkit::pushgateway::PushgatewayServer;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_etcd-restore"))
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run etcd-restore")
}

/// `etcd-restore ARGS --store STORE --data-dir DATA --metrics-file PROM`.
fn with_metrics_file(args: &[&str], store: &Path, data: &Path, prom: &Path) -> Output {
    run(bin()
        .args(args)
        .arg("--store")
        .arg(store)
        .arg("--data-dir")
        .arg(data)
        .arg("--metrics-file")
        .arg(prom))
}

fn sample() -> (std::path::PathBuf, testkit::Oracle) {
    let dir = testkit::deps::testdata_dir().join("sample");
    let oracle = testkit::Oracle::load(&dir.join("oracle.json")).expect("sample oracle");
    (dir.join("store"), oracle)
}

fn copy_dir(from: &Path, to: &Path) {
    testkit::tree::copy_dir(from, to).unwrap();
}

/// The value of the first sample line `name{labels…} value` whose labels include `want`.
fn value(text: &str, name: &str, want: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (series, v) = l.rsplit_once(' ')?;
        let (n, labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if n != name {
            return None;
        }
        want.iter()
            .all(|(k, val)| labels.split(',').any(|kv| kv == format!("{k}=\"{val}\"")))
            .then(|| v.parse().ok())?
    })
}

#[test]
fn restore_and_validate_write_metrics_files() {
    let (store, oracle) = sample();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("sample.etcd");
    let prom = tmp.path().join("restore.prom");
    let out = with_metrics_file(&["restore"], &store, &data, &prom);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&prom).expect("metrics file");
    let ok = [("succeeded", "true")];
    assert_eq!(
        value(&text, "etcdbr_restoration_duration_seconds_count", &ok),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(&text, "etcd_restore_revision", &[("command", "restore")]),
        Some(oracle.final_revision as f64),
        "{text}"
    );
    assert!(
        value(
            &text,
            "etcd_restore_run_last_success_timestamp_seconds",
            &[("command", "restore")]
        )
        .is_some_and(|t| t > 1.7e9)
    );

    let prom = tmp.path().join("validate.prom");
    let out = with_metrics_file(&["validate", "--mode", "full"], &store, &data, &prom);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let text = std::fs::read_to_string(&prom).expect("metrics file");
    assert_eq!(
        value(&text, "etcdbr_validation_duration_seconds_count", &ok),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(&text, "etcd_restore_revision", &[("command", "validate")]),
        Some(oracle.final_revision as f64),
        "{text}"
    );
}

#[test]
fn a_failed_restore_says_so_in_its_metrics() {
    let (store, _) = sample();
    let tmp = tempfile::tempdir().unwrap();
    let broken = tmp.path().join("store");
    copy_dir(&store, &broken);
    // Flip a byte in the middle of the base object: its compression or hash check fails.
    let base = std::fs::read_dir(broken.join("v2"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("Full-")
        })
        .expect("a full snapshot");
    let mut bytes = std::fs::read(&base).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&base, bytes).unwrap();
    let prom = tmp.path().join("restore.prom");
    let data = tmp.path().join("x.etcd");
    let out = with_metrics_file(&["restore"], &broken, &data, &prom);
    assert!(!out.status.success());
    assert!(!data.exists(), "a failed restore must leave no data dir");
    let text = std::fs::read_to_string(&prom).expect("metrics are written for failed runs too");
    assert_eq!(
        value(
            &text,
            "etcdbr_restoration_duration_seconds_count",
            &[("succeeded", "false")]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            "etcd_restore_run_last_success_timestamp_seconds",
            &[("command", "restore")]
        ),
        None,
        "{text}"
    );
}

#[test]
fn compact_pushes_to_a_real_pushgateway() {
    let Some(gw) = PushgatewayServer::start().expect("start pushgateway") else {
        return;
    };
    let (store, oracle) = sample();
    let tmp = tempfile::tempdir().unwrap();
    let copy = tmp.path().join("store");
    copy_dir(&store, &copy);
    let out = run(bin()
        .args(["compact", "--store"])
        .arg(&copy)
        .args(["--pushgateway", &gw.url()]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let scraped = gw.scrape().expect("scrape");
    let labels = [("job", "etcd-restore"), ("command", "compact")];
    assert_eq!(
        value(&scraped, "etcd_restore_compact_revision", &labels),
        Some(oracle.final_revision as f64),
        "{scraped}"
    );
    assert_eq!(
        value(&scraped, "etcd_restore_compact_success", &labels),
        Some(1.0)
    );
    // The group carries the store, so two stores' jobs never replace each other's metrics.
    let store_label = copy.display().to_string();
    assert!(
        scraped
            .lines()
            .any(|l| l.starts_with("etcd_restore_compact_revision{") && l.contains(&store_label)),
        "{scraped}"
    );
    gw.stop().unwrap();
}
