//! Where the installed test dependencies live, and the skip/require rule of docs/testing.md.
//!
//! A test asks for a dependency with [`require`] (or a typed helper such as
//! [`crate::EtcdBins::get`] / [`bboltoracle`]). When the file is there it gets its path.
//! When it is not:
//! * `ETCD_RESTORE_REQUIRE_DEPS=1` (`scripts/test`'s default, so CI) → panic, with the
//!   installer's reason from `.deps/MISSING` when it gave one: a run that claims to test
//!   everything must not pass on a machine where part of it could not run;
//! * otherwise (a developer's plain `cargo test`, or `ETCD_RESTORE_REQUIRE_DEPS=0
//!   scripts/test`) → print `SKIP <test>: <reason>`, append test and reason to the file named
//!   by `ETCD_RESTORE_SKIP_LOG` (where `scripts/test` collects them for its closing summary:
//!   libtest hides a passing test's output) and return `None`.

use std::path::{Path, PathBuf};

/// The workspace root (two levels above this crate's manifest).
pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| here.to_path_buf())
}

/// `$ETCD_RESTORE_DEPS`, or `<workspace>/.deps`.
pub fn deps_dir() -> PathBuf {
    match std::env::var_os("ETCD_RESTORE_DEPS") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => workspace_root().join(".deps"),
    }
}

/// `<workspace>/testdata`.
pub fn testdata_dir() -> PathBuf {
    workspace_root().join("testdata")
}

/// Whether `ETCD_RESTORE_REQUIRE_DEPS=1`.
pub fn deps_required() -> bool {
    std::env::var("ETCD_RESTORE_REQUIRE_DEPS").is_ok_and(|v| v == "1")
}

/// The line of `.deps/MISSING` that names `dep` (lines look like `<dep>: <reason>`).
pub fn missing_reason(dep: &str) -> Option<String> {
    let text = std::fs::read_to_string(deps_dir().join("MISSING")).ok()?;
    text.lines()
        .find(|l| {
            l.split(':')
                .next()
                .is_some_and(|name| name.trim() == dep || name.split('/').any(|n| n.trim() == dep))
        })
        .map(str::to_string)
}

/// The name of the running test: libtest names each test's thread after the test.
pub fn current_test() -> String {
    match std::thread::current().name() {
        Some(n) if n != "main" => n.to_string(),
        _ => "<test>".to_string(),
    }
}

/// Applies the skip/require rule to `dep` (the name used in `.deps/MISSING`, e.g. `etcd-3.4.23`,
/// `bboltoracle`, `moto`, `azurite`) whose file is `<deps>/<rel>`.
pub fn require(dep: &str, rel: &str) -> Option<PathBuf> {
    let path = deps_dir().join(rel);
    if path.exists() {
        return Some(path);
    }
    let test = current_test();
    let reason = missing_reason(dep);
    if deps_required() {
        let why = match &reason {
            Some(r) => format!("the installer could not provide it: {r}"),
            None => format!(
                "not listed in {} either; run scripts/install-test-deps",
                deps_dir().join("MISSING").display()
            ),
        };
        panic!(
            "{test}: test dependency {dep} ({}) is missing and ETCD_RESTORE_REQUIRE_DEPS=1: {why}",
            path.display()
        );
    }
    let reason = reason.unwrap_or_else(|| {
        format!(
            "{dep}: not installed at {} (run scripts/install-test-deps)",
            path.display()
        )
    });
    println!("SKIP {test}: {reason}");
    record_skip(&test, &reason);
    None
}

/// Appends `<test> TAB <reason>` to `$ETCD_RESTORE_SKIP_LOG` when it is set (test names hold
/// `::` and reasons `: `, so a tab separates them). One `write` per line on an `O_APPEND`
/// file, so lines from parallel test binaries do not interleave.
fn record_skip(test: &str, reason: &str) {
    use std::io::Write;
    let Some(log) = std::env::var_os("ETCD_RESTORE_SKIP_LOG").filter(|l| !l.is_empty()) else {
        return;
    };
    let line = format!("{test}\t{}\n", reason.replace(['\t', '\n'], " "));
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .and_then(|mut f| f.write_all(line.as_bytes()));
    // A skip nobody can count would be a silent one: say so loudly instead.
    if let Err(e) = written {
        panic!(
            "{test}: cannot record the skip in {}: {e}",
            PathBuf::from(log).display()
        );
    }
}

/// The Go oracle binary (`.deps/bin/bboltoracle`), per the skip/require rule.
pub fn bboltoracle() -> Option<PathBuf> {
    require("bboltoracle", "bin/bboltoracle")
}
