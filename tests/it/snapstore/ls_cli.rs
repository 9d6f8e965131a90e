//! `etcd-restore ls` on the command line: its JSON and its errors.

use super::*;

#[test]
fn ls_cli_json_and_errors() {
    for f in fixtures() {
        let out = std::process::Command::new(bin())
            .args(["ls", "--json", "--store"])
            .arg(f.store())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let latest = f.oracle.latest_full().unwrap();
        assert_eq!(v["plan"]["base"]["path"], latest.path.as_str());
        assert_eq!(
            v["snapshots"].as_array().unwrap().len(),
            f.oracle.objects.len()
        );
        assert!(v["error"].is_null());
    }
    // A plan error: non-zero exit, one clear line, and the JSON says why.
    let f = fixtures()
        .into_iter()
        .find(|f| f.scenario == "basic")
        .unwrap();
    let out = std::process::Command::new(bin())
        .args(["ls", "--json", "--to-revision", "1", "--store"])
        .arg(f.store())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["plan"].is_null());
    assert!(v["error"].as_str().unwrap().contains("no full snapshot"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    // Text output names the base and the target.
    let out = std::process::Command::new(bin())
        .args(["ls", "--store"])
        .arg(f.store())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&f.oracle.latest_full().unwrap().path),
        "{text}"
    );
    // Swift: one line naming the S3-compatible route.
    let out = std::process::Command::new(bin())
        .args([
            "ls",
            "--storage-provider",
            "Swift",
            "--store-container",
            "c",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--storage-provider S3"), "{stderr}");
}

#[test]
fn missing_local_store_is_a_clear_error() {
    let out = std::process::Command::new(bin())
        .args(["ls", "--store", "/nonexistent/backups"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/backups"));
}
