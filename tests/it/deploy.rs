//! deploy/: the Containerfiles' structure (pinned FROM, non-root USER, the ENTRYPOINT runs what
//! was copied and dispatches to the upstream binary; no image can be built here), and the
//! Kubernetes manifests validate against the real Kubernetes OpenAPI schemas
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

/// The final stage of a Containerfile: its base image, instructions, `COPY` destinations,
/// `USER` and exec-form `ENTRYPOINT`.
struct FinalStage {
    from: String,
    instructions: Vec<String>,
    copied_to: Vec<String>,
    user: Option<String>,
    entrypoint: Vec<String>,
}

fn final_stage(name: &str) -> FinalStage {
    let path = testkit::deps::workspace_root().join("deploy").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let joined = text.replace("\\\n", " ");
    let mut stage: Option<FinalStage> = None;
    for line in joined.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (op, rest) = line.split_once(' ').unwrap_or((line, ""));
        let op = op.to_ascii_uppercase();
        if op == "FROM" {
            stage = Some(FinalStage {
                from: rest.split_whitespace().next().unwrap_or("").to_string(),
                instructions: Vec::new(),
                copied_to: Vec::new(),
                user: None,
                entrypoint: Vec::new(),
            });
            continue;
        }
        let s = stage
            .as_mut()
            .unwrap_or_else(|| panic!("{name}: {op} before FROM"));
        s.instructions.push(op.clone());
        match op.as_str() {
            "COPY" => s
                .copied_to
                .push(rest.split_whitespace().last().unwrap_or("").to_string()),
            "USER" => s.user = Some(rest.trim().to_string()),
            "ENTRYPOINT" => {
                s.entrypoint = serde_json::from_str(rest)
                    .unwrap_or_else(|e| panic!("{name}: ENTRYPOINT not in exec form: {e}"))
            }
            _ => {}
        }
    }
    stage.unwrap_or_else(|| panic!("{name}: no FROM"))
}

/// Pinned: a registry path with an explicit release tag (or digest), no build-arg indirection.
fn assert_pinned(name: &str, image: &str) {
    assert!(
        !image.contains('$'),
        "{name}: FROM {image} is not a fixed image"
    );
    let tag = image
        .rsplit_once('/')
        .and_then(|(_, last)| last.split_once(':'))
        .map(|(_, t)| t)
        .unwrap_or_else(|| panic!("{name}: FROM {image} has no tag"));
    assert!(
        tag != "latest" && !tag.is_empty(),
        "{name}: FROM {image} is not pinned"
    );
}

/// Non-root: a numeric uid other than 0 (distroless' `nonroot` is 65532).
fn assert_non_root(name: &str, user: Option<&str>) {
    let user = user.unwrap_or_else(|| panic!("{name}: no USER (the base's would apply)"));
    let uid: u32 = user
        .split(':')
        .next()
        .and_then(|u| u.parse().ok())
        .unwrap_or_else(|| panic!("{name}: USER {user} is not a numeric uid"));
    assert_ne!(uid, 0, "{name}: runs as root");
}

#[test]
fn druid_image_layers_on_the_pinned_unmodified_upstream_image() {
    let name = "Containerfile";
    let s = final_stage(name);
    // etcd-druid internal/images/images.yaml, `etcd-backup-restore-next`.
    assert_eq!(
        s.from,
        "europe-docker.pkg.dev/gardener-project/public/gardener/etcdbrctl:v0.43.0"
    );
    assert_pinned(name, &s.from);
    assert_non_root(name, s.user.as_deref());
    // Unmodified: the upstream image has no shell, and this stage only adds our binary.
    for op in &s.instructions {
        assert!(
            ["COPY", "USER", "ENTRYPOINT", "LABEL"].contains(&op.as_str()),
            "{name}: {op} in the final stage changes the upstream image"
        );
    }
    assert_eq!(s.copied_to, vec!["/etcd-restore".to_string()]);
    assert_eq!(
        s.entrypoint.first().map(String::as_str),
        Some("/etcd-restore")
    );
    // The ENTRYPOINT's arguments are the dispatcher's, pointing at the upstream binary's place
    // in its image (etcd-backup-restore v0.43.0 build/Dockerfile: /etcdbrctl); with no
    // /etcdbrctl on this machine, a `snapshot` command line reaches the exec and names it.
    assert!(
        s.entrypoint.contains(&"--upstream=/etcdbrctl".to_string()),
        "{:?}",
        s.entrypoint
    );
    assert!(
        !Path::new("/etcdbrctl").exists(),
        "this check needs no /etcdbrctl here"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_etcd-restore"))
        .args(&s.entrypoint[1..])
        .args(["snapshot", "--storage-provider=S3"])
        .output()
        .expect("run the entrypoint");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("running the upstream etcdbrctl /etcdbrctl"),
        "the entrypoint did not dispatch to /etcdbrctl: {err}"
    );
}

#[test]
fn standalone_image_is_pinned_non_root_and_runs_the_binary() {
    let name = "Containerfile.standalone";
    let s = final_stage(name);
    assert!(s.from.starts_with("gcr.io/distroless/static"), "{}", s.from);
    assert_pinned(name, &s.from);
    assert_non_root(name, s.user.as_deref());
    let exe = s.entrypoint.first().expect("ENTRYPOINT");
    assert!(
        s.copied_to.contains(exe),
        "{name}: ENTRYPOINT {exe} is not what was copied"
    );
}
