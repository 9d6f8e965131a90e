//! Where the installed test dependencies live, and the skip/require rule of docs/testing.md.
//!
//! A test asks for a dependency with [`require`] (or a typed helper such as
//! [`crate::EtcdBins::get`] / [`bboltoracle`]). When the file is there it gets its path.
//! When it is not:
//! * it is listed in `.deps/MISSING` → print `SKIP <test>: <reason>`, return `None`;
//! * `ETCD_RESTORE_REQUIRE_DEPS=1` (set by `scripts/test`) → panic: the installer should have
//!   provided it or said why not;
//! * otherwise (a developer's plain `cargo test`) → print the SKIP line, return `None`.

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
    match missing_reason(dep) {
        Some(reason) => {
            println!("SKIP {test}: {reason}");
            None
        }
        None if deps_required() => panic!(
            "{test}: test dependency {dep} ({}) is missing and not listed in {}; run scripts/install-test-deps",
            path.display(),
            deps_dir().join("MISSING").display()
        ),
        None => {
            println!(
                "SKIP {test}: {dep} not installed at {} (run scripts/install-test-deps)",
                path.display()
            );
            None
        }
    }
}

/// The Go oracle binary (`.deps/bin/bboltoracle`), per the skip/require rule.
pub fn bboltoracle() -> Option<PathBuf> {
    require("bboltoracle", "bin/bboltoracle")
}
