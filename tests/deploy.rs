//! deploy/: the Kubernetes manifests validate against the real Kubernetes OpenAPI schemas
//! (offline, `kubernetes-validate` from PyPI), and every etcd-restore container in them calls a
//! subcommand and flags the binary really has, so the examples cannot rot when the CLI changes.

use std::path::{Path, PathBuf};
use std::process::Command;

const KUBERNETES_VERSION: &str = "1.31.0";

fn manifests() -> Vec<PathBuf> {
    let dir = testkit::deps::workspace_root().join("deploy");
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    out.sort();
    assert!(
        out.len() >= 3,
        "deploy/ should hold the CronJob, Job and StatefulSet manifests"
    );
    out
}

#[test]
fn manifests_match_the_kubernetes_schemas() {
    let Some(validator) =
        testkit::deps::require("kubernetes-validate", "venv/bin/kubernetes-validate")
    else {
        return;
    };
    for file in manifests() {
        let out = Command::new(&validator)
            .args(["--strict", "-k", KUBERNETES_VERSION])
            .arg(&file)
            .output()
            .expect("run kubernetes-validate");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{}:\n{text}", file.display());
        assert!(
            text.contains("passed"),
            "{}: nothing validated:\n{text}",
            file.display()
        );
    }
}

/// Every container running our image: (file, container name, args).
fn our_containers(file: &Path) -> Vec<(String, Vec<String>)> {
    let text = std::fs::read_to_string(file).expect("read manifest");
    let mut out = Vec::new();
    for doc in serde_norway::Deserializer::from_str(&text) {
        let v: serde_norway::Value = serde::Deserialize::deserialize(doc).expect("YAML");
        collect(&v, &mut out);
    }
    out
}

fn collect(v: &serde_norway::Value, out: &mut Vec<(String, Vec<String>)>) {
    use serde_norway::Value;
    match v {
        Value::Mapping(m) => {
            let image = m.get("image").and_then(Value::as_str).unwrap_or("");
            if image.contains("/etcd-restore:") {
                let name = m
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("?")
                    .to_string();
                let args = m
                    .get("args")
                    .and_then(Value::as_sequence)
                    .map(|s| {
                        s.iter()
                            .filter_map(|a| a.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                out.push((name, args));
            }
            for (_, child) in m {
                collect(child, out);
            }
        }
        Value::Sequence(s) => s.iter().for_each(|c| collect(c, out)),
        _ => {}
    }
}

#[test]
fn manifests_call_real_subcommands_and_flags() {
    let bin = env!("CARGO_BIN_EXE_etcd-restore");
    let mut checked = 0;
    for file in manifests() {
        for (container, args) in our_containers(&file) {
            let what = format!("{} container {container}", file.display());
            let sub: Vec<&str> = args
                .iter()
                .map(String::as_str)
                .take_while(|a| !a.starts_with('-'))
                .collect();
            assert!(!sub.is_empty(), "{what}: no subcommand in {args:?}");
            let help = Command::new(bin)
                .args(&sub)
                .arg("--help")
                .output()
                .expect("run --help");
            assert!(
                help.status.success(),
                "{what}: `etcd-restore {}` is not a command",
                sub.join(" ")
            );
            let help = String::from_utf8_lossy(&help.stdout);
            for flag in args.iter().filter(|a| a.starts_with("--")) {
                let name = flag.split('=').next().unwrap_or(flag);
                assert!(
                    help.contains(&format!("{name} ")) || help.contains(&format!("{name}\n")),
                    "{what}: `etcd-restore {}` has no flag {name}",
                    sub.join(" ")
                );
            }
            checked += 1;
        }
    }
    assert!(
        checked >= 3,
        "expected at least three etcd-restore containers, found {checked}"
    );
}
